"""The simulator's dock bay: a real pty pair as the USB cable, a real dock store.

The dock end opens the pty's slave path with pyserial, as the dock opens ``/dev/ttyACM0``;
the camera end is the pty master (the simulator's stand-in for the USB gadget
``/dev/ttyGS0``), wrapped by :class:`PtyEnd` in pyserial's read/write/timeout shape.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pty
import select
import struct
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)


def _ptsname(master: int) -> str:
    """The slave path of a pty master (``os.ptsname`` arrives only in Python 3.13)."""
    request = getattr(termios, "TIOCGPTN", 0x80045430)  # _IOR('T', 0x30, unsigned int)
    (number,) = struct.unpack("I", fcntl.ioctl(master, request, b"\0" * 4))
    return f"/dev/pts/{number}"


class PtyEnd:
    """One fd of a pty used like a pyserial port: ``read(n)`` returns what arrived before
    ``timeout`` (possibly fewer bytes); a hung-up peer (the cable pulled) raises
    ``OSError(EIO)`` on read and write instead of blocking."""

    def __init__(self, fd: int, timeout: float | None = 1.0) -> None:
        self.fd = fd
        self.timeout = timeout
        os.set_blocking(fd, False)
        self._writing = threading.Event()
        self._closed = threading.Event()
        self._guard: threading.Thread | None = None
        self._hung = False

    def _wait(self, event: int, timeout: float | None = -1.0) -> bool:
        """Poll for ``event`` for ``timeout`` s (default: the port's ``timeout``)."""
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        poller = select.poll()
        poller.register(self.fd, event)
        ready = poller.poll(None if timeout is None else int(timeout * 1000))
        if not ready:
            return False
        flags = ready[0][1]
        if flags & event:
            return True
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            raise OSError(errno.EIO, "pty peer hung up (cable pulled)")
        return False

    def read(self, size: int) -> bytes:
        parts = []
        need = size
        while need and self._wait(select.POLLIN):
            try:
                data = os.read(self.fd, need)
            except BlockingIOError:
                continue
            if not data:
                raise OSError(errno.EIO, "pty peer closed")
            parts.append(data)
            need -= len(data)
        return b"".join(parts)

    def write(self, data: bytes | memoryview) -> int:
        """Blocking writes (one syscall per frame, as ``cat`` does). A pty master's blocked
        write does not return when the far end hangs up, so a guard thread drains the
        dead line to release it, and the write then fails with EIO."""
        view = memoryview(data)
        if not self._wait(select.POLLOUT):
            raise OSError(errno.ETIMEDOUT, "pty peer stopped reading")
        if self._guard is None:  # fd and slave path taken here, while the fd is open
            self._guard = threading.Thread(
                target=self._guard_loop,
                name="pty-guard",
                args=(self.fd, _ptsname(self.fd)),
                daemon=True,
            )
            self._guard.start()
        os.set_blocking(self.fd, True)
        self._writing.set()
        try:
            while view and not self._hung:
                view = view[os.write(self.fd, view) :]
        finally:
            self._writing.clear()
            os.set_blocking(self.fd, False)
        if self._hung:
            raise OSError(errno.EIO, "pty peer hung up (cable pulled)")
        return len(data)

    def _guard_loop(self, fd: int, slave: str) -> None:
        """Runs until :meth:`close`, which waits for it before closing ``fd``."""
        poller = select.poll()
        poller.register(fd, 0)  # POLLHUP is always reported
        while not self._closed.is_set():
            if not self._writing.wait(0.2):
                continue
            events = [ev for _, ev in poller.poll(50)]
            if self._closed.is_set() or any(ev & select.POLLNVAL for ev in events):
                return
            if not any(ev & (select.POLLHUP | select.POLLERR) for ev in events):
                continue
            self._hung = True
            try:  # open the far end ourselves and swallow what the blocked write pushes
                drain = os.open(slave, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                return
            try:
                while self._writing.is_set() and not self._closed.is_set():
                    select.select([drain], [], [], 0.05)
                    try:
                        os.read(drain, 1 << 16)
                    except OSError:
                        pass
            finally:
                os.close(drain)
            return

    def close(self) -> None:
        self._closed.set()
        if self._guard is not None and self._guard is not threading.current_thread():
            self._guard.join(2.0)  # it polls ``fd``: never close (or reuse) it under it
        if self.fd >= 0:
            try:
                os.close(self.fd)
            finally:
                self.fd = -1


def open_cable() -> tuple[int, str]:
    """A raw pty pair: ``(camera master fd, dock slave path)``; the slave fd is kept open
    by nobody, so the dock opens the path itself."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


def open_dock_port(path: str, timeout: float = 1.0):
    import serial

    return serial.Serial(path, timeout=timeout, exclusive=True)


def ensure_dock(
    dock_dir: Path,
    key_path: Path,
    registry_path: Path | None,
    dock_id: str = "dock-sim",
    clock: Any = None,
):
    """The dock's identity (made once) and a store whose registry, signed by the simulated
    unit key (``<dock_dir>/../unit-key/unit.key``), lists the dock and every camera of
    ``registry_path``. The store trusts only that unit key, as a real dock does.
    ``clock``: the store's and its dock journal's (default the system clock)."""
    from dock.store import Store

    identity, fingerprint = prepare_dock(dock_dir, key_path, registry_path, dock_id)
    return identity, Store(dock_dir, clock, identity=identity, unit_keys=frozenset({fingerprint}))


def prepare_dock(
    dock_dir: Path, key_path: Path, registry_path: Path | None, dock_id: str = "dock-sim"
) -> tuple[Any, str]:
    """The dock's identity (made once), listed in the store's registry and the shift's
    (see :func:`ensure_dock`); and the simulated unit key's fingerprint."""
    from dock.store import REGISTRY_NAME
    from evidence.identity import DeviceIdentity
    from evidence.registry import DockEntry, Registry

    from .unit import register, unit_key

    identity = (
        DeviceIdentity.load(key_path)
        if key_path.exists()
        else DeviceIdentity.create(key_path, dock_id)
    )
    dock_dir.mkdir(parents=True, exist_ok=True)
    key = unit_key(dock_dir.parent)
    dock = DockEntry(identity.device_id, identity.public_key_hex, key.unit)
    if registry_path is not None and Registry.load(registry_path).fingerprint == key.fingerprint:
        register(registry_path, key, docks=[dock])  # the shift's own registry lists it too
    register(dock_dir / REGISTRY_NAME, key, docks=[dock], merge_from=registry_path)
    return identity, key.fingerprint


def run_docking(store, dock_identity, camera_link, port_timeout: float = 10.0) -> tuple[Any, Any]:
    """One docking over a fresh pty pair: the dock in a thread, the camera here.

    Returns ``(dock SessionResult, camera SessionOutcome or the exception it raised)``.
    """
    master, path = open_cable()
    dock_port = open_dock_port(path)  # opened before the camera speaks (pyserial flushes)
    return dock_over(store, dock_identity, camera_link, PtyEnd(master), dock_port, port_timeout)


def dock_over(
    store, dock_identity, camera_link, camera_end, dock_port, port_timeout: float = 10.0
) -> tuple[Any, Any]:
    """One docking between two ends of a cable: the dock's session in a thread (it closes
    ``dock_port`` when done, as a bay does), the camera's here (it closes ``camera_end``)."""
    from dock.session import DockSession

    result: dict[str, Any] = {}

    def dock_side() -> None:
        try:
            result["dock"] = DockSession(store, dock_identity, "sim-bay", timeout=port_timeout).run(
                dock_port
            )
        finally:
            dock_port.close()

    thread = threading.Thread(target=dock_side, name="sim-dock-bay", daemon=True)
    thread.start()
    try:
        camera: Any = camera_link.run_session(camera_end)
    except Exception as exc:  # the camera's outcome is reported, not raised
        camera = exc
    finally:
        camera_end.close()
    thread.join(port_timeout + 30)
    return result.get("dock"), camera


NS = 1_000_000_000
RTC_DRIFT_NS = 1_500_000_000
"""How far the simulated camera's RTC has drifted behind the dock by the end of a shift."""


def _last_record_ns(journal_path: Path) -> tuple[int, int]:
    """UTC and monotonic time of the camera's last record (the shift's end)."""
    from evidence.clock import parse_utc
    from evidence.journal import scan_journal
    from evidence.record import Record

    lines = [line for _, line in scan_journal(journal_path).lines if line]
    if not lines:
        return 0, 0
    last = Record.from_bytes(lines[-1])
    return parse_utc(last.utc), last.mono_ns


def dock_shift(
    device_dir: Path, key_path: Path, dock_dir: Path, registry_path: Path, clock, mqtt: Any = None
) -> dict:
    """End a simulated shift in a dock: offload ``device_dir`` into the store ``dock_dir``.

    The dock's key is kept beside the store (``<dock_dir>/../dock-key/dock.key``) and the
    camera trusts it, so the receipt is honoured and the camera wipes what it covers.
    With ``mqtt`` (a ``firmware.mqtt.MqttSettings``) the camera's alert link runs while it
    docks, as a real camera's does: the supervisor sees ``dock finished`` when the dock's
    receipt is journalled, then ``shift ended`` as the camera is switched off.
    """
    from evidence.identity import DeviceIdentity
    from evidence.journal import Journal
    from firmware.dock_link import DockLink
    from simulator.clock import SimClock

    device_dir, dock_dir = Path(device_dir), Path(dock_dir)
    identity = DeviceIdentity.load(key_path)
    # The camera's RTC kept the shift's time; the officer walks to the dock for a minute.
    # The camera's clock has drifted RTC_DRIFT_NS behind the dock's, which corrects it.
    last_utc, last_mono = _last_record_ns(device_dir / "journal.jsonl")
    camera_clock = SimClock(
        max(last_utc, clock.time_ns() - RTC_DRIFT_NS) + 60 * NS,
        start_monotonic_ns=last_mono + 60 * NS,
    )
    if clock.time_ns() < camera_clock.time_ns() + RTC_DRIFT_NS:
        clock.set_time_ns(camera_clock.time_ns() + RTC_DRIFT_NS)
    # The dock's store and journal keep the simulated day too; after a network shift its
    # journal already holds records of that day, and its clock goes on after them.
    from dock.store import Store
    from evidence.dockjournal import DOCK_JOURNALS_DIR

    dock_identity, fingerprint = prepare_dock(
        dock_dir, dock_dir.parent / "dock-key" / "dock.key", Path(registry_path)
    )
    own = dock_dir / DOCK_JOURNALS_DIR / dock_identity.device_id / "journal.jsonl"
    if own.exists() and clock.time_ns() <= (last := _last_record_ns(own)[0]):
        clock.set_time_ns(last + NS)
    store = Store(dock_dir, clock, identity=dock_identity, unit_keys=frozenset({fingerprint}))
    journal = Journal(device_dir / "journal.jsonl", identity, clock=camera_clock, repair_torn=True)
    alerts = None
    try:
        if mqtt is not None:
            from firmware.mqtt import AlertLink

            # The recorder is idle while docked: its indicator state says ready.
            alerts = AlertLink(journal, mqtt, status_source=lambda: ("ready", -1), consoles={})
            alerts.start()
            alerts.wait_connected(10)
        link = DockLink(
            device_dir,
            journal,
            camera_clock,
            {dock_identity.device_id: dock_identity.public_key_hex},
        )
        dock_result, camera = run_docking(store, dock_identity, link)
    finally:
        if alerts is not None:
            if alerts.wait_connected(0):
                alerts.wait_idle(10)
            alerts.stop()
        journal.close()
        store.close()
    summary = dock_result.to_dict() if dock_result is not None else {"outcome": "no result"}
    summary["dock"] = dock_identity.device_id
    summary["store"] = str(dock_dir)
    if isinstance(camera, Exception):
        summary["camera_error"] = str(camera)
    return summary


class NetworkDock:
    """The station's dock on loopback TLS, for a simulated fixed camera or a body camera
    on the station's Wi-Fi (``bodycam-sim shift --network``, or ``[shift] network = true``).

    The real network bay (:class:`dock.netbay.NetListener`) serves the store
    ``<out>/dock`` (made as :func:`dock_shift` makes it: the dock is in the shift's signed
    registry, which the camera pins its key from) on a free loopback port, its clock the
    shift's simulated clock; the real uploader (:class:`firmware.netdock.NetUploader`)
    runs beside the recorder. :meth:`summary` says what the network carried and how soon:
    close to stored in real seconds (the session that stored a segment ended that long
    after the segment closed), and from the two journals' stamps in simulated seconds (at
    a speed above 1, a session's real latency counts that many times).

    Threads: the bay's (see :mod:`dock.netbay`) and the uploader's; the journal listener
    only notes times."""

    def __init__(self, out: Path, registry_path: Path) -> None:
        self.out = Path(out)
        self.registry_path = Path(registry_path)
        self.identity, self.fingerprint = prepare_dock(
            self.out / "dock", self.out / "dock-key" / "dock.key", self.registry_path
        )
        self.stop_event = threading.Event()
        self.bay: Any = None
        self.store: Any = None
        self.uploader: Any = None
        self._closed: dict[int, float] = {}  # segment seq -> wall time it closed
        self._delays: list[float] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        from wire.net import format_address

        return format_address(self.bay.address) if self.bay is not None else "127.0.0.1:0"

    def camera_settings(self) -> dict[str, Any]:
        """The camera's ``[dock]`` table: network on (the port is known once the bay
        listens: :meth:`start` sets it), pinned by the shift's registry. The dock's clock
        is the camera's own simulated one, so no step is ever needed (a difference is a
        session's real latency, times the speed)."""
        return {
            "network": self.address,
            "registry": str(self.registry_path),
            "unit_keys": [self.fingerprint],
            "port": "",
            "network_clock_tolerance_s": 86400.0,
        }

    def start(self, recorder: Any, clock: Any) -> None:
        """Open the store on the shift's ``clock`` (its journal too: the dock's records
        follow the simulated day), serve it, and start ``recorder``'s uploader (the
        recorder has started: its journal is open)."""
        from dock.netbay import NetListener
        from dock.store import Store
        from firmware import config as cfg
        from firmware.netdock import uploader_for

        self.store = Store(
            self.out / "dock",
            clock,
            identity=self.identity,
            unit_keys=frozenset({self.fingerprint}),
        )
        self.bay = NetListener(
            ("127.0.0.1", 0), self.store, self.identity, self.stop_event, exit_on_fault=False
        )
        self.bay.start()
        recorder.config["dock"]["network"] = self.address
        recorder.journal.add_listener(self._on_record)
        self.uploader = uploader_for(
            recorder, recorder.config["dock"], cfg.dock_entries(recorder.config)
        )
        self._watch = threading.Thread(target=self._results, name="sim-net-watch", daemon=True)
        self._watch.start()
        recorder.services.append(self.uploader)  # stopped before the journal closes
        self.uploader.start()

    def _on_record(self, record: Any) -> None:  # the appending thread
        if record.kind == "segment":
            with self._lock:
                self._closed[record.seq] = time.monotonic()

    def _results(self) -> None:
        """Each stored session: the segments its receipt covers were stored by its end."""
        seen = 0
        with self.bay.done:
            while not self.stop_event.is_set():
                self.bay.done.wait(0.5)
                results = list(self.bay.results)
                now = time.monotonic()
                for result in results[seen:]:
                    upto = result.get("receipt_upto")
                    if result["outcome"] != "stored" or upto is None:
                        continue
                    with self._lock:
                        for seq in [s for s in self._closed if s <= upto]:
                            self._delays.append(now - self._closed.pop(seq))
                seen = len(results)

    def close(self) -> None:
        self.stop_event.set()
        if self.bay is not None:
            self.bay.join(15)
            self._watch.join(5)
            self.store.close()

    def summary(self, camera_journal: Path) -> dict[str, Any]:
        """What the network carried (call after :meth:`close`)."""
        from evidence.clock import parse_utc

        stamps: dict[int, int] = {}
        for line in [line for _, line in _lines(camera_journal)]:
            record = _record(line)
            if record is not None and record.kind == "segment":
                stamps[record.seq] = parse_utc(record.utc)
        simulated = []
        dock_journal = self.out / "dock" / "_docks" / self.identity.device_id / "journal.jsonl"
        for line in [line for _, line in _lines(dock_journal)]:
            record = _record(line)
            if record is not None and record.kind == "stored" and record.body["seq"] in stamps:
                simulated.append((parse_utc(record.utc) - stamps.pop(record.body["seq"])) / 1e9)
        up = self.uploader
        if self.bay is None:
            return {"address": None, "sessions": 0}
        return {
            "address": self.address,
            "sessions": self.bay.sessions,
            "stored_sessions": sum(r["outcome"] == "stored" for r in self.bay.results),
            "refused_connections": len(self.bay.refusals),
            "failed_tries": up.failures if up is not None else 0,
            "segments_stored": len(simulated),
            "segments_left_for_the_cable": len(stamps),
            "close_to_stored_s": _percentiles(self._delays),
            "close_to_stored_simulated_s": _percentiles(simulated),
        }


def _lines(path: Path) -> list[tuple[int, bytes]]:
    from evidence.journal import scan_journal

    return [(o, line) for o, line in scan_journal(path).lines if line] if path.exists() else []


def _record(line: bytes) -> Any:
    from evidence.record import Record

    try:
        return Record.from_bytes(line)
    except ValueError:
        return None


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 3)

    return {"n": len(ordered), "p50": at(50), "p99": at(99), "max": round(ordered[-1], 3)}
