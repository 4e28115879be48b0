"""A docking over a real pty pair: handshake, clock, offload, receipt, wipe, refusals."""

from __future__ import annotations

import subprocess
import sys

from dockkit import NS, alter_byte, dock_once, make_camera, make_dock, verify_args

from evidence.journal import Journal
from evidence.media import hash_file
from evidence.registry import Registry
from simulator.clock import SimClock


def verify(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", *verify_args(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_docking_stores_verifies_and_wipes(tmp_path):
    camera, registry = make_camera(tmp_path)
    files = camera.record(3, 300_000)
    camera.clock.advance(3600 * NS)
    dock_clock = SimClock(camera.clock.time_ns() + 5 * NS)  # the dock runs 5 s ahead
    dock_id, store = make_dock(tmp_path, registry, clock=dock_clock)
    result, cam = dock_once(store, dock_id, camera)
    assert result.outcome == "stored", result.reason
    assert cam.receipt_seq is not None and sorted(cam.wiped) == sorted(files)
    assert camera.media_files() == set()
    folder = tmp_path / "dock" / "unit-1" / "cam-001"
    for f in files:
        assert hash_file(folder / f)[0] > 0
    # The store's journal is the camera's journal, receipt and wipe included.
    assert (folder / "journal.jsonl").read_bytes() == camera.storage.journal_path.read_bytes()
    kinds = [r.kind for r in camera.journal.records()]
    assert kinds[-4:] == ["docked", "clock_set", "receipt", "wiped"]
    assert camera.journal.records()[-3].body["offset_ns"] == result.clock_offset_ns == 5 * NS
    assert camera.clock.time_ns() == dock_clock.time_ns()
    docking = store.index.query("SELECT * FROM dockings")[-1]
    assert docking["camera_head_seq"] == len(files) + 2  # boot, started, segments, stopped
    assert docking["clock_offset_ns"] == 5 * NS and docking["outcome"] == "stored"
    rows = store.index.query("SELECT file, stored_utc FROM media WHERE device='cam-001'")
    assert sorted(r["file"] for r in rows) == sorted(files)
    assert all(r["stored_utc"] for r in rows)
    proc = verify(tmp_path / "dock")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_redocking_sends_only_what_is_new(tmp_path):
    camera, registry = make_camera(tmp_path)
    camera.record(2, 50_000)
    dock_id, store = make_dock(tmp_path, registry)
    assert dock_once(store, dock_id, camera)[0].outcome == "stored"
    camera.record(1, 70_000, seed=1)
    result, _ = dock_once(store, dock_id, camera)
    assert result.outcome == "stored" and result.media == 1 and result.bytes == 70_000
    assert verify(tmp_path / "dock").returncode == 0


def test_unregistered_camera_is_refused_and_reported(tmp_path):
    camera, _ = make_camera(tmp_path)
    files = camera.record(1, 10_000)
    dock_id, store = make_dock(tmp_path, None)
    result, cam = dock_once(store, dock_id, camera)
    assert result.outcome == "refused" and "unregistered camera 'cam-001'" in result.reason
    assert cam.outcome == "refused" and "not in this dock's registry" in cam.reason
    assert camera.media_files() == set(files)
    flags = store.index.query("SELECT kind, device FROM flags")
    assert flags == [{"kind": "unregistered", "device": "cam-001"}]


def test_a_camera_with_another_key_fails_the_challenge(tmp_path):
    camera, registry = make_camera(tmp_path)
    impostor, _ = make_camera(tmp_path / "other")
    entry = Registry.load(registry).get("cam-001")
    assert entry.public_key != impostor.identity.public_key_hex
    impostor.record(1, 1000)
    dock_id, store = make_dock(tmp_path, registry)
    result, _ = dock_once(store, dock_id, impostor)
    assert result.outcome == "refused" and "failed the challenge" in result.reason


def test_a_segment_altered_on_the_card_is_flagged_and_kept(tmp_path):
    camera, registry = make_camera(tmp_path)
    files = camera.record(3, 40_000)
    alter_byte(camera.root / files[1])
    dock_id, store = make_dock(tmp_path, registry)
    result, cam = dock_once(store, dock_id, camera)
    assert result.outcome == "flagged"
    assert "media_altered" in result.reason and files[1] in result.reason
    assert cam.receipt_seq is None and camera.media_files() == set(files)
    # The store holds the verified prefix only, and that prefix verifies.
    assert verify(tmp_path / "dock").returncode == 0
    stored = store.index.query("SELECT file FROM media WHERE stored_utc IS NOT NULL")
    assert [r["file"] for r in stored] == [files[0]]


def test_a_journal_that_lost_its_tail_is_flagged(tmp_path):
    camera, registry = make_camera(tmp_path)
    files = camera.record(2, 20_000)
    dock_id, store = make_dock(tmp_path, registry)
    # A status message showed the full head; then the last two records are cut off.
    head = camera.journal.head
    store.index.execute(
        "INSERT INTO status_heads(device, seq, hash, utc) VALUES (?,?,?,?)",
        ("cam-001", head[0], head[1], "2026-11-18T08:00:00.000000Z"),
    )
    camera.close()
    path = camera.storage.journal_path
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))
    camera.journal = Journal(path, camera.identity, clock=camera.clock)
    result, cam = dock_once(store, dock_id, camera)
    assert result.outcome == "flagged" and "tail_cut" in result.reason
    assert f"head seq {head[0]}" in result.reason
    assert cam.receipt_seq is None and camera.media_files() == set(files)


def test_an_untrusted_dock_may_copy_but_never_wipes(tmp_path):
    camera, registry = make_camera(tmp_path)
    files = camera.record(1, 5000)
    dock_id, store = make_dock(tmp_path, registry)
    result, cam = dock_once(store, dock_id, camera, trusted=False)
    assert result.outcome == "stored" and result.wiped == 0
    assert any("not trusted" in f for f in result.flags)
    assert camera.media_files() == set(files)
    assert "receipt" not in [r.kind for r in camera.journal.records()]


def test_a_torn_journal_tail_is_stored_flagged_and_verifies(tmp_path):
    camera, registry = make_camera(tmp_path)
    camera.record(1, 8000)
    camera.close()
    with open(camera.storage.journal_path, "ab") as f:
        f.write(b'{"body":{"file":"media/2026')  # power cut mid-append
    camera.journal = Journal(
        camera.storage.journal_path, camera.identity, clock=camera.clock, repair_torn=True
    )
    dock_id, store = make_dock(tmp_path, registry)
    result, _ = dock_once(store, dock_id, camera)
    assert result.outcome == "stored"
    assert any(f.startswith("torn_tail") for f in result.flags)
    torn = next((tmp_path / "dock" / "unit-1" / "cam-001").glob("journal.torn-*"))
    assert torn.read_bytes() == b'{"body":{"file":"media/2026'
    proc = verify(tmp_path / "dock")
    assert proc.returncode == 0, proc.stdout + proc.stderr
