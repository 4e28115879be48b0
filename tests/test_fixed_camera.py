"""A fixed camera at a service window (Art. 8-9): working hours as data, the recorder
recording them by itself, and the compliance report measuring what it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dockkit import compliance_report, shift_docked
from hypothesis import given
from hypothesis import strategies as st
from test_compliance import Camera

from dock.compliance import acts_of, report
from evidence.clock import format_utc, parse_utc
from evidence.exc import ConfigError
from evidence.procedures import load_procedures
from evidence.schedule import ScheduleError, parse_schedule, uncovered
from firmware.state import FAULT, READY, RECORDING, STOPPING, Machine

PROCEDURES = load_procedures()
S = 1_000_000_000
HALL = {"days": [1, 2, 3, 4, 5], "hours": ["08:30-12:00", "13:30-17:30"], "utc_offset": "+08:00"}
MONDAY_8 = parse_utc("2026-12-07T00:00:00.000000Z")  # 08:00 in Beijing


def utc(text: str) -> int:
    return parse_utc(f"2026-12-{text}.000000Z")


# -- the schedule ---------------------------------------------------------------------


def test_windows_follow_local_days_and_skip_the_weekend() -> None:
    hall = parse_schedule(HALL)
    week = list(hall.windows_between(utc("04T16:00:00"), utc("08T16:00:00")))  # Sat 00:00 on
    assert [(format_utc(a), format_utc(b), n) for a, b, n in week] == [
        ("2026-12-07T00:30:00.000000Z", "2026-12-07T04:00:00.000000Z", "08:30-12:00"),
        ("2026-12-07T05:30:00.000000Z", "2026-12-07T09:30:00.000000Z", "13:30-17:30"),
        ("2026-12-08T00:30:00.000000Z", "2026-12-08T04:00:00.000000Z", "08:30-12:00"),
        ("2026-12-08T05:30:00.000000Z", "2026-12-08T09:30:00.000000Z", "13:30-17:30"),
    ]
    assert hall.open_at(utc("07T01:00:00")) == "08:30-12:00"
    assert hall.open_at(utc("07T04:10:00")) is None  # lunch
    assert hall.next_change(utc("07T04:10:00")) == utc("07T05:30:00")
    assert hall.next_change(utc("07T05:30:00")) == utc("07T09:30:00")  # open: its close
    assert hall.next_change(utc("05T01:00:00")) == utc("07T00:30:00")  # Saturday: Monday


def test_gaps_are_what_no_interval_covers_beyond_the_tolerance() -> None:
    assert uncovered((0, 100), [(0, 30), (31, 60), (70, 95)], 2) == [(60, 70), (95, 100)]
    assert uncovered((10, 20), [], 0) == [(10, 20)]
    assert uncovered((10, 20), [(0, 50)], 0) == []


@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=12),
    st.integers(0, 50),
)
def test_gaps_and_cover_add_up_to_the_window(spans, tolerance) -> None:
    covered = sorted((a, a + n) for a, n in spans)
    gaps = uncovered((100, 900), covered, tolerance)
    for lo, hi in gaps:
        assert hi - lo > tolerance and 100 <= lo < hi <= 900
        assert not any(a < hi and b > lo for a, b in covered)  # nothing covers a gap
    if tolerance == 0:  # every instant is either covered or in a gap
        for t in range(100, 900, 7):
            in_gap = any(lo <= t < hi for lo, hi in gaps)
            assert in_gap != any(a <= t < b for a, b in covered)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"days": [0]}, "days"),
        ({"days": [1, 1]}, "days"),
        ({"hours": []}, "hours"),
        ({"hours": ["8:30-12:00"]}, "hours"),
        ({"hours": ["12:00-08:30"]}, "hours"),
        ({"hours": ["08:30-12:00", "11:00-13:00"]}, "hours"),
        ({"utc_offset": "8"}, "utc_offset"),
        ({"lunch": "12:00"}, ""),
    ],
)
def test_a_schedule_that_cannot_be_run_names_its_key(change, key) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule({**HALL, **change})
    assert caught.value.key == key


@given(st.dictionaries(st.sampled_from(["days", "hours", "utc_offset", "x"]), st.from_type(object)))
def test_any_table_parses_or_is_a_schedule_error(raw) -> None:
    try:
        parse_schedule(raw)
    except ConfigError:
        pass


def test_the_recorder_config_checks_the_schedule(tmp_path: Path) -> None:
    from firmware import config as cfg

    bad = tmp_path / "recorder.toml"
    bad.write_text('[schedule]\nfixed = true\nhours = ["09:00-08:00"]\n')
    with pytest.raises(ConfigError, match=r"schedule\.hours '09:00-08:00' must end after"):
        cfg.load(bad)


# -- the recorder's decisions -----------------------------------------------------------


def kinds(actions) -> list[str]:
    return [a.kind for a in actions]


def journaled(actions) -> list[tuple[str, dict]]:
    return [a.args for a in actions if a.kind == "journal"]


def test_a_window_records_from_its_opening_to_its_close_without_an_announcement() -> None:
    m = Machine()
    out = m.on_schedule("08:30-12:00", 1)
    assert m.state == RECORDING and "announce" not in kinds(out)
    assert journaled(out) == [
        ("recording_started", {"pre_event_s": 30, "procedure": None, "schedule": "08:30-12:00"})
    ]
    assert m.on_schedule("08:30-12:00", 2) == []  # still open: nothing new
    out = m.on_schedule(None, 3)
    assert m.state == STOPPING and ("stop_recording", ("schedule",)) in [
        (a.kind, a.args) for a in out
    ]
    assert journaled(m.on_writer_stopped(4)) == [("recording_stopped", {"by": "schedule"})]
    assert m.state == READY


def test_a_stoppage_in_a_window_resumes_but_not_after_the_close() -> None:
    m = Machine()
    m.on_schedule("08:30-12:00", 1)
    m.on_fault("camera", "no frame", 2)
    m.on_writer_stopped(3)
    assert m.state == FAULT
    out = m.on_clear("camera", 4)
    assert m.state == RECORDING and journaled(out)[-1][1]["schedule"] == "08:30-12:00"
    m.on_fault("overheat", "81 C", 5)
    m.on_writer_stopped(6)
    m.on_schedule(None, 7)  # the window closes while the camera is too hot
    m.on_clear("overheat", 8)
    assert m.state == READY  # nothing to resume after hours


def test_a_window_that_opens_during_a_stoppage_starts_when_it_clears() -> None:
    m = Machine()
    m.on_fault("overheat", "81 C", 1)
    assert m.on_schedule("13:30-17:30", 2) == [] and m.state == FAULT
    m.on_clear("overheat", 3)
    assert m.state == RECORDING


def test_a_button_stop_in_a_window_stays_stopped_until_the_next_window() -> None:
    m = Machine()
    m.on_schedule("08:30-12:00", 1)
    m.on_button("record", True, 10 * S)
    m.on_tick(14 * S)  # held 4 s: stop
    m.on_writer_stopped(15 * S)
    assert m.state == READY
    m.on_schedule("08:30-12:00", 16 * S)
    assert m.state == READY
    m.on_schedule(None, 17 * S)
    m.on_schedule("13:30-17:30", 18 * S)
    assert m.state == RECORDING


# -- the report -------------------------------------------------------------------------


class Window(Camera):
    """A fixed camera's journal: a schedule record, then segments at chosen times."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.journal.clock.t = MONDAY_8  # booted on Monday at 08:00
        self.journal.append("schedule", parse_schedule(HALL).body())

    def record(self, start: str, end: str, stoppage: str = "") -> None:
        self.journal.clock.t = utc(start)
        window = parse_schedule(HALL).open_at(utc(start) + 60 * S)
        started = {"pre_event_s": 30, "procedure": None, "schedule": window}
        self.journal.append("recording_started", started)
        at = utc(start)
        while at < utc(end):
            until = min(at + 300 * S, utc(end))
            self.journal.clock.t = until
            self.n += 1
            self.journal.append(
                "segment",
                {
                    "file": f"media/20261207/cam-0007-20261207T000000000Z-{self.n:06d}.ts",
                    "size": 1,
                    "sha256": "cd" * 32,
                    "start_utc": format_utc(at),
                    "end_utc": format_utc(until),
                },
            )
            at = until
        if stoppage:
            self.journal.append("stoppage", {"reason": stoppage, "detail": "0 MiB free"})
        self.journal.append("recording_stopped", {"by": "fault" if stoppage else "schedule"})


def test_the_report_finds_the_hour_a_fixed_camera_missed_and_nothing_else(tmp_path) -> None:
    cam = Window(tmp_path)
    cam.record("07T00:29:30", "07T04:00:00")  # the morning, whole
    cam.record("07T05:30:00", "07T06:30:00", stoppage="storage_full")  # 13:30-14:30
    cam.record("07T07:30:00", "07T09:30:20")  # 15:30 on: an hour missed
    cam.journal.close()
    stored = {}
    acts = acts_of(
        cam.journal.records(),
        PROCEDURES,
        officer="",
        stored_utc=stored,
        now_ns=utc("07T10:00:00"),
        limit_h=1e9,
    )
    windows = [a for a in acts if a.window]
    assert [(a.start_utc, a.end_utc) for a in windows] == [
        ("2026-12-07T00:30:00.000000Z", "2026-12-07T04:00:00.000000Z"),
        ("2026-12-07T05:30:00.000000Z", "2026-12-07T09:30:00.000000Z"),
    ]
    assert [[f["kind"] for f in a.findings] for a in acts] == [[], ["hours_not_covered"]]
    (gap,) = windows[1].findings
    assert (gap["from_utc"], gap["to_utc"], gap["minutes"]) == (
        "2026-12-07T06:30:00.000000Z",
        "2026-12-07T07:30:00.000000Z",
        60.0,
    )
    assert gap["article"] == 9 and gap["window"] == "13:30-17:30"
    assert [(s["kind"], s["reason"]) for s in gap["stops"]] == [
        ("stoppage", "storage_full"),
        ("recording_stopped", "fault"),
    ]
    data = report(acts)
    assert data["officers"] == {} and list(data["fixed_cameras"]) == ["cam-0007"]
    assert data["fixed_cameras"]["cam-0007"]["by_kind"]["hours_not_covered"]["count"] == 1


def test_only_the_hours_so_far_are_judged(tmp_path) -> None:
    cam = Window(tmp_path)
    cam.record("07T00:30:00", "07T01:00:00")
    cam.journal.close()
    acts = acts_of(cam.journal.records(), PROCEDURES, now_ns=utc("07T01:00:30"), limit_h=1e9)
    assert [(a.window, a.findings) for a in acts] == [("08:30-12:00", [])]


@pytest.mark.slow
def test_a_day_at_the_service_window(tmp_path: Path) -> None:
    """simulator/scenarios/service_window.toml: the camera records 08:30-12:00 and
    13:30-17:30 by itself, a three-minute camera fault is journaled and is the day's one
    finding, and the evening offload stores the day within 24 hours."""
    shift_docked(tmp_path, "service_window")
    records = [json.loads(line) for line in (tmp_path / "device" / "journal.jsonl").open()]
    assert [r["body"] for r in records if r["kind"] == "schedule"] == [HALL]
    starts = [r["body"].get("schedule") for r in records if r["kind"] == "recording_started"]
    assert starts == ["08:30-12:00", "08:30-12:00", "13:30-17:30"]  # the fault's resume
    stops = [r["body"]["by"] for r in records if r["kind"] == "recording_stopped"]
    assert stops == ["fault", "schedule", "schedule"]
    assert [r["body"]["reason"] for r in records if r["kind"] == "stoppage"] == ["camera"]
    data = compliance_report(tmp_path, 1, "--now", "2026-12-08T00:00:00.000000Z")
    assert data["officers"] == {}
    windows = data["fixed_cameras"]["win-0001"]["acts"]
    assert [(w["window"], [f["kind"] for f in w["findings"]]) for w in windows] == [
        ("08:30-12:00", ["hours_not_covered"]),
        ("13:30-17:30", []),
    ]
    (gap,) = windows[0]["findings"]
    assert gap["from_utc"] == "2026-12-07T02:00:00.000000Z"
    # The three minutes, and the camera's restart after the hang: real threads in a
    # simulation 400 times faster than real time, so a loaded machine makes it minutes.
    assert 2.5 <= gap["minutes"] <= 8
    assert "camera" in [s["reason"] for s in gap["stops"]]
