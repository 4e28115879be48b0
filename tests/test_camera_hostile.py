"""A dock attacking the camera (issue 10): a hostile dock written by hand on a real pty pair
held by the test, against the real camera side (``firmware.dock_link.DockLink``) with the
trusted docks the real recorder config loads from a unit-signed registry.

Each attack asserts the camera's refusal and its reason, that the camera's journal got no
false record (nothing at all, or only true records naming the verified dock), that its
media and clock are as they were, and that the same camera then docks with an honest dock
(the real ``dock.session.DockSession``) and is stored, verified and wiped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockkit import NS, Camera, make_camera
from hostile_dock import CameraSide, FdPort, HostileDock, cable_pair

from dock.session import DockSession, SessionResult
from dock.store import Store
from evidence.clock import format_utc, parse_utc
from evidence.identity import DeviceIdentity
from evidence.record import Record
from evidence.registry import DockEntry
from firmware import config as cfg
from firmware.dock_link import DockLink, SessionOutcome, UntrustedDock
from firmware.drivers import rtc as rtc_mod
from firmware.drivers.rtc import LinuxRtc, RtcClock
from simulator.clock import SimClock
from simulator.dockbay import ensure_dock
from simulator.unit import register, unit_key
from wire.cable import NONCE, FrameType

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class World:
    """A camera with two recorded segments, the docks its unit-signed registry lists
    (``dock-sim`` honest, ``dock-revoked`` revoked, ``dock-old`` expired) and an honest
    dock's store."""

    tmp: Path
    camera: Camera
    files: list[str]
    honest: DeviceIdentity
    store: Store
    keys: dict[str, DeviceIdentity]
    entries: dict[str, DockEntry]

    def link(self, clock=None) -> DockLink:
        return DockLink(
            self.camera.root,
            self.camera.journal,
            clock or self.camera.clock,
            self.entries,
            timeout=5.0,
            max_clock_step_s=300.0,
        )

    def now(self) -> int:
        return self.camera.clock.time_ns()

    def snapshot(self) -> tuple[bytes, dict[str, str], int]:
        """What an attack must not change: the journal, the media, the clock."""
        media = {
            f: hashlib.sha256((self.camera.root / f).read_bytes()).hexdigest()
            for f in sorted(self.camera.media_files())
        }
        return self.camera.storage.journal_path.read_bytes(), media, self.now()

    def records(self) -> list[Record]:
        return self.camera.journal.records()

    def dock_honestly(self) -> tuple[SessionResult, SessionOutcome]:
        """The honest dock docks the camera: stored, clock set by ``dock-sim``, wiped."""
        cam_fd, dock_fd = cable_pair()
        camera = CameraSide(self.link(), cam_fd)
        port = FdPort(dock_fd)
        try:
            result = DockSession(self.store, self.honest, "test-bay", timeout=10).run(port)
            outcome = camera.wait()
        finally:
            port.close()
            camera.close()
        assert result.outcome == "stored", result.reason
        assert isinstance(outcome, SessionOutcome) and outcome.receipt_seq is not None, outcome
        assert self.camera.media_files() == set()  # everything stored, then wiped
        kinds = [r.kind for r in self.records()]
        assert kinds[-4:] == ["docked", "clock_set", "receipt", "wiped"]
        assert self.records()[-3].body["by"] == "dock-sim"
        return result, outcome


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    camera, device_registry = make_camera(tmp_path)
    files = camera.record(2, 20_000)
    key = unit_key(tmp_path)
    honest, store = ensure_dock(
        tmp_path / "dock", tmp_path / "dock-key" / "dock.key", device_registry
    )
    store.clock = SimClock(camera.clock.time_ns() + 2 * NS)  # the dock is 2 s ahead
    keys = {
        name: DeviceIdentity.create(tmp_path / f"{name}-key" / "dock.key", name)
        for name in ("dock-revoked", "dock-old", "dock-x", "impostor")
    }
    registry_path = tmp_path / "camera-registry.json"
    signed = register(
        registry_path,
        key,
        docks=[
            DockEntry("dock-sim", honest.public_key_hex, "unit-1"),
            DockEntry("dock-revoked", keys["dock-revoked"].public_key_hex, "unit-1"),
            DockEntry(
                "dock-old",
                keys["dock-old"].public_key_hex,
                "unit-1",
                valid_until="2026-01-01T00:00:00.000000Z",
            ),
        ],
    )
    signed.revoke("dock-revoked", "2026-06-01T00:00:00.000000Z", "stolen from station 3")
    signed.save_signed(registry_path, key, "2026-11-01T00:00:00.000000Z")
    # What bodycam-recorder loads: [dock] registry, signed by a unit key it names.
    toml = tmp_path / "recorder.toml"
    toml.write_text(f'[dock]\nregistry = "{registry_path}"\nunit_keys = ["{key.fingerprint}"]\n')
    entries = cfg.dock_entries(cfg.load(toml))
    assert set(entries) == {"dock-sim", "dock-revoked", "dock-old"}
    w = World(tmp_path, camera, files, honest, store, keys, entries)
    try:
        yield w
    finally:
        camera.close()
        store.close()


@contextlib.contextmanager
def attack(
    world: World,
    identity: DeviceIdentity | None,
    dock_id: str | None = None,
    link: DockLink | None = None,
) -> Iterator[tuple[HostileDock, CameraSide]]:
    """A hostile dock on a fresh pty pair against the camera; the dock hangs up at the end."""
    cam_fd, dock_fd = cable_pair()
    camera = CameraSide(link or world.link(), cam_fd)
    dock = HostileDock(dock_fd, identity, dock_id)
    try:
        yield dock, camera
    finally:
        os.close(dock_fd)
        camera.wait()
        camera.close()


def verify_camera(world: World) -> subprocess.CompletedProcess:
    """``bodycam-verify`` on the camera's folder, trusting the unit's registry."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "evidence.verify_cli",
            str(world.camera.root),
            "--registry",
            str(world.tmp / "dock" / "registry.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_dock_not_in_the_registry_may_copy_but_sets_no_clock_and_wipes_nothing(world):
    before = world.snapshot()
    with attack(world, world.keys["dock-x"]) as (dock, camera):
        kind, response = dock.challenge()
        assert kind is FrameType.RESPONSE and NONCE.match(response["camera_nonce"])
        kind, reply = dock.clock(world.now() + 60 * NS)  # validly signed, by its own key
        assert kind is FrameType.CLOCK_SET and reply["set"] is False
        assert "dock dock-x is not trusted: it is not in this camera's registry" in reply["reason"]
        kind, wiped = dock.receipt(dock.receipt_body(world.camera.journal.head))
        assert kind is FrameType.WIPED and wiped["files"] == 0
        assert "not in this camera's registry: receipt not honoured" in wiped["reason"]
        dock.bye()
        assert isinstance(camera.wait(), SessionOutcome)
    assert world.snapshot() == before  # not even a `docked` record for a stranger
    world.dock_honestly()
    done = verify_camera(world)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("dock-revoked", "revoked at 2026-06-01T00:00:00.000000Z: stolen from station 3"),
        ("dock-old", "its key expired at 2026-01-01T00:00:00.000000Z"),
    ],
)
def test_a_revoked_or_expired_dock_is_refused_at_the_challenge(world, name, says):
    before = world.snapshot()
    with attack(world, world.keys[name]) as (dock, camera):
        kind, refusal = dock.challenge()  # its own registered key
        assert kind is FrameType.REFUSE and says in refusal["reason"], refusal
        outcome = camera.wait()
    assert isinstance(outcome, UntrustedDock) and says in str(outcome)
    assert world.snapshot() == before
    world.dock_honestly()


def test_a_dock_claiming_a_registered_id_with_another_key_is_refused(world):
    before = world.snapshot()
    with attack(world, world.keys["impostor"], dock_id="dock-sim") as (dock, camera):
        kind, refusal = dock.challenge()
        assert kind is FrameType.REFUSE
        assert "dock dock-sim offers a key that is not its key" in refusal["reason"]
        assert "impostor" in refusal["reason"]
        assert isinstance(camera.wait(), UntrustedDock)
    assert world.snapshot() == before
    world.dock_honestly()


@pytest.mark.parametrize("order", ["clock", "receipt"])
def test_a_dock_showing_a_registered_key_it_does_not_hold_is_refused(world, order):
    """The registered public key is no secret: claiming it is easy, signing with it is not."""
    before = world.snapshot()
    with attack(world, world.keys["impostor"], dock_id="dock-sim") as (dock, camera):
        kind, _ = dock.challenge(key_hex=world.honest.public_key_hex)
        assert kind is FrameType.RESPONSE  # a stranger may read, as any dock may
        if order == "clock":
            kind, refusal = dock.clock(world.now() + NS)
            what = "CLOCK"
        else:
            kind, refusal = dock.receipt(dock.receipt_body(world.camera.journal.head))
            what = "RECEIPT"
        assert kind is FrameType.REFUSE
        assert f"{what} is not signed by dock dock-sim's key for this session" in refusal["reason"]
        assert "forged, or replayed" in str(camera.wait())
    assert world.snapshot() == before
    world.dock_honestly()


def test_a_receipt_replayed_from_an_earlier_session_is_refused(world):
    # Session 1: the real dock-sim key gives a receipt; the attacker keeps a copy of it.
    with attack(world, world.honest) as (dock, camera):
        dock.challenge()
        kind, clock = dock.clock(world.now() + NS)
        assert clock["set"] is True
        captured = dock.receipt_body(world.camera.journal.head)
        kind, wiped = dock.receipt(captured)
        assert kind is FrameType.WIPED and wiped["files"] == len(world.files)
        dock.bye()
        camera.wait()
    assert [r.kind for r in world.records()].count("receipt") == 1
    world.camera.record(1, 20_000, seed=1)  # the next shift
    before = world.snapshot()
    # Session 2: an impostor without the key replays the copy, as is and for the new head.
    for body in (captured, {**captured, "upto_seq": world.camera.journal.head[0]}):
        with attack(world, None, dock_id="dock-sim") as (dock, camera):
            kind, _ = dock.challenge(key_hex=world.honest.public_key_hex)
            kind, refusal = dock.receipt(body)
            assert kind is FrameType.REFUSE
            assert (
                "RECEIPT is not signed by dock dock-sim's key for this session"
                in (refusal["reason"])
            )
            assert "replayed from another session" in str(camera.wait())
        assert world.snapshot() == before  # no second receipt, nothing wiped
    world.dock_honestly()
    assert [r.kind for r in world.records()].count("receipt") == 2  # session 1's and the honest one
    done = verify_camera(world)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (lambda now: 0, "outside 2025-01-01..2099-12-31"),  # 1970
        (lambda now: parse_utc("2150-01-01T00:00:00.000000Z"), "outside 2025-01-01..2099-12-31"),
        (lambda now: now + 3600 * NS, "a step of +3600 s exceeds the camera's limit of 300 s"),
        (lambda now: now - 3600 * NS, "a step of -3600 s exceeds the camera's limit of 300 s"),
    ],
    ids=["1970", "2150", "+1h", "-1h"],
)
def test_a_registered_dock_cannot_step_a_valid_clock_far(world, target, says):
    journal_before, media_before, clock_before = world.snapshot()
    count = len(world.records())
    with attack(world, world.honest) as (dock, camera):
        dock.challenge()
        kind, reply = dock.clock(target(world.now()))
        assert kind is FrameType.CLOCK_SET and reply["set"] is False and says in reply["reason"]
        dock.bye()
        camera.wait()
    _, media_after, clock_after = world.snapshot()
    assert (media_after, clock_after) == (media_before, clock_before)
    new = world.records()[count:]
    assert [r.kind for r in new] == ["docked", "clock_not_set"]  # true records, verified id
    assert new[0].body["dock"] == new[1].body["by"] == "dock-sim"
    assert says in new[1].body["reason"] and "clock_set" not in [r.kind for r in new]
    assert world.camera.storage.journal_path.read_bytes().startswith(journal_before)
    world.dock_honestly()


def test_300_clock_frames_set_the_clock_once_and_are_refused(world):
    count = len(world.records())
    with attack(world, world.honest) as (dock, camera):
        dock.challenge()
        now = world.now()
        flood = b"".join(dock.clock_frame(now + i * NS) for i in range(1, 301))
        dock.write(flood, give_up=camera.done)
        kind, first = dock.recv_json(FrameType.CLOCK_SET)
        assert first["set"] is True and first["offset_ns"] == NS
        kind, refusal = dock.recv_json(FrameType.REFUSE)
        assert "more than 1 CLOCK frame(s) in one session" in refusal["reason"]
        camera.wait()
    new = world.records()[count:]
    assert [r.kind for r in new] == ["docked", "clock_set"]  # not 600 records
    assert world.now() == now + NS
    assert world.camera.media_files() == set(world.files)
    world.dock_honestly()


class KernelRtc:
    """The ``/dev/rtc0`` ioctls of a DS3231 behind the kernel driver (the hardware seam of
    :class:`LinuxRtc`): ``tm`` None = oscillator stopped (reads fail with EINVAL);
    ``refuse_set`` = the chip does not take the time (EIO)."""

    def __init__(self, now_ns: int | None, refuse_set: bool = False) -> None:
        self.tm = None if now_ns is None else self._pack(now_ns)
        self.refuse_set = refuse_set
        self.sets = 0

    @staticmethod
    def _pack(ns: int) -> tuple[int, ...]:
        import time

        t = time.gmtime(ns // NS)
        return (t.tm_sec, t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon - 1, t.tm_year - 1900, 0, 0, 0)

    def __call__(self, fd: int, request: int, arg: bytes) -> bytes:
        if request == rtc_mod.RTC_SET_TIME:
            if self.refuse_set:
                raise OSError(errno.EIO, "Input/output error")
            self.tm = struct.unpack("9i", arg)
            self.sets += 1
            return arg
        if request == rtc_mod.RTC_RD_TIME:
            if self.tm is None:
                raise OSError(errno.EINVAL, "Invalid argument")
            return struct.pack("9i", *self.tm)
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")


def rtc_clock(world: World, kernel: KernelRtc) -> RtcClock:
    """The device's clock (system clock + RTC), with the system clock being the camera's
    simulated one, so the journal's stamps follow what the dock sets."""
    dev = world.tmp / "rtc0"
    dev.write_bytes(b"")
    sim = world.camera.clock
    return RtcClock(
        LinuxRtc(dev, ioctl=kernel), set_system_clock=sim.set_time_ns, now_ns=sim.time_ns
    )


def test_an_rtc_that_refuses_the_time_leaves_the_clock_and_is_journaled(world):
    kernel = KernelRtc(world.now(), refuse_set=True)
    count = len(world.records())
    before = world.now()
    with attack(world, world.honest, link=world.link(rtc_clock(world, kernel))) as (dock, camera):
        dock.challenge()
        kind, reply = dock.clock(before + 30 * NS)
        assert kind is FrameType.CLOCK_SET and reply["set"] is False
        assert "the clock refused the time" in reply["reason"] and "Input/output" in reply["reason"]
        dock.bye()
        camera.wait()
    assert world.now() == before  # the system clock did not move either
    new = world.records()[count:]
    assert [r.kind for r in new] == ["docked", "clock_set", "clock_not_set"]
    assert new[1].body["by"] == "dock-sim" and new[1].body["new_utc"] == format_utc(
        before + 30 * NS
    )
    assert new[2].body["clock_set_seq"] == new[1].seq
    assert "the clock refused the time" in new[2].body["reason"]
    assert world.camera.media_files() == set(world.files)
    world.dock_honestly()
    done = verify_camera(world)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_camera_whose_rtc_lost_its_time_takes_a_large_step_once(world):
    """Unless the camera knows its clock is wrong, the step is bounded: an RTC whose
    oscillator stopped is such a case, and a registered dock may then set any sane time."""
    kernel = KernelRtc(None)  # oscillator stopped: the RTC cannot be read
    clock = rtc_clock(world, kernel)
    assert clock.time_valid() is False
    target = world.now() + 10 * 86400 * NS
    with attack(world, world.honest, link=world.link(clock)) as (dock, camera):
        dock.challenge()
        kind, reply = dock.clock(target)
        assert kind is FrameType.CLOCK_SET and reply["set"] is True, reply
        dock.bye()
        camera.wait()
    assert world.now() == target and kernel.sets == 1 and clock.time_valid() is True
    assert [r.kind for r in world.records()][-2:] == ["docked", "clock_set"]
    # Now that the RTC keeps time again, the same step is refused.
    with attack(world, world.honest, link=world.link(clock)) as (dock, camera):
        dock.challenge()
        kind, reply = dock.clock(world.now() + 10 * 86400 * NS)
        assert reply["set"] is False and "exceeds the camera's limit" in reply["reason"]
        dock.bye()
        camera.wait()
    assert world.now() == target
    world.store.clock = SimClock(world.now() + NS)
    world.dock_honestly()


def test_a_dock_speaking_the_old_protocol_is_refused(world):
    before = world.snapshot()
    with attack(world, world.honest) as (dock, camera):
        kind, refusal = dock.challenge(proto=1)
        assert kind is FrameType.REFUSE and "this camera needs 2" in refusal["reason"]
        camera.wait()
    assert world.snapshot() == before
    world.dock_honestly()
