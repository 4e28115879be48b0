"""Helpers for the network docking tests: a real dock (the in-process network bay on a free
loopback port, or ``bodycam-dock serve --listen``), the camera's uploader, and a TCP proxy
that cuts a connection at a chosen byte."""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dockkit import dock_cmd

from dock.netbay import NetListener
from evidence.clock import parse_utc
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.registry import DockEntry
from firmware.netdock import NetUploader
from wire.net import format_address


class Listening:
    """The network bay in this process: ``with Listening(store, identity) as bay``."""

    def __init__(self, store, identity, timeout: float = 5.0, **kw) -> None:
        self.stop = threading.Event()
        self.bay = NetListener(
            ("127.0.0.1", 0), store, identity, self.stop, timeout, exit_on_fault=False, **kw
        )

    def __enter__(self) -> NetListener:
        self.bay.start()
        return self.bay

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.bay.join(10)


def wait_until(bay, predicate, timeout: float = 20.0, what: str = "the bay") -> None:
    """Wait on ``bay.done`` (a Condition notified after each session or refusal)."""
    with bay.done:
        if not bay.done.wait_for(predicate, timeout):
            raise AssertionError(f"timed out waiting for {what}")


def trusted_docks(store) -> dict[str, DockEntry]:
    """The docks of the store's unit-signed registry, as a camera's registry gives them."""
    return {d.dock_id: d for d in store.registry().docks()}


def uploader(camera, address, docks, **kw) -> NetUploader:
    """The real uploader on a test camera (anything with root, journal and clock)."""
    kw.setdefault("timeout", 5.0)
    text = address if isinstance(address, str) else format_address(address)
    return NetUploader(camera, text, docks, **kw)


class CutProxy:
    """A TCP relay on a free loopback port to ``target``. Each connection is relayed
    whole, except that the next ``cut`` set with :meth:`arm` (bytes, direction ``up``:
    camera to dock, or ``down``) closes both sides once that many bytes went that way."""

    def __init__(self, target: tuple[str, int], rate: float | None = None) -> None:
        """``rate``: at most this many bytes a second each way (a slow link)."""
        self.target = target
        self.rate = rate
        self.relayed = {"up": 0, "down": 0}
        self._moved = threading.Condition()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()[:2]
        self._armed: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self.cuts: list[tuple[int, str, int]] = []  # (cut, direction, bytes relayed that way)
        self.connections = 0
        self.cut_done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def wait_bytes(self, n: int, direction: str, timeout: float) -> None:
        with self._moved:
            if not self._moved.wait_for(lambda: self.relayed[direction] >= n, timeout):
                raise AssertionError(f"fewer than {n} bytes went {direction}")

    def _send(self, dst: socket.socket, data: bytes, direction: str) -> None:
        if self.rate:
            self._stop.wait(len(data) / self.rate)  # the link's pace, not a synchronisation
        dst.sendall(data)
        with self._moved:
            self.relayed[direction] += len(data)
            self._moved.notify_all()

    def arm(self, cut: int, direction: str) -> None:
        with self._lock:
            self.cut_done.clear()
            self._armed = (cut, direction)

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                armed, self._armed = self._armed, None
                self.connections += 1
            threading.Thread(target=self._relay, args=(client, armed), daemon=True).start()

    def _relay(self, client: socket.socket, armed: tuple[int, str] | None) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, ("up", upstream))
        sel.register(upstream, selectors.EVENT_READ, ("down", client))
        counted = 0
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(1.0):
                    direction, dst = key.data
                    data = key.fileobj.recv(16384 if self.rate else 65536)
                    if not data:
                        return
                    if armed is not None and direction == armed[1]:
                        room = armed[0] - counted
                        self._send(dst, data[:room], direction)
                        counted += min(len(data), room)
                        if counted >= armed[0]:
                            self.cuts.append((armed[0], armed[1], counted))
                            return
                    else:
                        self._send(dst, data, direction)
        except OSError:
            return
        finally:
            if armed is not None and not any(c[0] == armed[0] for c in self.cuts[-1:]):
                self.cuts.append((armed[0], armed[1], counted))  # the session ended first
            for s in (client, upstream):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                except OSError:
                    pass
                s.close()  # with linger 0: a reset, as a dropped network gives
            sel.close()
            if armed is not None:
                self.cut_done.set()

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(5)


@dataclass
class DockProcess:
    """``bodycam-dock serve --listen 127.0.0.1:0`` on the store ``tmp/dock``."""

    tmp: Path
    proc: subprocess.Popen = field(init=False)
    address: tuple[str, int] = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.tmp / "dock.log"
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self._out = open(self.log, "w")  # noqa: SIM115 - held for the process's life
        self.proc = subprocess.Popen(
            dock_cmd(self.tmp, "serve", "--listen", "127.0.0.1:0"),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        found = wait_for_log(self.log, r"network bay listening on 127\.0\.0\.1:(\d+)", self.proc)
        self.address = ("127.0.0.1", int(found.group(1)))

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for_log(path: Path, pattern: str, proc=None, timeout: float = 30.0):
    """The first match of ``pattern`` in the log file ``path`` (a daemon writes it)."""
    import time

    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text() if path.exists() else "")
        if m:
            return m
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the dock exited ({proc.returncode}): {path.read_text()[-2000:]}")
        tick.wait(0.05)
    raise AssertionError(f"no {pattern!r} in {path} within {timeout} s")


def records(path: Path) -> list[Record]:
    return [Record.from_bytes(line) for _, line in scan_journal(path).lines if line]


def close_to_stored(camera_journal: Path, dock_journal: Path) -> list[float]:
    """Seconds from each segment's close (its record in the camera's journal) to the dock
    journal's ``stored`` record of it, both read from the journals' UTC stamps."""
    closed = {r.seq: parse_utc(r.utc) for r in records(camera_journal) if r.kind == "segment"}
    stored = {}
    for r in records(dock_journal):
        if r.kind == "stored" and r.body.get("seq") in closed:
            stored.setdefault(r.body["seq"], parse_utc(r.utc))
    return [(stored[s] - closed[s]) / 1e9 for s in sorted(closed) if s in stored]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class NetCamera:
    """The real recorder on the simulator's twin (real time), with its network uploader
    pointed at ``network``; its dock store ``tmp/dock`` (made here, trusting the camera,
    listed in the camera's signed registry) is served by whoever the test starts.

    ``dock``: extra ``[dock]`` settings (fast retries by default, for tests)."""

    def __init__(self, tmp: Path, network: str = "127.0.0.1:9", **dock) -> None:
        from gpiozero.pins.mock import MockFactory
        from recorderkit import short_wav

        from simulator.dockbay import ensure_dock
        from simulator.scenario import Scenario
        from simulator.shift import prepare_device, shift_config, sim_hardware
        from simulator.unit import unit_key

        self.tmp = tmp
        scenario = Scenario(shift={"device": "cam-net"})
        identity, registry = prepare_device(tmp, scenario)
        self.dock_identity, store = ensure_dock(
            tmp / "dock", tmp / "dock-key" / "dock.key", registry
        )
        store.close()
        settings = {
            "port": "",
            "network": network,
            "registry": str(registry),
            "unit_keys": [unit_key(tmp).fingerprint],
            "timeout_s": 3.0,
            "network_retry_s": 0.05,
            "network_retry_max_s": 0.4,
            "network_refused_retry_s": 0.4,
            **dock,
        }
        self.config = shift_config(
            tmp,
            Scenario(
                config={
                    "announcement": {"wav": str(short_wav(tmp))},
                    "recording": {"segment_max_s": 1, "pre_event_s": 0, "flush_interval_s": 1.0},
                    "dock": settings,
                }
            ),
        )
        self.identity = identity
        self.factory = MockFactory()
        self.hw = sim_hardware(
            self.config, tmp, speed=1.0, device_id=identity.device_id, pin_factory=self.factory
        )
        self.recorder = None
        self.uploader = None
        self.gate = None

    def start(self, upload: bool = True):
        from firmware import config as cfg
        from firmware.docking import SessionGate
        from firmware.netdock import uploader_for
        from simulator.shift import recorder_on

        self.recorder = recorder_on(self.hw, self.config, self.identity, pin_factory=self.factory)
        self.loop = threading.Thread(target=self.recorder.run, daemon=True)
        self.recorder.start()
        self.loop.start()
        self.gate = SessionGate()
        self.uploader = uploader_for(
            self.recorder, self.config["dock"], cfg.dock_entries(self.config), self.gate
        )
        self.recorder.services.append(self.uploader)
        if upload:
            self.uploader.start()
        return self

    def record(self) -> None:
        self.recorder.button("record", True)
        self.recorder.button("record", False)
        assert self.recorder.sync()

    def stop_recording(self, timeout: float = 30.0) -> None:
        """A stop hold (timestamped), then wait for ``recording_stopped`` in the journal."""
        NS = 1_000_000_000
        t = self.hw["clock"].monotonic_ns()
        hold = int((self.config["controls"]["stop_hold_s"] + 0.5) * NS)
        self.recorder.button("record", True, t)
        self.recorder.button("record", False, t + hold)
        self.wait_journal(
            lambda rs: (
                sum(r.kind == "recording_stopped" for r in rs)
                >= sum(r.kind == "recording_started" for r in rs)
            ),
            timeout,
            "recording_stopped",
        )

    def wait_journal(self, predicate, timeout: float = 30.0, what: str = "a record"):
        import time

        tick = threading.Event()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rs = self.recorder.journal.records()
            if predicate(rs):
                return rs
            tick.wait(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    @property
    def journal_path(self) -> Path:
        return self.tmp / "device" / "journal.jsonl"

    def store_journal(self) -> Path:
        return self.tmp / "dock" / "unit-1" / self.identity.device_id / "journal.jsonl"

    def wait_all_stored(self, timeout: float = 60.0) -> None:
        """Until the store's copy of the journal equals the camera's and the card holds no
        file the store has (the session wipes them after its receipt; closing the camera
        before would cut that session short), kicking the uploader."""
        import time

        tick = threading.Event()
        deadline = time.monotonic() + timeout
        card = self.tmp / "device"
        while time.monotonic() < deadline:
            store = self.store_journal()
            if store.exists() and store.read_bytes() == self.journal_path.read_bytes():
                kept = [f.relative_to(card) for f in (card / "media").rglob("*.ts")]
                if not any((store.parent / f).exists() for f in kept):
                    return
            self.uploader.kick()
            with self.uploader.done:
                self.uploader.done.wait(1.0)
            tick.wait(0.05)
        raise AssertionError("the store never caught up with the camera's journal")

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.request_stop()
            self.loop.join(60)
        self.hw["indicators"].close()
        self.factory.close()
