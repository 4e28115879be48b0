"""Crash consistency, tested the way file systems are tested (ALICE, CrashMonkey).

Each workload runs once on a real folder while :mod:`tests.crashfs` logs its file-system
operations. Then every state a power cut may leave (unsynced writes lost, kept, torn or
reordered; renames and new names lost unless their folder was fsynced) is written out,
the real recovery runs on it (the recorder's boot path, the dock's reconcile), and the
evidence must verify with nothing lost that had completed before the cut: no closed
segment, no appended record, no file the dock had stored. The index (SQLite, whose writes
bypass ``os``) gets its states built at its pages: torn WAL tails, torn and garbled pages.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import crashfs
import pytest
from dockkit import START, make_camera, make_dock, store_trust
from faultfs import FaultyDisk

from evidence.exc import JournalFullError, TornRecordError
from evidence.identity import DeviceIdentity
from evidence.journal import RESERVE_NAME, Journal
from evidence.layout import DeviceStorage
from evidence.registry import DeviceEntry, Registry
from evidence.verify import verify_path
from firmware.preevent import Frame
from firmware.recovery import recover, unsigned_media
from firmware.segment import SegmentFile, VideoFormat
from simulator.clock import SimClock

pytestmark = pytest.mark.faults


def explore(root: Path, tmp: Path, workload, check) -> tuple[int, list[str]]:
    """Run ``workload`` under the recorder, then ``check(folder, state)`` on every crash
    state; returns (states explored, failures as lines)."""
    base = crashfs.snapshot(root)
    root_ino = root.stat().st_ino
    with crashfs.Recorder(root) as rec:
        workload(rec)
    assert any(op.kind == "fsync" for op in rec.ops), "the recorder saw no fsync"
    failures, explored = [], 0
    for state in crashfs.crash_states(base, rec.ops, root_ino):
        explored += 1
        folder = crashfs.materialise(state, tmp / "state")
        try:
            problem = check(folder, state)
        except Exception as exc:  # recovery itself must not fail on a reachable state
            problem = f"recovery raised {type(exc).__name__}: {exc}"
        if problem:
            ops = ", ".join(o.kind for o in rec.ops[max(0, state.point - 4) : state.point])
            failures.append(f"cut at op {state.point} [{ops}], {state.how}: {problem}")
    print(f"crash states: {explored} explored, {len(failures)} failures ({len(rec.ops)} ops)")
    return explored, failures


# -- the camera ------------------------------------------------------------------------


@pytest.fixture
def camera(tmp_path: Path):
    identity = DeviceIdentity.create(tmp_path / "key" / "device.key", "cam-crash")
    registry = Registry()
    registry.add(DeviceEntry("cam-crash", identity.public_key_hex, "A1024", "unit-1"))
    registry_path = tmp_path / "registry.json"
    registry.save(registry_path)
    root = tmp_path / "sd"
    storage = DeviceStorage(root)
    storage.write_identity(identity)
    clock = SimClock(START)
    with Journal(storage.journal_path, identity, clock=clock) as journal:
        journal.append("boot", {"firmware": "test", "boot_id": "0" * 32, "reason": "start"})
    return root, identity, clock, registry_path


def boot_and_verify(folder: Path, identity, clock, registry_path) -> tuple[list, object]:
    """The recorder's boot path (repair a torn tail, sign unsigned media), then verify."""
    journal = Journal(folder / "journal.jsonl", identity, clock=clock, repair_torn=True)
    try:
        pending = unsigned_media(folder, journal)
        journal.append("boot", {"firmware": "test", "boot_id": "1" * 32, "reason": "recovered"})
        recover(folder, journal, clock.time_ns(), pending)
        records = journal.records()
    finally:
        journal.close()
    return records, verify_path(folder, registry_path=registry_path)


def problems(report) -> str:
    return "; ".join(str(p) for p in report.problems)


def test_journal_appends_survive_every_crash_state(camera, tmp_path):
    root, identity, clock, registry_path = camera

    def workload(rec):
        with Journal(root / "journal.jsonl", identity, clock=clock) as journal:
            for n in range(3):
                journal.append("marker", {"n": n, "pad": "x" * 40})
                rec.mark(f"marker {n}")

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        kept = {r.body.get("n") for r in records if r.kind == "marker"}
        lost = [m for m in state.completed if int(m.split()[1]) not in kept]
        if lost:
            return f"lost appended records {lost}"
        return problems(report) if not report.intact else ""

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 5
    assert not failures, "\n".join(failures[:10])


def markers_kept(records, state) -> str:
    """Which completed ``marker N`` marks have no record (``refused N`` must have none)."""
    kept = {r.body.get("n") for r in records if r.kind == "marker"}
    lost = [m for m in state.completed if m.startswith("marker ") and int(m.split()[1]) not in kept]
    if lost:
        return f"lost appended records {lost}"
    ghosts = [m for m in state.completed if m.startswith("refused ") and int(m.split()[1]) in kept]
    return f"a refused append became a record: {ghosts}" if ghosts else ""


def test_rolled_back_appends_survive_every_crash_state(camera, tmp_path):
    """A short write on a full disk, its rollback, and the append after space returns:
    a cut anywhere leaves the appended records, never the refused one, and it verifies."""
    root, identity, clock, registry_path = camera

    def workload(rec):
        with Journal(root / "journal.jsonl", identity, clock=clock, reserve_bytes=0) as journal:
            journal.append("marker", {"n": 0, "pad": "x" * 40})
            rec.mark("marker 0")
            with FaultyDisk(root, free=200) as disk:
                with pytest.raises(JournalFullError):
                    journal.append("marker", {"n": 1, "pad": "x" * 40})
                rec.mark("refused 1")
                disk.free = None
                journal.append("marker", {"n": 2, "pad": "x" * 40})
                rec.mark("marker 2")

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        return markers_kept(records, state) or (problems(report) if not report.intact else "")

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 5
    assert not failures, "\n".join(failures[:10])


def test_a_reserve_spent_on_a_full_disk_survives_every_crash_state(camera, tmp_path):
    """The reserve given back a block for the records that report a full disk, then made
    again: a cut anywhere keeps the appended records, and the next boot remakes it."""
    root, identity, clock, registry_path = camera
    size = (root / RESERVE_NAME).stat().st_size
    assert size > 0

    def workload(rec):
        with Journal(root / "journal.jsonl", identity, clock=clock) as journal:
            with FaultyDisk(root, free=0) as disk:
                for n in (1, 2):
                    journal.append("marker", {"n": n, "pad": "x" * 40})
                    rec.mark(f"marker {n}")
                assert journal.reserve_spent
                disk.free = None
                journal.append("marker", {"n": 3, "pad": "x" * 40})
                assert not journal.reserve_spent
                rec.mark("marker 3")

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        if (folder / RESERVE_NAME).stat().st_size != size:
            return "the boot did not make the reserve whole again"
        return markers_kept(records, state) or (problems(report) if not report.intact else "")

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 5
    assert not failures, "\n".join(failures[:10])


def h264_frames(count: int, fps: int = 10) -> list[Frame]:
    """Real H.264 from PyAV: a keyframe every 5 frames, timestamps in microseconds."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.time_base = Fraction(1, fps)
    codec.framerate = fps
    codec.gop_size = 5
    codec.options = {"bframes": "0", "tune": "zerolatency"}
    frames = []
    for i in range(count):
        picture = av.VideoFrame(64, 48, "yuv420p")
        for plane in picture.planes:
            plane.update(bytes([(i * 9) % 256]) * plane.buffer_size)
        picture.pts = i
        for packet in codec.encode(picture):
            frames.append(Frame(bytes(packet), packet.is_keyframe, len(frames) * 100_000, False))
    for packet in codec.encode(None):
        frames.append(Frame(bytes(packet), packet.is_keyframe, len(frames) * 100_000, False))
    return frames


def test_closed_segments_survive_every_crash_state(camera, tmp_path):
    root, identity, clock, registry_path = camera
    frames = h264_frames(10)
    fmt = VideoFormat(64, 48, 10, None)
    offset = clock.time_ns()

    def workload(rec):
        with Journal(root / "journal.jsonl", identity, clock=clock) as journal:
            for n, part in enumerate((frames[:5], frames[5:])):
                rel = f"media/20261118/cam-crash-{n:03d}.ts"
                seg = SegmentFile(root, rel, fmt, frames[0].timestamp)
                for frame in part:
                    seg.write(frame)
                    seg.flush()
                info = seg.close()
                journal.append("segment", seg.body(info, offset))
                rec.mark(rel)

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        named = {r.body["file"] for r in records if r.kind == "segment"}
        lost = [m for m in state.completed if m not in named or not (folder / m).is_file()]
        if lost:
            return f"lost closed segments {lost}"
        return problems(report) if not report.intact else ""

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 10
    assert not failures, "\n".join(failures[:10])


def test_torn_tail_repair_survives_every_crash_state(camera, tmp_path):
    root, identity, clock, registry_path = camera
    with Journal(root / "journal.jsonl", identity, clock=clock) as journal:
        journal.append("marker", {"n": 0})
    whole = (root / "journal.jsonl").read_bytes()
    with open(root / "journal.jsonl", "ab") as f:  # a power cut mid-append
        f.write(b'{"seq": 2, "kind": "marker", "bo')
    good = len(whole.splitlines())

    def workload(rec):
        Journal(root / "journal.jsonl", identity, clock=clock, repair_torn=True).close()
        rec.mark("repaired")

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        if len([r for r in records if r.kind != "torn_tail"]) < good:
            return "a complete record before the torn tail was lost"
        torn = [r for r in records if r.kind == "torn_tail"]
        if len(torn) != 1:
            return f"{len(torn)} torn_tail records (the torn bytes must be kept exactly once)"
        return problems(report) if not report.intact else ""

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 5
    assert not failures, "\n".join(failures[:10])


def test_a_repair_cut_short_and_cut_again_is_finished_in_every_crash_state(camera, tmp_path):
    """A power cut during the repair, then another during the repair at the next boot:
    every state of the second, from every state of the first, ends with the torn bytes
    kept once and the journal verifying (the repair finishes or redoes the one before)."""
    root, identity, clock, registry_path = camera
    with open(root / "journal.jsonl", "ab") as f:
        f.write(b'{"body":{"n":1},"device":"cam-crash","kind":"mar')

    def repair(folder):
        def workload(rec):
            Journal(folder / "journal.jsonl", identity, clock=clock, repair_torn=True).close()
            rec.mark("repaired")

        return workload

    def check(folder, state):
        records, report = boot_and_verify(folder, identity, clock, registry_path)
        torn = [r for r in records if r.kind == "torn_tail"]
        if len(torn) != 1:
            return f"{len(torn)} torn_tail records (the torn bytes must be kept exactly once)"
        return problems(report) if not report.intact else ""

    base = crashfs.snapshot(root)
    with crashfs.Recorder(root) as rec:
        repair(root)(rec)
    first = list(crashfs.crash_states(base, rec.ops, root.stat().st_ino))
    explored, failures = 0, []
    for n, state in enumerate(first):
        folder = crashfs.materialise(state, tmp_path / f"first-{n}")
        try:
            Journal(folder / "journal.jsonl", identity, clock=clock, reserve_bytes=0).close()
        except TornRecordError:  # the repair is to do, or to finish: cut it again
            count, found = explore(folder, tmp_path / f"second-{n}", repair(folder), check)
        else:  # the first repair was done
            problem = check(folder, state)
            count, found = 1, [f"after the first: {problem}"] if problem else []
        explored += count
        failures += [f"first cut at op {state.point} ({state.how}), then {f}" for f in found]
    print(f"nested crash states: {len(first)} x second = {explored}, {len(failures)} failures")
    assert explored >= 20
    assert not failures, "\n".join(failures[:10])


# -- the dock --------------------------------------------------------------------------


def test_dock_store_of_files_survives_every_crash_state(tmp_path):
    from dock.store import Store
    from simulator.dockbay import run_docking

    cam, registry_path = make_camera(tmp_path)
    cam.record(2, 40_000)
    dock_identity, store = make_dock(tmp_path, registry_path)
    unit_keys = store_trust(tmp_path)
    root = tmp_path / "dock"
    store.close()

    def workload(rec):
        opened = Store(root, identity=dock_identity, unit_keys=unit_keys)
        try:
            link = cam.link(dock_identity, 10.0)
            result, outcome = run_docking(opened, dock_identity, link, port_timeout=10.0)
            assert result.outcome == "stored", result.reason
            rec.mark("stored")
        finally:
            opened.close()

    def check(folder, state):
        for name in ("index.sqlite", "index.sqlite-journal", "index.sqlite-wal"):
            (folder / name).unlink(missing_ok=True)  # derived; rebuilt (not logged here)
        reopened = Store(folder, identity=dock_identity, unit_keys=unit_keys)
        try:
            reopened.reconcile()
        finally:
            reopened.close()
        report = verify_path(folder, unit_keys=unit_keys)
        if "stored" in state.completed:
            files = sum(d.media_files for d in report.devices if d.role == "device")
            if files < 2:
                return f"the dock said stored, but {files} of 2 media files verify"
        return problems(report) if not report.intact else ""

    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 10
    assert not failures, "\n".join(failures[:10])


def test_index_update_survives_every_crash_state(tmp_path):
    """SQLite's own writes do not go through ``os`` (so the recorder cannot log them):
    the index's crash states are built at its pages instead. Each is a state a power cut
    (a torn WAL tail), a lost file or damage (torn or garbled pages) may leave; after the
    dock opens the store and reconciles, the index must again say exactly what the store
    holds, and the store must verify."""
    import random
    import shutil

    from dock.store import Store
    from simulator.dockbay import run_docking

    cam, registry_path = make_camera(tmp_path)
    dock_identity, store = make_dock(tmp_path, registry_path)
    unit_keys = store_trust(tmp_path)
    root = tmp_path / "dock"
    cam.record(2, 30_000, seed=1)
    result, _ = run_docking(store, dock_identity, cam.link(dock_identity, 10.0), 10.0)
    assert result.outcome == "stored", result.reason
    names = ("index.sqlite", "index.sqlite-wal")
    before = {n: (root / n).read_bytes() for n in names if (root / n).exists()}
    cam.record(2, 30_000, seed=2)
    result, _ = run_docking(store, dock_identity, cam.link(dock_identity, 10.0), 10.0)
    assert result.outcome == "stored", result.reason
    after = {n: (root / n).read_bytes() for n in names if (root / n).exists()}
    store.close()
    page = 4096
    rnd = random.Random(7)
    states: list[tuple[str, dict[str, bytes]]] = [("before the update", before)]
    states.append(("after the update", after))
    wal = after.get("index.sqlite-wal", b"")
    for cut in sorted({0, 32, *range(32 + 24, len(wal), (page + 24) // 2)}):
        states.append((f"WAL torn at byte {cut}", {**after, "index.sqlite-wal": wal[:cut]}))
    db = after["index.sqlite"]
    for n in range(len(db) // page):
        states.append((f"db cut after page {n}", {"index.sqlite": db[: n * page]}))
        garbled = db[: n * page] + rnd.randbytes(page) + db[(n + 1) * page :]
        states.append((f"db page {n} garbled", {"index.sqlite": garbled}))
    states.append(("db lost, WAL kept", {"index.sqlite-wal": wal}))

    def files_in_store(folder: Path) -> set[tuple[str, str]]:
        device_dir = folder / "unit-1" / "cam-001"
        return {
            ("cam-001", p.relative_to(device_dir).as_posix())
            for p in (device_dir / "media").rglob("*")
            if p.is_file()
        }

    failures = []
    for how, files in states:
        folder = tmp_path / "state"
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(root, folder, ignore=shutil.ignore_patterns("index.sqlite*"))
        for name, data in files.items():
            (folder / name).write_bytes(data)
        try:
            reopened = Store(folder, identity=dock_identity, unit_keys=unit_keys)
            try:
                reopened.reconcile()
                rows = reopened.index.query(
                    "SELECT device, file FROM media WHERE stored_utc IS NOT NULL"
                )
                heads = reopened.index.query("SELECT device, seq FROM heads")
            finally:
                reopened.close()
        except Exception as exc:
            failures.append(f"{how}: recovery raised {type(exc).__name__}: {exc}")
            continue
        indexed = {(r["device"], r["file"]) for r in rows}
        if indexed != files_in_store(folder):
            failures.append(f"{how}: index says {sorted(indexed)}, store holds more or less")
        store_journal = folder / "unit-1" / "cam-001" / "journal.jsonl"
        last = json.loads(store_journal.read_bytes().splitlines()[-1])["seq"]
        if [(h["device"], h["seq"]) for h in heads] != [("cam-001", last)]:
            failures.append(f"{how}: index heads {heads}, store journal ends at seq {last}")
        report = verify_path(folder, unit_keys=unit_keys)
        if not report.intact:
            failures.append(f"{how}: {problems(report)}")
    print(f"crash states: {len(states)} explored, {len(failures)} failures (index pages)")
    assert len(states) >= 10
    assert not failures, "\n".join(failures[:10])


# -- the dock's own journal --------------------------------------------------------------

DOCK_TORN = b'{"body":{"detail":"x","device":"cam-001","kind":"bad_record"},"device":"dock-sim","ki'


@pytest.fixture
def dock_journal(tmp_path: Path):
    """A dock store whose own journal ends in a torn record (the dock died mid-append)."""
    from dock.journal import DockJournal
    from evidence.dockjournal import flag_body

    dock_identity, store = make_dock(tmp_path, None)
    store.close()
    clock = SimClock()  # now: the store's own records were stamped by the system clock
    root = tmp_path / "dock"
    journal = DockJournal(root, dock_identity, clock)
    for n in range(2):
        journal.append("flag", flag_body("cam-001", "bad_record", f"earlier {n}"))
    journal.close()
    with open(journal.path, "ab") as f:  # a power cut mid-append
        f.write(DOCK_TORN)
        os.fsync(f.fileno())
    good = len(journal.path.read_bytes().splitlines()) - 1
    return root, dock_identity, clock, store_trust(tmp_path), good


def dock_start_and_verify(store: Path, identity, clock, unit_keys) -> tuple[list, object]:
    """A dock process starts on ``store`` (its journal repairs and journals ``boot``)."""
    from dock.journal import DockJournal

    journal = DockJournal(store, identity, clock)
    try:
        records = journal.records()
    finally:
        journal.close()
    return records, verify_path(store, unit_keys=unit_keys)


def dock_repair_check(identity, clock, unit_keys, good: int):
    def check(folder, state):
        records, report = dock_start_and_verify(folder, identity, clock, unit_keys)
        side = folder / "_docks" / identity.device_id
        torn = [r for r in records if r.kind == "torn_tail"]
        kept = [r for r in torn if (side / r.body["file"]).read_bytes() == DOCK_TORN]
        if len(kept) != 1:
            return f"{len(kept)} torn_tail records keep the torn bytes (must be exactly one)"
        if records.index(kept[0]) != good:
            return f"the torn_tail record is at seq {kept[0].seq}, after {good} records"
        for r in torn:  # any other: a boot record of the workload's own, torn by the cut
            if r is not kept[0] and not (side / r.body["file"]).read_bytes().startswith(
                b'{"body":{"boot_id":'
            ):
                return f"torn_tail seq {r.seq} keeps bytes that are not a torn boot record"
        return problems(report) if not report.intact else ""

    return check


def test_dock_journal_repair_survives_every_crash_state(dock_journal, tmp_path):
    """The dock's journal repairs a torn tail as the camera's does (one implementation):
    a cut anywhere in the repair leaves the next dock start to finish it."""
    from dock.journal import DockJournal

    root, identity, clock, unit_keys, good = dock_journal

    def workload(rec):
        DockJournal(root, identity, clock).close()
        rec.mark("repaired")

    check = dock_repair_check(identity, clock, unit_keys, good)
    explored, failures = explore(root, tmp_path, workload, check)
    assert explored >= 5
    assert not failures, "\n".join(failures[:10])


def test_a_dock_journal_repair_cut_short_and_cut_again_is_finished_in_every_crash_state(
    dock_journal, tmp_path
):
    """A power cut during the dock journal's repair, then another during the repair at the
    next dock start: every state of the second, from every state of the first, verifies."""
    from dock.journal import DockJournal

    root, identity, clock, unit_keys, good = dock_journal
    check = dock_repair_check(identity, clock, unit_keys, good)

    def repair(store):
        def workload(rec):
            DockJournal(store, identity, clock).close()
            rec.mark("repaired")

        return workload

    base = crashfs.snapshot(root)
    with crashfs.Recorder(root) as rec:
        repair(root)(rec)
    first = list(crashfs.crash_states(base, rec.ops, root.stat().st_ino))
    explored, failures = 0, []
    for n, state in enumerate(first):
        folder = crashfs.materialise(state, tmp_path / f"first-{n}")
        count, found = explore(folder, tmp_path / f"second-{n}", repair(folder), check)
        explored += count
        failures += [f"first cut at op {state.point} ({state.how}), then {f}" for f in found]
    print(f"dock nested crash states: {len(first)} x second = {explored}, {len(failures)} failures")
    assert explored >= 20
    assert not failures, "\n".join(failures[:10])
