"""The omission scenarios (simulator/scenarios/omissions*.toml): one of each omission the
rules make a fault, recorded by the simulator, docked, and the compliance report finds
exactly those and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockkit import compliance_report, shift_docked
from test_compliance import Camera

from dock.compliance import acts_of
from evidence.procedures import load_procedures


def docked_report(tmp_path: Path, scenario: str, now: str | None = None) -> dict:
    shift_docked(tmp_path, scenario, timeout=300)
    return compliance_report(tmp_path, 1, *(["--now", now] if now else []))  # findings


def test_a_segment_recovered_after_a_power_cut_belongs_to_the_act_it_cut(tmp_path) -> None:
    cam = Camera(tmp_path)
    cam.start("seizure")
    cam.segment()
    cam.journal.append("boot", {"reason": "recovered"})
    name = "media/20261203/cam-0007-20261203T080000000Z-000009.ts"
    body = {"file": name, "size": 1, "sha256": "cd" * 32, "recovered": True}
    cam.journal.append(
        "segment",
        {**body, "start_utc": "2026-12-03T08:00:05.000000Z"}
        | {"end_utc": "2026-12-03T08:00:06.000000Z"},
    )
    cam.journal.close()
    (act,) = acts_of(cam.journal.records(), load_procedures(), now_ns=0, limit_h=1e9)
    assert [s.body["file"] for s in act.segments][-1] == name
    assert "stop_unexplained" in [f["kind"] for f in act.findings]


@pytest.mark.slow
def test_every_omission_of_a_body_camera_shift_is_found_and_nothing_else(tmp_path) -> None:
    data = docked_report(tmp_path, "omissions")
    assert data["fixed_cameras"] == {}
    acts = data["officers"]["A1024"]["acts"]
    found = [
        (a["procedure"], sorted({(f["kind"], f.get("moment", "")) for f in a["findings"]}))
        for a in acts
    ]
    late = ("stored_late", "")  # docked 25 h after the shift: every segment
    assert found == [
        (
            "seizure",
            [
                ("moment_missing", "decision_read"),
                ("moment_missing", "signing"),
                ("moment_missing", "statement"),
                late,
            ],
        ),
        ("delivery", [("announcement_missing", ""), late]),
        ("inspection", [("announcement_inaudible", ""), late]),
        ("penalty_notice", [("stop_unexplained", ""), late]),
    ]
    for act in acts:
        lates = [f for f in act["findings"] if f["kind"] == "stored_late"]
        assert len(lates) == act["segments"] and all(24 < f["hours"] < 26 for f in lates)
    cut = acts[3]
    (stop,) = [f for f in cut["findings"] if f["kind"] == "stop_unexplained"]
    assert stop["by"] == "boot"  # the boot after the power cut ends the act, unexplained
    assert acts[0]["announcement_audio"]["verdict"] == "heard"
    assert acts[3]["announcement_audio"]["verdict"] == "heard"


@pytest.mark.slow
def test_the_hour_a_fixed_camera_missed_is_found_and_nothing_else(tmp_path) -> None:
    data = docked_report(tmp_path, "omissions_fixed", now="2026-12-08T00:00:00.000000Z")
    assert data["officers"] == {}
    (window,) = data["fixed_cameras"]["win-0002"]["acts"]
    assert window["window"] == "13:30-15:30"
    (gap,) = window["findings"]
    assert gap["kind"] == "hours_not_covered" and gap["article"] == 9
    assert gap["from_utc"].startswith("2026-12-07T06:00:0")  # 14:00, the button stop
    assert 59.0 <= gap["minutes"] <= 60.0  # to 15:00 less the 30 s pre-event
    assert [s["reason"] for s in gap["stops"]] == ["button"]
