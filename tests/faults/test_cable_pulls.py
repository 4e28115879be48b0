"""The cable pulled at random byte offsets, then re-docked: nothing lost, nothing doubled.

Both directions: counted in camera-to-dock bytes (mid-offload, mid-file), and in
dock-to-camera bytes (at the challenge, the clock, the receipt: the wipe comes after the
receipt, so a cut there is a cut "at the wipe").

The cable is two pty pairs joined by a byte-counting relay; pulling it closes the relay's
ends, so the camera's line and the dock's line both break (EIO), as a USB unplug does.
The test holds every pty fd (none is reopened by path).
"""

from __future__ import annotations

import os
import random
import select
import threading

import pytest
from dockkit import cable_pair, dock_once, make_camera, make_dock, store_trust

from evidence.verify import verify_path

pytestmark = pytest.mark.faults


class PulledCable:
    """Relays camera <-> dock and pulls the plug after ``cut`` bytes in one direction
    (``up``: camera to dock; ``down``: dock to camera)."""

    def __init__(self, cut: int, direction: str = "up") -> None:
        self.cut = cut
        self.direction = direction
        self.camera_end, relay_camera = cable_pair()
        relay_dock, self.dock_port = cable_pair()
        self._camera_slave, self._dock_master = relay_camera.fd, relay_dock.fd
        self.sent = 0
        self.pulled = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _pull(self) -> None:
        self.pulled.set()
        for fd in (self._camera_slave, self._dock_master):
            os.close(fd)

    def _relay(self) -> None:
        a, b = self._camera_slave, self._dock_master
        while True:
            try:
                ready, _, _ = select.select([a, b], [], [], 10)
                if not ready:
                    break
                for src, dst, counted in ((a, b, "up"), (b, a, "down")):
                    if src not in ready:
                        continue
                    data = os.read(src, 65536)
                    if counted != self.direction:
                        os.write(dst, data)
                        continue
                    room = self.cut - self.sent
                    os.write(dst, data[:room])
                    self.sent += min(len(data), room)
                    if self.sent >= self.cut:
                        self._pull()
                        return
            except OSError:  # a side closed after the session ended normally
                break
        self._pull()

    def join(self) -> None:
        self._thread.join(15)


def dock_through(store, dock_identity, camera, cable: PulledCable):
    from dock.session import DockSession

    result = {}

    def dock_side():
        try:
            result["dock"] = DockSession(store, dock_identity, "pull", timeout=5).run(
                cable.dock_port
            )
        finally:
            cable.dock_port.close()

    thread = threading.Thread(target=dock_side, daemon=True)
    thread.start()
    end = cable.camera_end
    try:
        cam = camera.link(dock_identity, timeout=5, chunk=16384).run_session(end)
    except Exception as exc:
        cam = exc
    finally:
        end.close()
    thread.join(20)
    assert not thread.is_alive(), "the dock hung after the cable was pulled"
    cable.join()
    return result["dock"], cam


def kept_until_receipt(camera, store_root=None) -> int:
    """Every media file is on the card unless a journaled receipt and wipe cover it, and
    every wiped file is in the store (``store_root``); returns the files wiped so far."""
    records = [r for r in camera.journal.records()]
    wiped = {f for r in records if r.kind == "wiped" for f in r.body["files"]}
    for r in records:
        if r.media and r.media[0] not in wiped:
            assert (camera.root / r.media[0]).exists(), f"{r.media[0]} lost without a receipt"
    if store_root is not None:
        stored = store_root / "unit-1" / "cam-001"
        wrongly = sorted(f for f in wiped if not (stored / f).is_file())
        assert not wrongly, f"wiped from the camera but not in the store: {wrongly}"
    return len(wiped)


def pulls(tmp_path, direction: str, runs: int, max_cut: int, seed: int):
    """``runs`` dockings each cut at a random offset, then one whole docking; returns
    (outcomes, the phase each cut hit, resumed bytes, the camera, the store's journal)."""
    rnd = random.Random(seed)
    camera, registry = make_camera(tmp_path)
    dock_identity, store = make_dock(tmp_path, registry)
    outcomes: list[str] = []
    phases: list[str] = []  # the frame the dock was reading when the line broke
    resumed = 0
    for i in range(runs):
        camera.record(1, rnd.randrange(20_000, 120_000), seed=i)
        cut = rnd.randrange(0, max_cut)
        result, _cam = dock_through(store, dock_identity, camera, PulledCable(cut, direction))
        outcomes.append(result.outcome)
        phases.append(result.reason.partition("while reading ")[2].split(":")[0])
        resumed += result.resumed_bytes
        kept_until_receipt(camera, tmp_path / "dock")
        if store.device_folders():  # nothing stored yet when the first cut came early
            report = verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path))
            assert report.intact, [str(p) for p in report.problems]
    final, cam = dock_once(store, dock_identity, camera)
    assert final.outcome == "stored", final.reason
    kept_until_receipt(camera, tmp_path / "dock")
    store_journal = tmp_path / "dock" / "unit-1" / "cam-001" / "journal.jsonl"
    return outcomes, phases, resumed, camera, store_journal


def nothing_lost_or_doubled(tmp_path, camera, store_journal, runs: int) -> None:
    assert camera.media_files() == set(), "the final docking left media on the camera"
    assert store_journal.read_bytes() == camera.storage.journal_path.read_bytes()
    named = [r.media[0] for r in camera.journal.records() if r.media]
    assert len(named) == len(set(named)) == runs, "a segment lost or journaled twice"
    media = {
        p.relative_to(store_journal.parent).as_posix()
        for p in (store_journal.parent / "media").rglob("*")
        if p.is_file()
    }
    assert media == set(named)
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    assert not any((tmp_path / "dock" / ".partial").rglob("*.part"))
    print(f"cable pulls: {runs} runs, {runs} segments, 0 lost, 0 duplicated, 0 wrongly wiped")


def test_cable_pulled_dock_to_camera_at_the_clock_receipt_and_wipe(tmp_path):
    # The dock's side of a docking is short (challenge, clock, acks, receipt): cuts
    # spread over its first few kilobytes land on each of them.
    outcomes, phases, _, camera, store_journal = pulls(tmp_path, "down", 24, 3_000, seed=99)
    assert set(outcomes) <= {"stored", "interrupted"}, outcomes
    assert "WIPED" in phases, phases  # cut after the receipt went out: at the wipe
    assert {"RESPONSE", "CLOCK_SET", "RECORDS/RECORDS_END"} & set(phases), phases
    nothing_lost_or_doubled(tmp_path, camera, store_journal, 24)


def test_cable_pulled_at_random_offsets_then_redocked(tmp_path):
    outcomes, _, resumed, camera, store_journal = pulls(tmp_path, "up", 32, 150_000, seed=1234)
    assert outcomes.count("interrupted") >= 20, outcomes
    assert resumed > 0, "no docking resumed a partly transferred file"
    nothing_lost_or_doubled(tmp_path, camera, store_journal, 32)
