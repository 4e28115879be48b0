"""The camera's network uploader (issue 14): the real recorder on the simulator's twin,
recording 1-second segments in real time, its uploader docking each closed segment over
TLS to the real network bay on a free loopback port.

Measured here: close (the segment's record in the camera's journal) to ``stored`` (the
dock journal's record of that file), from the two journals' UTC stamps (the dock sets the
camera's clock at each session, so the two clocks agree to milliseconds).
"""

from __future__ import annotations

import threading

import pytest
from conftest import free_port
from dockkit import make_camera, make_dock, store_trust
from netkit import (
    CutProxy,
    Listening,
    NetCamera,
    close_to_stored,
    percentile,
    records,
    trusted_docks,
    uploader,
    wait_until,
)

from dock.store import Store
from evidence.verify import verify_path
from firmware.docking import SessionGate

pytestmark = pytest.mark.slow


def dock_store(cam: NetCamera) -> Store:
    return Store(cam.tmp / "dock", identity=cam.dock_identity, unit_keys=store_trust(cam.tmp))


def check_store(cam: NetCamera) -> list[float]:
    """Everything closed is stored once, the card holds nothing a receipt covers; returns
    the close-to-stored delays."""
    camera = records(cam.journal_path)
    segments = [r.media[0] for r in camera if r.kind == "segment"]
    assert segments and len(segments) == len(set(segments))
    folder = cam.store_journal().parent
    stored = sorted(p.relative_to(folder).as_posix() for p in (folder / "media").rglob("*.ts"))
    assert stored == sorted(segments)
    assert not any((cam.tmp / "device" / "media").rglob("*.ts")), "all wiped under receipts"
    assert verify_path(cam.tmp / "dock", unit_keys=store_trust(cam.tmp)).intact
    return close_to_stored(
        cam.journal_path, cam.tmp / "dock" / "_docks" / "dock-sim" / "journal.jsonl"
    )


def test_each_segment_reaches_the_store_within_a_minute_of_closing(tmp_path):
    port = free_port()
    cam = NetCamera(tmp_path, f"127.0.0.1:{port}")
    store = dock_store(cam)
    stop = threading.Event()
    from dock.netbay import NetListener

    bay = NetListener(("127.0.0.1", port), store, cam.dock_identity, stop, 3.0, exit_on_fault=False)
    bay.start()
    try:
        cam.start()
        cam.record()
        cam.wait_journal(lambda rs: sum(r.kind == "segment" for r in rs) >= 15, 60, "segments")
        cam.stop_recording()
        cam.wait_all_stored()
    finally:
        cam.close()
        stop.set()
        bay.join(10)
        store.close()
    delays = check_store(cam)
    assert len(delays) >= 15
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print(
        f"close -> stored over the network: {len(delays)} segments, p50 {p50:.3f} s, "
        f"p99 {p99:.3f} s, max {max(delays):.3f} s ({cam.uploader.sessions} sessions)"
    )
    assert max(delays) < 60.0, delays
    assert p50 < 5.0, f"a session per segment should take well under a second: {delays}"
    assert cam.recorder.stats.segments == len(delays)
    kinds = [r.kind for r in records(cam.journal_path)]
    assert kinds.count("receipt") >= 5, "sessions ran while recording, one per segment or so"


def test_network_down_then_up_retries_and_catches_up(tmp_path):
    """No dock listening: the uploader retries with bounded backoff, recording goes on;
    once the dock is up, everything closed meanwhile is stored within the retry bound."""
    port = free_port()
    cam = NetCamera(tmp_path, f"127.0.0.1:{port}", network_retry_max_s=1.0)
    store = dock_store(cam)
    stop = threading.Event()
    try:
        cam.start()
        cam.record()
        cam.wait_journal(lambda rs: sum(r.kind == "segment" for r in rs) >= 4, 60, "segments")
        with cam.uploader.done:
            assert cam.uploader.done.wait_for(lambda: cam.uploader.failures >= 3, 30)
        assert cam.uploader.stored == 0
        from dock.netbay import NetListener

        bay = NetListener(
            ("127.0.0.1", port), store, cam.dock_identity, stop, 3.0, exit_on_fault=False
        )
        bay.start()
        with cam.uploader.done:
            assert cam.uploader.done.wait_for(lambda: cam.uploader.stored >= 1, 10)
        cam.stop_recording()
        cam.wait_all_stored()
    finally:
        cam.close()
        stop.set()
        if "bay" in locals():
            bay.join(10)
        store.close()
    delays = check_store(cam)
    print(f"network down then up: {cam.uploader.failures} failed tries, then {len(delays)} stored")
    assert max(delays[-3:]) < 60.0


def test_the_cable_takes_the_gate_from_a_network_session_and_nothing_is_lost(tmp_path):
    """A network session in flight gives the camera up to the cable within seconds (its
    connection fails as if cut); the next network session resumes the file."""
    camera, registry = make_camera(tmp_path)
    camera.record(2, 3_000_000)  # big files on a slow link: the session is long
    dock_identity, store = make_dock(tmp_path, registry)
    gate = SessionGate()
    with Listening(store, dock_identity) as bay:
        slow = CutProxy(bay.address, rate=400_000)  # bytes/s
        # A long stall timeout: on a slow link the camera may wait long for the next GET.
        up = uploader(camera, slow.address, trusted_docks(store), gate=gate, timeout=30)
        results = []
        t = threading.Thread(target=lambda: results.append(up.attempt()), daemon=True)
        t.start()
        wait_until(bay, lambda: store.index.query("SELECT 1 FROM dockings"), 10, "a docking")
        slow.wait_bytes(500_000, "up", 20)
        with gate.cable(5.0) as got:
            assert got, "the network session did not give the camera up"
            t.join(10)
            assert results == ["failed"], (results, up.last)
            assert "cancelled" in str(up.last), up.last
        wait_until(bay, lambda: bay.sessions == 1)
        assert bay.results[-1]["outcome"] == "interrupted"
        slow.close()
        again = uploader(camera, bay.address, trusted_docks(store), gate=gate)
        assert again.attempt() == "stored", again.last
        wait_until(bay, lambda: bay.sessions == 2)
        assert bay.results[-1]["resumed_bytes"] > 0
    assert camera.media_files() == set()
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    store.close()
    camera.close()
