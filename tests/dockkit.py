"""Helpers for the dock tests: a camera's storage made with the real journal and media
writer, a dock store, and one docking over a real pty pair.

Cables are pty pairs whose two fds the test makes with ``openpty`` and holds: a pty is
never reopened by its ``/dev/pts/N`` path (a concurrent run that opens that path would
talk into this test's cable). A bay process gets a path, as a dock gets
``/dev/ttyACM0``: a symlink to ``/proc/<test pid>/fd/<slave fd>``, which names the held fd
itself, not a pts number that another test's pty may take.
"""

from __future__ import annotations

import errno
import os
import pty
import random
import select
import struct
import threading
import tty
from pathlib import Path

from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.layout import DeviceStorage
from evidence.media import HashingWriter
from evidence.registry import DeviceEntry, Registry
from evidence.storage import fsync_dir
from firmware.dock_link import DockLink
from simulator.clock import SimClock
from simulator.dockbay import PtyEnd, dock_over, ensure_dock

NS = 1_000_000_000
START = 1_795_000_000 * NS  # 2026-11-18


class HeldTty(PtyEnd):
    """One end of a pty pair, on the fd the test holds, in pyserial's port shape: reads as
    :class:`~simulator.dockbay.PtyEnd` does, but ``write`` gives up after ``write_timeout``
    when the peer stops reading instead of reopening the far end by its ``/dev/pts`` name
    (another test's pty, later) to drain it; ``fileno`` lets the dock's link read the tty."""

    def __init__(self, fd: int, timeout: float | None = 1.0) -> None:
        blocking = os.get_blocking(fd)
        super().__init__(fd, timeout)
        os.set_blocking(fd, blocking)  # as the test made it: raw fd users see no change
        self.write_timeout: float | None = 10.0

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        blocking = os.get_blocking(self.fd)
        os.set_blocking(self.fd, False)
        try:
            while view:
                if not self._wait(select.POLLOUT, self.write_timeout):
                    raise OSError(errno.ETIMEDOUT, "pty peer stopped reading")
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:
                    continue
        finally:
            os.set_blocking(self.fd, blocking)
        return len(data)


def cable_pair(timeout: float = 1.0) -> tuple[HeldTty, HeldTty]:
    """``(camera end, dock end)`` of a raw pty pair the caller holds."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return HeldTty(master, timeout), HeldTty(slave, timeout)


class BayCable:
    """A cable for a ``bodycam-dock bay`` process: ``path`` is what the bay is given; it
    names the held slave fd. ``plug`` makes a new pty pair behind the same path (the bay
    sees another device, as after a replug); ``unplug`` closes both ends."""

    def __init__(self, folder: Path, name: str = "ttyACM0") -> None:
        self.path = folder / name
        self.camera: HeldTty | None = None
        self._slave: int = -1
        self.plug()

    def plug(self) -> HeldTty:
        # The new pair is made before the old one closes, so it is another pts node (the
        # bay tells cables apart by inode and ctime, and a coarse ctime may repeat).
        master, slave = pty.openpty()
        self.unplug()
        tty.setraw(master)
        tty.setraw(slave)
        self.camera, self._slave = HeldTty(master), slave
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(f"/proc/{os.getpid()}/fd/{slave}", tmp)
        os.replace(tmp, self.path)
        return self.camera

    def release_dock_end(self) -> None:
        """Stop holding the dock's end (the path goes too): once the bay's fd closes, the
        camera's line hangs up, as when the dock dies and the USB link drops."""
        self.path.unlink(missing_ok=True)
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1

    def unplug(self) -> None:
        if self.camera is not None:
            self.release_dock_end()
            self.camera.close()
            self.camera = None


def run_docking(store, dock_identity, camera_link, port_timeout: float = 10.0):
    """One docking over a held pty pair: the dock in a thread, the camera here.

    Returns ``(dock SessionResult, camera SessionOutcome or the exception it raised)``.
    The dock closes its end when its session is over (as a bay does)."""
    camera_end, dock_end = cable_pair()
    return dock_over(store, dock_identity, camera_link, camera_end, dock_end, port_timeout)


def ts_bytes(size: int, seed: int) -> bytes:
    """MPEG-TS-shaped bytes: 188-byte packets with the 0x47 sync byte, PID and counter."""
    rnd = random.Random(seed)
    packets = []
    for i in range(size // 188 + 1):
        header = struct.pack(">BHB", 0x47, 0x0100 | (i == 0) << 14, 0x10 | (i & 0xF))
        packets.append(header + rnd.randbytes(184))
    return b"".join(packets)[:size]


class Camera:
    """A camera's storage and journal, made with the real evidence API."""

    def __init__(self, root: Path, identity: DeviceIdentity, clock: SimClock) -> None:
        self.root = root
        self.identity = identity
        self.clock = clock
        self.storage = DeviceStorage(root)
        self.storage.write_identity(identity)
        self.journal = Journal(self.storage.journal_path, identity, clock=clock)
        if self.journal.head is None:
            self.journal.append(
                "boot", {"firmware": "test", "boot_id": "0" * 32, "reason": "start"}
            )

    def record(self, segments: int, size: int, seconds: int = 60, seed: int = 0) -> list[str]:
        self.journal.append("recording_started", {"pre_event_s": 30})
        files = []
        for i in range(segments):
            start = self.clock.time_ns()
            self.clock.advance(seconds * NS)
            day = format_utc(start)[:10].replace("-", "")
            n = self.journal.next_seq
            writer = HashingWriter(self.root, self.storage.media_relative(day, f"seg-{n:06d}.ts"))
            data = ts_bytes(size + i, seed * 1000 + n)
            for k in range(0, len(data), 65536):
                writer.write(data[k : k + 65536])
            info = writer.close()
            self.journal.append(
                "segment",
                info.body(
                    start_utc=format_utc(start),
                    end_utc=format_utc(self.clock.time_ns()),
                    frames=seconds * 25,
                    audio_frames=seconds * 47,
                    recovered=False,
                ),
            )
            files.append(info.file)
        self.journal.append("recording_stopped", {"by": "button"})
        return files

    def media_files(self) -> set[str]:
        return {
            p.relative_to(self.root).as_posix()
            for p in (self.root / "media").rglob("*")
            if p.is_file()
        }

    def link(
        self, dock: DeviceIdentity | None, timeout: float = 5.0, chunk: int = 1 << 18
    ) -> DockLink:
        trusted = {dock.device_id: dock.public_key_hex} if dock else {}
        return DockLink(self.root, self.journal, self.clock, trusted, timeout=timeout, chunk=chunk)

    def close(self) -> None:
        self.journal.close()


def make_camera(
    tmp: Path,
    device_id: str = "cam-001",
    officer: str = "A1024",
    unit: str = "unit-1",
    clock: SimClock | None = None,
) -> tuple[Camera, Path]:
    """A provisioned camera and a registry file that names it."""
    identity = DeviceIdentity.create(tmp / f"{device_id}-key" / "device.key", device_id)
    registry_path = tmp / f"registry-{device_id}.json"
    registry = Registry()
    registry.add(DeviceEntry(device_id, identity.public_key_hex, officer, unit))
    registry.save(registry_path)
    camera = Camera(tmp / device_id, identity, clock or SimClock(START))
    return camera, registry_path


def make_dock(tmp: Path, registry_path: Path | None, clock=None):
    identity, store = ensure_dock(tmp / "dock", tmp / "dock-key" / "dock.key", registry_path)
    if clock is not None:
        store.clock = clock
    return identity, store


def dock_once(store, dock_identity, camera: Camera, trusted: bool = True, timeout: float = 5.0):
    link = camera.link(dock_identity if trusted else None, timeout)
    return run_docking(store, dock_identity, link, port_timeout=timeout)


def store_trust(tmp: Path) -> frozenset[str]:
    """The unit key a simulated store beside ``tmp/trust.toml`` is signed by (what a court
    expert names by fingerprint)."""
    from evidence.trust import load_unit_keys

    return load_unit_keys(trust_file=tmp / "trust.toml", default_file=None)


def verify_args(store: Path) -> list[str]:
    """``bodycam-verify`` arguments that trust the simulated unit key of ``store``."""
    return [str(store), "--trust", str(store.parent / "trust.toml")]


def alter_byte(path: Path, offset: int = 1000) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def dock_cmd(tmp: Path, *args: str) -> list[str]:
    """``bodycam-dock`` on the store ``tmp/dock`` with its key, trusting its unit key."""
    import sys

    trust = [a for fp in sorted(store_trust(tmp)) for a in ("--unit-key", fp)]
    return [
        sys.executable,
        "-m",
        "dock",
        "--store",
        str(tmp / "dock"),
        "--key",
        str(tmp / "dock-key" / "dock.key"),
        *trust,
        *args,
    ]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll a condition a daemon produces (a file, an index row), with a deadline."""
    import time

    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        tick.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


SCENARIOS = Path(__file__).resolve().parents[1] / "simulator" / "scenarios"


def shift_docked(out: Path, scenario: str, timeout: float = 600) -> None:
    """``bodycam-sim shift --dock`` of ``simulator/scenarios/<scenario>.toml`` into ``out``
    (a real run of the command, as a user types it)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "simulator", "shift", "--out", str(out), "-q", "--dock"]
        + ["--scenario", str(SCENARIOS / f"{scenario}.toml")],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def compliance_report(out: Path, status: int, *args: str) -> dict:
    """``bodycam-dock report compliance --format json`` over ``out/dock``, its exit status
    checked (0: no findings, 1: findings)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "dock", "--store", str(out / "dock"), "report", "compliance"]
        + ["--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == status, done.stdout[-3000:] + done.stderr
    return json.loads(done.stdout)
