"""bodycam-clock (firmware/clockd.py): the clock helper that alone may set the clock.

The request parser (hypothesis), the helper's own rules, a hostile peer on a real AF_UNIX
socket (bad form, out of range, a step too big, too long, silent, the wrong uid or gid
from a forked child), and the recorder's dock session setting the clock through a real
helper process, socket-activated the way systemd does it (the listening socket handed
over as fd 3). The hardware seam is the RTC's ioctl and the system clock's setter: here
both keep their time in files the test and the helper process share, so this machine's
clock is never set.
"""

from __future__ import annotations

import calendar
import errno
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockkit import NS, make_camera, make_dock
from hypothesis import given
from hypothesis import strategies as st

from firmware import clockd, dock_link
from firmware.clockd import (
    CEILING_NS,
    FLOOR_NS,
    ClockClient,
    ClockRefused,
    ClockServer,
    RequestError,
    bind_listener,
    format_reply,
    format_request,
    parse_reply,
    parse_request,
    refusal,
)
from firmware.drivers import BrokeredClock, device_clock
from firmware.drivers import rtc as rtc_mod
from firmware.drivers.rtc import LinuxRtc, RtcClock
from simulator.clock import SimClock
from simulator.dockbay import run_docking

CLOCK_BIN = Path(sys.executable).parent / "bodycam-clock"
NOW = 1_795_000_000 * NS  # 2026-11-18, a valid time for both clocks
ME = (os.getuid(), os.getgid())


# -- the hardware seam, shared across processes -------------------------------------------
class FileClock:
    """The system clock's seam: a frozen time in a file (read and set by both processes)."""

    def __init__(self, path: Path, ns: int | None = None) -> None:
        self.path = path
        if ns is not None:
            self.set_time_ns(ns)

    def time_ns(self) -> int:
        return int(self.path.read_text())

    def set_time_ns(self, ns: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(ns))
        os.replace(tmp, self.path)


class FileRtc:
    """The ``/dev/rtc0`` ioctls of the kernel's DS3231 driver (LinuxRtc's seam), the chip's
    registers in a file: empty = oscillator stopped (reads fail with EINVAL); ``refuse``
    = the chip does not take the time (EIO)."""

    def __init__(self, path: Path, ns: int | None, refuse: bool = False) -> None:
        self.path = path
        self.refuse = refuse
        path.write_bytes(b"" if ns is None else self._pack(ns))

    @staticmethod
    def _pack(ns: int) -> bytes:
        t = time.gmtime(ns // NS)
        fields = (t.tm_sec, t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon - 1, t.tm_year - 1900)
        return struct.pack("9i", *fields, 0, 0, 0)

    def time_ns(self) -> int | None:
        raw = self.path.read_bytes()
        if not raw:
            return None
        sec, minute, hour, mday, mon, year = struct.unpack("9i", raw)[:6]
        return calendar.timegm((year + 1900, mon + 1, mday, hour, minute, sec)) * NS

    def __call__(self, fd: int, request: int, arg: bytes) -> bytes:
        if request == rtc_mod.RTC_SET_TIME:
            if self.refuse:
                raise OSError(errno.EIO, "Input/output error")
            self.path.write_bytes(arg)
            return arg
        if request == rtc_mod.RTC_RD_TIME:
            raw = self.path.read_bytes()
            if not raw:
                raise OSError(errno.EINVAL, "Invalid argument")
            return raw
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")


class Board:
    """The camera's two clocks as the helper sees them (RtcClock over the seam)."""

    def __init__(self, tmp: Path, now: int = NOW, rtc: int | None = NOW, refuse=False) -> None:
        self.system = FileClock(tmp / "system-clock", now)
        self.rtc = FileRtc(tmp / "rtc-registers", rtc, refuse)
        self.dev = tmp / "rtc0"
        self.dev.write_bytes(b"")  # LinuxRtc opens it, then calls the seam

    def helper_clock(self, path: str = "") -> RtcClock:
        rtc = LinuxRtc(self.dev, ioctl=self.rtc)
        return RtcClock(rtc, set_system_clock=self.system.set_time_ns, now_ns=self.system.time_ns)

    def recorder_clock(self, sock: Path) -> BrokeredClock:
        """What the recorder runs: reads both clocks itself, sets them through the helper."""
        rtc = LinuxRtc(self.dev, ioctl=self.rtc)
        return BrokeredClock(rtc, ClockClient(sock).set_time_ns, now_ns=self.system.time_ns)

    def state(self) -> tuple[int, int | None]:
        return self.system.time_ns(), self.rtc.time_ns()


# -- the request form ------------------------------------------------------------------------
def test_the_helper_applies_the_recorders_bounds():
    assert FLOOR_NS == dock_link.CLOCK_FLOOR_NS and CEILING_NS == dock_link.CLOCK_CEILING_NS
    assert clockd.MAX_STEP_S == dock_link.MAX_CLOCK_STEP_S


@given(st.integers(min_value=1, max_value=10**19 - 1))
def test_a_request_round_trips(ns):
    assert parse_request(format_request(ns)) == ns


@given(st.binary(max_size=64))
def test_any_bytes_are_one_exact_request_or_refused(data):
    try:
        ns = parse_request(data)
    except RequestError as exc:
        assert str(exc)  # a reason, never a traceback
    else:
        assert data == b"set %d\n" % ns  # nothing but the one canonical form is accepted


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not 'set <utc_ns>'"),
        (b"set 1795000000000000000", "not 'set <utc_ns>'"),  # no newline
        (b"set +1795000000000000000\n", "not 'set <utc_ns>'"),
        (b"set 01795000000000000000\n", "not 'set <utc_ns>'"),
        (b"SET 1795000000000000000\n", "not 'set <utc_ns>'"),
        (b"set 1795000000000000000\nset 1\n", "not 'set <utc_ns>'"),  # two requests
        (b"set 0x18e\n", "not 'set <utc_ns>'"),
        (b'{"utc_ns": 1795000000000000000, "x": 1}\n', "longer than 32 bytes"),
        (b"set 12345678901234567890\n", "not 'set <utc_ns>'"),  # 20 digits
    ],
)
def test_malformed_requests_are_refused(data, says):
    with pytest.raises(RequestError, match=says):
        parse_request(data)


def test_replies():
    assert parse_reply(format_reply("")) == ""
    assert parse_reply(format_reply("a step\nof two lines")) == "a step of two lines"
    with pytest.raises(ClockRefused, match="not ok/refused"):
        parse_reply(b"okay\n")
    with pytest.raises(ClockRefused, match="not ok/refused"):
        parse_reply(b"")  # the helper hung up without an answer


# -- the helper's rules (pure) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("new", "now", "rtc", "says"),
    [
        (NOW + 30 * NS, NOW, NOW, ""),
        (NOW - 300 * NS, NOW, NOW, ""),
        (NOW + 301 * NS, NOW, NOW, "a step of +301 s exceeds the clock helper's limit of 300 s"),
        (NOW - 3600 * NS, NOW, NOW, "a step of -3600 s exceeds"),
        (NOW + 86400 * NS, NOW, None, ""),  # the RTC lost its time: any sane time
        (NOW, 1_000_000_000 * NS, 1_000_000_000 * NS, ""),  # reads 2001: known wrong
        (NOW, NOW - 3600 * NS, NOW, ""),  # the RTC holds NOW: a restore from it
        (NOW + 3600 * NS, NOW, NOW + 3600 * NS, ""),  # what the RTC holds: a restore
        (NOW + 3602 * NS, NOW, NOW + 3600 * NS, "exceeds"),  # 2 s from it is not
        (FLOOR_NS - NS, NOW, None, "is outside 2025-01-01..2099-12-31"),
        (CEILING_NS + NS, NOW, None, "is outside 2025-01-01..2099-12-31"),
        (10**19 - 1, NOW, NOW, "is outside"),
    ],
)
def test_refusal_rules(new, now, rtc, says):
    why = refusal(new, now, rtc, 300.0)
    assert (says in why) if says else why == "", why


# -- a hostile peer on a real socket ---------------------------------------------------------
@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short folder for the socket (sun_path has 108 bytes), reachable by another uid."""
    path = Path(tempfile.mkdtemp(prefix="clockd-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Helper:
    """A ClockServer on a real listening socket; requests are connected first (the backlog
    holds them) and then served one at a time in this thread: no race, no sleep."""

    def __init__(self, board: Board, path: Path, peer=ME, max_step_s: float = 300.0) -> None:
        self.path = path
        self.listener = bind_listener(path)
        self.server = ClockServer(
            self.listener, board.helper_clock(), peer, max_step_s=max_step_s, timeout_s=0.5
        )

    def ask(self, data: bytes, *, close_write: bool = True) -> tuple[str, bytes]:
        """(the helper's reason, the bytes the peer received)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.connect(str(self.path))
            peer.sendall(data)
            if close_write:
                peer.shutdown(socket.SHUT_WR)
            conn, _ = self.listener.accept()
            with conn:
                reason = self.server.handle(conn)
            peer.settimeout(5)
            return reason, peer.recv(1024)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


@pytest.fixture
def helper(board: Board, sockdir: Path) -> Iterator[Helper]:
    h = Helper(board, sockdir / "clock.sock")
    try:
        yield h
    finally:
        h.close()


def test_an_honest_request_sets_the_rtc_then_the_system_clock(helper, board):
    reason, reply = helper.ask(format_request(NOW + 30 * NS))
    assert (reason, reply) == ("", b"ok\n")
    assert board.state() == (NOW + 30 * NS, NOW + 30 * NS)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"set 1795000000000000000", "not 'set <utc_ns>'"),
        (b"set -5\n", "not 'set <utc_ns>'"),
        (b"x" * 1_000_000, "longer than 32 bytes"),  # an endless request is cut at 33
        (format_request(NOW + 3600 * NS), "a step of +3600 s exceeds the clock helper's limit"),
        (format_request(FLOOR_NS - NS), "is outside 2025-01-01..2099-12-31"),
        (format_request(CEILING_NS + NS), "is outside 2025-01-01..2099-12-31"),
    ],
    ids=["no-newline", "negative", "endless", "step", "1970s", "2100"],
)
def test_a_hostile_request_is_refused_changes_nothing_and_the_next_is_served(
    helper, board, data, says
):
    before = board.state()
    if len(data) > 1024:  # more than the socket buffers before the helper reads
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.connect(str(helper.path))
            peer.setblocking(False)
            try:
                peer.send(data)
            except BlockingIOError:
                pass
            conn, _ = helper.listener.accept()
            with conn:
                reason = helper.server.handle(conn)
            peer.setblocking(True)
            peer.settimeout(5)
            reply = peer.recv(1024)
    else:
        reason, reply = helper.ask(data)
    assert says in reason
    assert reply.startswith(b"refused ") and says.encode() in reply
    assert board.state() == before  # neither clock moved
    assert helper.ask(format_request(NOW + NS)) == ("", b"ok\n")
    assert board.state() == (NOW + NS, NOW + NS)


def test_a_silent_peer_is_refused_after_the_timeout(helper, board):
    before = board.state()
    reason, reply = helper.ask(b"set 17", close_write=False)  # and then nothing
    assert reason == "no request within 0.5 s" and reply == b"refused no request within 0.5 s\n"
    assert board.state() == before
    assert helper.ask(format_request(NOW + NS))[0] == ""


def test_an_rtc_that_refuses_the_time_changes_neither_clock(tmp_path, sockdir):
    board = Board(tmp_path, refuse=True)
    h = Helper(board, sockdir / "clock.sock")
    try:
        reason, reply = h.ask(format_request(NOW + 30 * NS))
    finally:
        h.close()
    assert "the clock refused the time" in reason and "Input/output error" in reason
    assert reply.startswith(b"refused the clock refused the time")
    assert board.state() == (NOW, NOW)


def test_the_helper_keeps_its_own_step_bound(tmp_path, sockdir):
    """A recorder that allows more (or a compromised one) cannot make the helper step
    further than its own recorder.toml's bound."""
    board = Board(tmp_path)
    h = Helper(board, sockdir / "clock.sock", max_step_s=10)
    try:
        reason, _ = h.ask(format_request(NOW + 30 * NS))
        assert "a step of +30 s exceeds the clock helper's limit of 10 s" in reason
        assert board.state() == (NOW, NOW)
    finally:
        h.close()


def test_a_camera_whose_rtc_lost_its_time_may_take_a_large_step(tmp_path, sockdir):
    board = Board(tmp_path, rtc=None)
    h = Helper(board, sockdir / "clock.sock")
    try:
        assert h.ask(format_request(NOW + 10 * 86400 * NS)) == ("", b"ok\n")
        assert board.state() == (NOW + 10 * 86400 * NS,) * 2
        # The RTC keeps time again: the same step is refused now.
        assert "exceeds" in h.ask(format_request(NOW + 20 * 86400 * NS))[0]
    finally:
        h.close()


def _connect_as(path: Path, uid: int, gid: int, utc_ns: int) -> int:
    """A forked child that drops to uid/gid, then asks; returns its pid and the pipe it
    writes the helper's answer to."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                ClockClient(path, timeout_s=10).set_time_ns(utc_ns)
                os.write(write_end, b"ok")
            except ClockRefused as exc:
                os.write(write_end, str(exc).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
@pytest.mark.parametrize(
    ("uid", "gid", "says"),
    [
        (65534, 65534, "peer uid 65534 gid 65534"),
        (0, 65534, "peer uid 0 gid 65534"),  # the recorder's uid is not enough: its gid too
    ],
)
def test_a_peer_that_is_not_the_recorder_is_refused(helper, board, uid, gid, says):
    helper.path.chmod(0o666)  # only SO_PEERCRED stands between that peer and the helper
    before = board.state()
    pid, answer = _connect_as(helper.path, uid, gid, NOW + 30 * NS)
    conn, _ = helper.listener.accept()
    with conn:
        reason = helper.server.handle(conn)
    with os.fdopen(answer, "rb") as f:
        told = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert reason.startswith(says) and "is not the recorder (uid 0 gid 0)" in reason
    assert told == f"the clock helper refused: {reason}"
    assert board.state() == before
    assert helper.ask(format_request(NOW + NS))[0] == ""  # the recorder itself: served


# -- the command line ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--user", "no-such-user-here", "--socket", "/tmp/x.sock"], "no such user"),
        (["--user", "0:0"], "no socket: run from bodycam-clock.socket, or give --socket PATH"),
        (["--user", "0:0", "--socket", "/nonexistent/dir/clock.sock"], "No such file"),
    ],
)
def test_bad_invocations_are_one_line_and_exit_2(tmp_path, args, says):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    config = tmp_path / "recorder.toml"
    config.write_text("")
    result = subprocess.run(
        [str(CLOCK_BIN), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_bad_config_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "recorder.toml"
    config.write_text("[dock]\nmax_clock_step_s = -1\n")
    result = subprocess.run(
        [str(CLOCK_BIN), "--config", str(config), "--user", "0:0", "--socket", "x.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("bodycam-clock: error: ")
    assert "dock.max_clock_step_s" in result.stderr and result.stderr.count("\n") == 1


# -- end to end: the recorder's dock session through a real helper process ----------------------
def _run_helper(listener: socket.socket, board: Board, config: Path) -> None:
    """The child: socket-activated as systemd does it (fd 3, LISTEN_PID, LISTEN_FDS), then
    the real ``main`` with the board's clocks at the hardware seam."""
    os.dup2(listener.fileno(), 3)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
    argv = ["--config", str(config), "--user", f"{ME[0]}:{ME[1]}", "--idle-exit-s", "0"]
    sys.exit(clockd.main(argv, make_clock=board.helper_clock))


@pytest.fixture
def helper_process(board: Board, sockdir: Path, tmp_path: Path):
    """Start a real bodycam-clock process on ``sockdir/clock.sock``; stopped with SIGTERM."""
    started = []

    def start(max_step_s: float = 300.0) -> Path:
        path = sockdir / "clock.sock"
        config = tmp_path / "helper.toml"
        config.write_text(f"[dock]\nmax_clock_step_s = {max_step_s}\n")
        listener = bind_listener(path)
        proc = multiprocessing.get_context("fork").Process(
            target=_run_helper, args=(listener, board, config), daemon=True
        )
        proc.start()
        listener.close()  # the helper holds it now, like systemd's socket
        started.append(proc)
        return path

    yield start
    for proc in started:
        proc.terminate()  # SIGTERM: the helper's own stop
        proc.join(10)
        assert proc.exitcode == 0, proc.exitcode


@pytest.mark.parametrize(
    ("helper_step_s", "dock_ahead_s", "set_"),
    [(300.0, 30, True), (10.0, 30, False)],
    ids=["set", "helper-refuses"],
)
def test_a_dock_sets_the_camera_clock_through_the_helper_process(
    tmp_path, board, helper_process, helper_step_s, dock_ahead_s, set_
):
    """The recorder's dock session (firmware.dock_link.DockLink, what the dock thread runs)
    with an honest dock over a pty: the recorder journals clock_set with the dock's id, then
    the helper process sets the RTC and the system clock; a helper whose own bound is lower
    refuses, and the recorder journals why, with both clocks unchanged."""
    sock = helper_process(helper_step_s)
    camera, registry = make_camera(tmp_path, clock=SimClock(NOW))
    camera.record(1, 20_000)
    now = camera.clock.time_ns()
    board.system.set_time_ns(now)
    board.rtc.path.write_bytes(board.rtc._pack(now))
    dock_identity, store = make_dock(tmp_path, registry, clock=SimClock(now + dock_ahead_s * NS))
    link = camera.link(dock_identity)
    link.clock = board.recorder_clock(sock)  # the device's clock, without CAP_SYS_TIME
    try:
        result, outcome = run_docking(store, dock_identity, link)
        kinds = [(r.kind, r.body) for r in camera.journal.records()]
    finally:
        store.close()
        camera.close()
    assert result.outcome == "stored", result.reason
    clock_set = [body for kind, body in kinds if kind == "clock_set"]
    assert len(clock_set) == 1 and clock_set[0]["by"] == dock_identity.device_id
    assert clock_set[0]["offset_ns"] == dock_ahead_s * NS
    if set_:
        assert board.state() == (now + dock_ahead_s * NS,) * 2
        assert outcome.clock_offset_ns == dock_ahead_s * NS
        assert "clock_not_set" not in [kind for kind, _ in kinds]
    else:
        assert board.state() == (now, now)  # neither clock moved
        not_set = [body for kind, body in kinds if kind == "clock_not_set"]
        assert len(not_set) == 1, kinds
        says = "the clock helper refused: a step of +30 s exceeds the clock helper's limit of 10 s"
        assert says in not_set[0]["reason"]


def test_the_boot_restore_goes_through_the_helper(board, helper_process):
    """A Pi boots at its last shutdown time: the recorder asks the helper for the RTC's
    time, which the helper allows whatever the step (it is what the RTC holds)."""
    sock = helper_process()
    board.system.set_time_ns(NOW - 5 * 86400 * NS)
    clock = board.recorder_clock(sock)
    assert clock.restore() is True
    assert board.state() == (NOW, NOW)
    assert clock.restore() is False  # already right: not asked again
    # ... but a time the RTC does not hold is a step like any other.
    with pytest.raises(ClockRefused, match="exceeds the clock helper's limit of 300 s"):
        clock.set_time_ns(NOW + 3600 * NS)
    assert board.state() == (NOW, NOW)


def test_the_device_clock_asks_the_helper_on_its_socket(tmp_path, monkeypatch, sockdir):
    monkeypatch.setenv(clockd.ENV_SOCKET, str(sockdir / "nobody-listens.sock"))
    clock = device_clock(str(tmp_path / "rtc0"))
    assert isinstance(clock, BrokeredClock) and isinstance(clock.rtc, LinuxRtc)
    with pytest.raises(ClockRefused, match="nobody-listens.sock cannot be reached"):
        clock.set_time_ns(NOW)


# -- installation ------------------------------------------------------------------------------
def test_install_pi_installs_and_enables_the_clock_helper(tmp_path):
    from test_install import ROOT, make_pi, run

    root = make_pi(tmp_path / "pi")
    out = run("install-pi", "--root", root).stdout
    for name in ("bodycam-clock.socket", "bodycam-clock.service", "bodycam-recorder.service"):
        installed = root / "etc/systemd/system" / name
        assert installed.read_text() == (ROOT / "systemd" / name).read_text(), name
    assert "skipped (--root): systemctl enable bodycam-clock.socket" in out
    assert "useradd --system --user-group --no-create-home" in out and "bodycam-clock" in out
    rule = (root / "etc/udev/rules.d/90-bodycam-rtc.rules").read_text()
    # The helper owns the RTC (it sets it); the recorder's group only reads it.
    assert 'OWNER="bodycam-clock"' in rule and 'MODE="0640"' in rule
