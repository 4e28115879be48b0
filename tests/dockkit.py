"""Helpers for the dock tests: a camera's storage made with the real journal and media
writer, a dock store, and one docking over a real pty pair."""

from __future__ import annotations

import os
import random
import struct
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
from simulator.dockbay import ensure_dock, run_docking

NS = 1_000_000_000
START = 1_795_000_000 * NS  # 2026-11-18


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
