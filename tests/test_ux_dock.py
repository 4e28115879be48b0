"""What a dock operator runs into (issue 12): the exit status and the line printed."""

from __future__ import annotations

import threading
import time

from dockkit import NS, START, dock_once, make_camera, make_dock

from dock import deadlines
from dock.__main__ import STATUS_HEADER
from dock.__main__ import main as dock_main
from dock.bay import Bay, read_status
from evidence.clock import format_utc
from simulator.dockbay import PtyEnd, open_cable

H = 3600 * NS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = dock_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_folder_that_is_not_a_store_is_refused_not_initialised(tmp_path, capsys):
    folder = tmp_path / "tmp"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    for command in (["report", "deadlines"], ["status"], ["registry", "list"]):
        code, out, err = run(capsys, "--store", str(folder), *command)
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [
            f"bodycam-dock: error: {folder}: not a dock store (it has no index.sqlite, "
            "registry.json, _docks); give the store's folder, or make one with "
            "`bodycam-dock init`"
        ]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing created


def test_report_deadlines_exits_1_when_it_lists_problems(tmp_path, capsys):
    camera, registry = make_camera(tmp_path)
    camera.record(2, 1000)
    dock_identity, store = make_dock(tmp_path, registry, clock=camera.clock)
    assert dock_once(store, dock_identity, camera)[0].outcome == "stored"
    camera.record(1, 1000, seed=3)
    store.close()
    root = str(tmp_path / "dock")
    now = format_utc(camera.clock.time_ns())
    code, out, _ = run(capsys, "--store", root, "report", "deadlines", "--now", now)
    assert (code, out.strip()) == (0, "officer A1024: 2 on time, 0 late, 0 missing, 0 overdue")
    # a recording the dock knows of but has not stored, 30 hours after it closed: overdue
    _, store = make_dock(tmp_path, registry, clock=camera.clock)
    store.note_known_media(store.registry().get("cam-001"), camera.journal.records())
    store.close()
    later = format_utc(camera.clock.time_ns() + 30 * H)
    code, out, _ = run(capsys, "--store", root, "report", "deadlines", "--now", later)
    lines = out.strip().splitlines()
    assert code == 1
    assert lines[0] == "officer A1024: 2 on time, 0 late, 0 missing, 1 overdue"
    assert lines[1].startswith("  overdue  cam-001 seq ") and lines[1].endswith("stored - (30.0 h)")


def test_a_camera_clock_running_ahead_shows_the_correction_not_negative_hours(tmp_path, capsys):
    _, store = make_dock(tmp_path, None)
    now = START + 100 * H
    closed = format_utc(now + H // 5)  # 0.2 h "in the future" by the dock's clock
    for device, offset in (("cam-a", -H // 2), ("cam-b", None)):
        store.index.execute(
            "INSERT INTO media VALUES (?,?,?,?,?,?,?,?,?,?)",
            (device, 4, "segment", "unit-1", "A1", "media/x.ts", 1, "0" * 64, closed, None),
        )
        store.index.execute(
            "INSERT INTO dockings(device, bay, started_utc, clock_offset_ns) VALUES (?,?,?,?)",
            (device, "bay", format_utc(now), offset),
        )
    store.close()
    code, out, _ = run(
        capsys, "--store", str(tmp_path / "dock"), "report", "deadlines", "--now", format_utc(now)
    )
    assert code == 1  # two recordings not stored yet
    assert "-0." not in out
    a, b = (line for line in out.splitlines() if "missing" in line and "seq 4" in line)
    # corrected by the offset the dock measured when it set cam-a's clock: 0.5 h ahead
    assert a.endswith("stored - (0.3 h, corrected: the camera's clock ran 0.5 h ahead)")
    assert b.endswith("stored - (0.0 h: the camera's clock ran at least 0.2 h ahead)")


def test_judging_never_gives_negative_hours():
    row = {
        "device": "cam",
        "seq": 1,
        "file": "f",
        "closed_utc": format_utc(START + H),
        "stored_utc": format_utc(START),
    }
    v = deadlines.judge_media(row, START + 2 * H)
    assert (v.status, v.hours, round(v.clock_ahead_h, 1), v.corrected) == (
        "on_time",
        0.0,
        1.0,
        False,
    )
    v = deadlines.judge_media(row, START, clock_offset_ns=-2 * H)
    assert (v.hours, v.clock_ahead_h, v.corrected) == (1.0, 2.0, True)


def test_status_has_a_header_free_space_and_a_refused_bay_goes_back_to_waiting(tmp_path, capsys):
    camera, registry = make_camera(tmp_path)
    dock_identity, store = make_dock(tmp_path, registry)
    stranger, _ = make_camera(tmp_path / "stranger", "cam-999")  # not in the registry
    master, port = open_cable()
    stop = threading.Event()
    bay = Bay(port, store, dock_identity, stop, timeout=5)
    bay.start()
    try:
        tick, deadline = threading.Event(), time.monotonic() + 20
        while not any(r.get("state") == "handshake" for r in read_status(store.root)):
            assert time.monotonic() < deadline, "the bay never challenged"
            tick.wait(0.02)  # the bay's status file is the event a user sees
        stranger.link(dock_identity).run_session(PtyEnd(master))
        assert bay.done.wait(20)
        code, out, _ = run(capsys, "--store", str(tmp_path / "dock"), "status")
        lines = out.splitlines()
        assert code == 0
        assert lines[0] == STATUS_HEADER
        bay_line = lines[1].split()
        # the bay serves the next camera: it is waiting, and shows the refusal as its last
        assert bay_line[1:3] == ["waiting", "-"]
        assert "last: cam-999 refused (0 files, 0.0 MB): unregistered camera" in lines[1]
        (space,) = [line for line in lines if line.startswith("store ")]
        assert space.startswith(f"store {tmp_path / 'dock'}: ") and " GB free of " in space
        assert not any(line.startswith("WARNING") for line in lines)
        # a store whose disk has less free than dock.warn_free_gb: warned
        config = tmp_path / "dock.toml"
        config.write_text("[dock]\nwarn_free_gb = 1e9\n")
        code, out, _ = run(
            capsys, "--config", str(config), "--store", str(tmp_path / "dock"), "status"
        )
        (warning,) = [line for line in out.splitlines() if line.startswith("WARNING")]
        assert code == 0
        assert warning == (
            f"WARNING: store {tmp_path / 'dock'} has less than 1e+09 GB free "
            "(dock.warn_free_gb): make room before it fills, or bays refuse to store"
        )
    finally:
        stop.set()
        bay.join()
        store.close()
