"""The cable pulled at random byte offsets, then re-docked: nothing lost, nothing doubled.

The cable is two pty pairs joined by a byte-counting relay; pulling it closes the relay's
ends, so the camera's line and the dock's line both break (EIO), as a USB unplug does.
The test holds every pty fd (none is reopened by path).
"""

from __future__ import annotations

import os
import random
import select
import threading

from dockkit import cable_pair, dock_once, make_camera, make_dock, store_trust

from evidence.journal import scan_journal
from evidence.verify import verify_path


class PulledCable:
    """Relays camera <-> dock and pulls the plug after ``cut`` camera-to-dock bytes."""

    def __init__(self, cut: int) -> None:
        self.cut = cut
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
                if a in ready:
                    data = os.read(a, 65536)
                    room = self.cut - self.sent
                    os.write(b, data[:room])
                    self.sent += min(len(data), room)
                    if self.sent >= self.cut:
                        self._pull()
                        return
                if b in ready:
                    os.write(a, os.read(b, 65536))
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


def kept_until_receipt(camera) -> None:
    """Every media file is on the card unless a journaled receipt and wipe cover it."""
    records = [r for r in camera.journal.records()]
    wiped = {f for r in records if r.kind == "wiped" for f in r.body["files"]}
    for r in records:
        if r.media and r.media[0] not in wiped:
            assert (camera.root / r.media[0]).exists(), f"{r.media[0]} lost without a receipt"


def test_cable_pulled_at_random_offsets_then_redocked(tmp_path):
    rnd = random.Random(1234)
    camera, registry = make_camera(tmp_path)
    dock_identity, store = make_dock(tmp_path, registry)
    outcomes = []
    resumed = 0
    for i in range(32):
        camera.record(1, rnd.randrange(20_000, 120_000), seed=i)
        cut = rnd.randrange(0, 150_000)
        result, _cam = dock_through(store, dock_identity, camera, PulledCable(cut))
        outcomes.append(result.outcome)
        resumed += result.resumed_bytes
        kept_until_receipt(camera)
        if store.device_folders():  # nothing stored yet when the first cut came early
            report = verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path))
            assert report.intact, [str(p) for p in report.problems]
    assert outcomes.count("interrupted") >= 20, outcomes
    assert resumed > 0, "no docking resumed a partly transferred file"
    final, cam = dock_once(store, dock_identity, camera)
    assert final.outcome == "stored", final.reason
    assert camera.media_files() == set()
    store_journal = tmp_path / "dock" / "unit-1" / "cam-001" / "journal.jsonl"
    assert store_journal.read_bytes() == camera.storage.journal_path.read_bytes()
    seqs = [line[:0] for _, line in scan_journal(store_journal).lines]
    assert len(seqs) == len(camera.journal.records())
    named = [r.media[0] for r in camera.journal.records() if r.media]
    assert len(named) == len(set(named)) == 32
    media = {
        p.relative_to(store_journal.parent).as_posix()
        for p in (store_journal.parent / "media").rglob("*")
        if p.is_file()
    }
    assert media == set(named)
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    assert not any((tmp_path / "dock" / ".partial").rglob("*.part"))
