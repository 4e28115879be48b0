"""bodycam-clock: the one small process on the camera that may set the clock.

Why a separate process: setting the time needs ``CAP_SYS_TIME``, the ``@clock`` system
calls and no ``ProtectClock=``; a recorder that holds them is a recorder whose every bug
(camera, MQTT, the dock cable's parser) can move the evidence's time. So the recorder holds
none of it. It still decides (the dock's signature, the bounded step: firmware/dock_link.py)
and journals ``clock_set`` with the verified dock's id *before* it asks; then it asks this
helper, over an AF_UNIX socket (``bodycam-clock.socket``), and the helper does the setting.

The helper trusts nothing it is told. It serves one request form from one peer:

- the peer must be the recorder: its ``SO_PEERCRED`` uid and gid are the ``--user``'s
  (``bodycam``); anyone else is refused with the reason, before a byte is read;
- the request is one line, ``set <utc_ns>\\n`` (decimal nanoseconds, nothing else, at most
  :data:`MAX_REQUEST` bytes, within ``timeout_s``);
- the time is applied with the recorder's own rules, checked again here against the
  helper's own reading of the clocks: within 2025-01-01..2099-12-31; a step of at most
  ``dock.max_clock_step_s`` (read from the same root-owned recorder.toml) unless the RTC
  lost its time or the clock reads before 2025, or unless the time is what the RTC already
  holds (the recorder restoring the system clock from the RTC at boot);
- :class:`~firmware.drivers.rtc.RtcClock` sets the RTC first, so a time the RTC refuses
  changes neither clock, then the system clock (the RTC is put back if that fails).

The answer is one line: ``ok\\n`` or ``refused <reason>\\n``. The client side is
:class:`ClockClient`, which the device's clock (:class:`~firmware.drivers.rtc.BrokeredClock`)
calls; a refusal raises :class:`ClockRefused` (an ``OSError``), which the dock link
journals as ``clock_not_set`` with the reason.

Threads: none. One connection at a time, each bounded by ``timeout_s``; the process exits
after ``--idle-exit-s`` without a request and systemd starts it again on the next one.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import re
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

NS = 1_000_000_000
# The recorder's bounds (firmware/dock_link.py: CLOCK_FLOOR_NS, CLOCK_CEILING_NS,
# MAX_CLOCK_STEP_S); repeated here so the privileged helper imports no cable or crypto code.
# tests/test_clockd.py checks that both sides agree.
FLOOR_NS = 1_735_689_600 * NS  # 2025-01-01T00:00:00Z
CEILING_NS = 4_102_444_799 * NS  # 2099-12-31T23:59:59Z
MAX_STEP_S = 300.0
RTC_HOLDS_NS = NS  # a time within 1 s of the RTC's reading is what the RTC already holds

SOCKET_PATH = "/run/bodycam-clock.sock"
ENV_SOCKET = "BODYCAM_CLOCK_SOCKET"
MAX_REQUEST = 32  # "set " + 19 digits + "\n" is 24
MAX_REPLY = 512
_REQUEST = re.compile(rb"set ([1-9][0-9]{0,18})\n")
_LISTEN_FDS_START = 3  # sd_listen_fds(3)


class RequestError(ValueError):
    """A request that is not ``set <utc_ns>\\n``."""


class ClockRefused(OSError):
    """The clock helper did not set the clock; the message is its reason."""


def socket_path() -> str:
    """Where the recorder asks: ``$BODYCAM_CLOCK_SOCKET`` or /run/bodycam-clock.sock."""
    return os.environ.get(ENV_SOCKET) or SOCKET_PATH


# -- the request and the answer ---------------------------------------------------------------
def format_request(utc_ns: int) -> bytes:
    if isinstance(utc_ns, bool) or not isinstance(utc_ns, int) or not 0 < utc_ns < 10**19:
        raise RequestError(f"not a time in nanoseconds: {utc_ns!r}")
    return b"set %d\n" % utc_ns


def parse_request(data: bytes) -> int:
    """The nanoseconds of ``set <utc_ns>\\n``; RequestError for anything else."""
    if len(data) > MAX_REQUEST:
        raise RequestError(f"request longer than {MAX_REQUEST} bytes")
    m = _REQUEST.fullmatch(data)
    if m is None:
        shown = data[:MAX_REQUEST].decode("ascii", "backslashreplace")
        raise RequestError(f"not 'set <utc_ns>': {shown!r}")
    return int(m.group(1))


def format_reply(reason: str) -> bytes:
    """``ok`` for no reason, else ``refused <reason>`` on one line."""
    if not reason:
        return b"ok\n"
    one_line = " ".join(reason.split())[: MAX_REPLY - 10]
    return f"refused {one_line}\n".encode("utf-8", "replace")


def parse_reply(data: bytes) -> str:
    """The helper's reason ("" for ok); ClockRefused for an answer that is neither."""
    if data == b"ok\n":
        return ""
    if data.startswith(b"refused ") and data.endswith(b"\n") and len(data) > 9:
        return data[8:-1].decode("utf-8", "replace")
    shown = data[:80].decode("ascii", "backslashreplace")
    raise ClockRefused(f"the clock helper answered {shown!r}, not ok/refused")


def utc_text(ns: int) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))
    except (ValueError, OverflowError, OSError):
        return f"{ns} ns since 1970"


def refusal(new_ns: int, now_ns: int, rtc_ns: int | None, max_step_s: float) -> str:
    """Why the helper will not set ``new_ns`` ("" = it will): the recorder's rules, on the
    helper's own reading of the system clock (``now_ns``) and the RTC (None: it lost its
    time)."""
    if not FLOOR_NS <= new_ns <= CEILING_NS:
        return (
            f"the time {utc_text(new_ns)} is outside "
            f"{utc_text(FLOOR_NS)[:10]}..{utc_text(CEILING_NS)[:10]}"
        )
    if rtc_ns is None or now_ns < FLOOR_NS:  # the camera's own clock is known to be wrong
        return ""
    if abs(new_ns - rtc_ns) <= RTC_HOLDS_NS:  # the RTC holds this time: a restore from it
        return ""
    step = new_ns - now_ns
    if abs(step) > max_step_s * NS:
        return (
            f"a step of {step / NS:+.0f} s exceeds the clock helper's limit of "
            f"{max_step_s:g} s (the RTC keeps time)"
        )
    return ""


# -- the helper ----------------------------------------------------------------------------------
def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected process, from the kernel (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


@dataclass
class ClockServer:
    """Serves ``set`` requests on ``listener`` for the one peer ``peer`` = (uid, gid).

    ``clock`` is an :class:`~firmware.drivers.rtc.RtcClock` (its ``rtc``, ``time_ns`` and
    ``set_time_ns``): on the device the DS3231 behind /dev/rtc0 and clock_settime; tests
    replace the ioctl and the system clock at that seam.
    """

    listener: socket.socket
    clock: Any
    peer: tuple[int, int]
    max_step_s: float = MAX_STEP_S
    timeout_s: float = 2.0
    served: int = 0

    def rtc_time_ns(self) -> int | None:
        try:
            return self.clock.rtc.read_time_ns()
        except OSError as exc:  # oscillator stopped, or the RTC not reached
            _log.info("RTC not readable (%s): its time counts as lost", exc)
            return None

    def decide_and_set(self, request: bytes) -> str:
        """Parse, check, set; the reason it did not ("" = set)."""
        try:
            new_ns = parse_request(request)
        except RequestError as exc:
            return str(exc)
        now_ns = self.clock.time_ns()
        why = refusal(new_ns, now_ns, self.rtc_time_ns(), self.max_step_s)
        if why:
            return why
        try:
            self.clock.set_time_ns(new_ns)  # the RTC first: a refused time changes neither
        except (OSError, ValueError, OverflowError) as exc:
            return f"the clock refused the time: {exc}"
        _log.info("clock set to %s (step %+.3f s)", utc_text(new_ns), (new_ns - now_ns) / NS)
        return ""

    def handle(self, conn: socket.socket) -> str:
        """One connection: check the peer, read one request, answer. Returns the reason."""
        conn.settimeout(self.timeout_s)
        pid, uid, gid = peer_credentials(conn)  # as the kernel saw them at connect()
        # Read the (bounded) request first, whoever sent it, so the peer is not cut off
        # mid-send and gets its answer; a stranger's bytes are never parsed.
        request, reason = b"", ""
        try:
            request = self._read_request(conn)
        except TimeoutError:
            reason = f"no request within {self.timeout_s:g} s"
        except OSError as exc:
            reason = f"could not read the request: {exc}"
        if (uid, gid) != self.peer:
            reason = (
                f"peer uid {uid} gid {gid} (pid {pid}) is not the recorder "
                f"(uid {self.peer[0]} gid {self.peer[1]})"
            )
        elif not reason:
            reason = self.decide_and_set(request)
        if reason:
            _log.warning("refused pid %d uid %d: %s", pid, uid, reason)
        try:
            conn.sendall(format_reply(reason))
        except OSError as exc:  # the peer went away: nothing to tell it
            _log.info("could not answer pid %d: %s", pid, exc)
        return reason

    def _read_request(self, conn: socket.socket) -> bytes:
        """Up to the first newline, at most MAX_REQUEST + 1 bytes (more is refused)."""
        data = b""
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in data and len(data) <= MAX_REQUEST:
            conn.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = conn.recv(MAX_REQUEST + 1 - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def serve(self, stop: threading.Event | None = None, idle_exit_s: float | None = None) -> None:
        """Until ``stop`` is set, or ``idle_exit_s`` passes without a connection."""
        stop = stop or threading.Event()
        last = time.monotonic()
        while not stop.is_set():
            if idle_exit_s and time.monotonic() - last > idle_exit_s:
                _log.info(
                    "idle for %g s: exiting (the socket starts the helper again)", idle_exit_s
                )
                return
            ready, _, _ = select.select([self.listener], [], [], 0.5)
            if not ready:
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:
                _log.warning("accept: %s", exc)
                continue
            with conn:
                try:
                    self.handle(conn)
                except OSError as exc:  # the next honest peer is served all the same
                    _log.warning("connection failed: %s", exc)
            self.served += 1
            last = time.monotonic()


# -- the client (in the recorder) ------------------------------------------------------------
class ClockClient:
    """Asks bodycam-clock to set the clock. Called from the recorder's dock thread (and at
    boot from the backend); one short connection per request."""

    def __init__(self, path: str | os.PathLike | None = None, timeout_s: float = 10.0) -> None:
        self.path = str(path or socket_path())
        self.timeout_s = timeout_s

    def set_time_ns(self, utc_ns: int) -> None:
        """Set the RTC and the system clock; ClockRefused with the helper's reason, OSError
        when it cannot be reached."""
        request = format_request(utc_ns)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.path)
                try:
                    sock.sendall(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the helper answered (a refusal) before reading it all: read that
                reply = b""
                while len(reply) < MAX_REPLY and not reply.endswith(b"\n"):
                    chunk = sock.recv(MAX_REPLY - len(reply))
                    if not chunk:
                        break
                    reply += chunk
            except TimeoutError:
                raise ClockRefused(
                    f"the clock helper {self.path} did not answer within {self.timeout_s:g} s"
                ) from None
            except OSError as exc:
                raise ClockRefused(
                    f"the clock helper {self.path} cannot be reached: {exc.strerror or exc}"
                ) from None
        reason = parse_reply(reply)
        if reason:
            raise ClockRefused(f"the clock helper refused: {reason}")


# -- the service -----------------------------------------------------------------------------
def systemd_listener() -> socket.socket | None:
    """The socket systemd passed (bodycam-clock.socket), or None when not socket-activated."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if os.environ.get("LISTEN_FDS") != "1":
        raise OSError(
            f"expected one socket from systemd, got LISTEN_FDS={os.environ.get('LISTEN_FDS')}"
        )
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock = socket.socket(fileno=_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError("the socket systemd passed is not an AF_UNIX stream socket")
    return sock


def bind_listener(path: str | os.PathLike, mode: int = 0o660) -> socket.socket:
    """A listening socket of our own (bench, tests, a camera without the .socket unit)."""
    path = Path(path)
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # a stale socket of an earlier run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(4)
    except OSError:
        sock.close()
        raise
    return sock


def recorder_peer(user: str) -> tuple[int, int]:
    """(uid, gid) of the recorder's user (``bodycam``), or of ``uid:gid`` given as numbers."""
    if re.fullmatch(r"[0-9]+:[0-9]+", user):
        uid, gid = user.split(":")
        return int(uid), int(gid)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LookupError(f"no such user {user!r} (the recorder's user)") from None
    return entry.pw_uid, entry.pw_gid


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodycam-clock",
        description="Set the camera's RTC and system clock for the recorder, and for no one "
        "else: one request form ('set <utc_ns>') over an AF_UNIX socket, from the recorder's "
        "user only, within 2025-2099 and the recorder's step bound. Run by "
        "bodycam-clock.socket; it holds CAP_SYS_TIME so the recorder does not.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the recorder's config (its dock.max_clock_step_s is the bound here too); "
        "default /etc/bodycam/recorder.toml if it exists, else the packaged defaults",
    )
    parser.add_argument(
        "--socket",
        default=None,
        help="listen on this path (default: the socket systemd passes)",
    )
    parser.add_argument("--rtc", default="/dev/rtc0", help="the RTC device (default /dev/rtc0)")
    parser.add_argument(
        "--user",
        default="bodycam",
        help="the only peer served: the recorder's user name, or uid:gid (default bodycam)",
    )
    parser.add_argument(
        "--idle-exit-s",
        type=float,
        default=60.0,
        help="exit after this long without a request; 0 = never (default 60)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    return parser


def main(argv: list[str] | None = None, make_clock: Callable[[str], Any] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from evidence.exc import ConfigError

    from . import config as cfg
    from .drivers.rtc import LinuxRtc, RtcClock

    try:
        max_step_s = float(cfg.load(args.config)["dock"]["max_clock_step_s"])
        peer = recorder_peer(args.user)
        listener = systemd_listener()
        if listener is None:
            if not args.socket:
                raise OSError("no socket: run from bodycam-clock.socket, or give --socket PATH")
            listener = bind_listener(args.socket)
    except (ConfigError, LookupError, OSError) as exc:
        print(f"bodycam-clock: error: {exc}", file=sys.stderr)
        if os.environ.get("DEBUG") == "1":
            raise
        return 2
    clock = (make_clock or (lambda path: RtcClock(LinuxRtc(path))))(args.rtc)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ClockServer(listener, clock, peer, max_step_s=max_step_s)
    _log.info("serving uid %d gid %d (step bound %g s)", peer[0], peer[1], max_step_s)
    with listener:
        server.serve(stop, idle_exit_s=args.idle_exit_s or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
