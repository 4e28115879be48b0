"""The compliance report's decisions: per act, what is on the record and what is missing,
each finding with its article and evidence, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dock.compliance import acts_of, report
from evidence.clock import format_utc, parse_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.procedures import load_procedures

T0 = parse_utc("2026-12-03T08:00:00.000000Z")
S = 1_000_000_000
PROCEDURES = load_procedures()
SEIZURE = [m.id for m in PROCEDURES["seizure"].moments]


class Clock:
    """Each record one second after the last, from 08:00 UTC."""

    def __init__(self) -> None:
        self.t = T0

    def time_ns(self) -> int:
        self.t += S
        return self.t

    def monotonic_ns(self) -> int:
        return self.t - T0 + S


class Camera:
    """Appends the records the firmware writes, as an officer's acts make them."""

    def __init__(self, tmp: Path) -> None:
        self.journal = Journal(
            tmp / "journal.jsonl", DeviceIdentity.generate("cam-0007"), clock=Clock()
        )
        self.journal.append("boot", {"reason": "start"})
        self.n = 0

    def start(self, procedure: str | None, announce: bool = True) -> None:
        self.journal.append("recording_started", {"pre_event_s": 30, "procedure": procedure})
        if announce:
            self.journal.append("announcement", {"text": "...", "sha256": "ab" * 32})

    def mark(self, procedure: str | None, moment: str) -> None:
        self.journal.append("marker", {"note": "mark", "procedure": procedure, "moment": moment})

    def segment(self) -> str:
        self.n += 1
        name = f"media/20261203/cam-0007-20261203T080000000Z-{self.n:06d}.ts"
        end = format_utc(self.journal.clock.t)
        self.journal.append(
            "segment",
            {"file": name, "size": 1, "sha256": "cd" * 32, "start_utc": end, "end_utc": end},
        )
        return name

    def stop(self, by: str = "button") -> None:
        self.journal.append("recording_stopped", {"by": by})

    def acts(self, **kw):
        self.journal.close()
        kw.setdefault("now_ns", T0 + 3600 * S)
        return acts_of(self.journal.records(), PROCEDURES, officer="A1024", **kw)


def kinds(acts) -> list[list[tuple]]:
    return [sorted((f["kind"], f.get("moment", "")) for f in a.findings) for a in acts]


def test_a_complete_seizure_has_no_findings(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    cam.start("seizure")
    for moment in SEIZURE:
        cam.mark("seizure", moment)
    cam.mark("seizure", "other")
    name = cam.segment()
    cam.stop()
    acts = cam.acts(stored_utc={name: "2026-12-03T12:00:00.000000Z"})
    assert kinds(acts) == [[]]
    assert [m for m, _, _ in acts[0].moments] == [*SEIZURE, "other"]


def test_each_omission_is_found_and_nothing_else(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    # Act 1: seizure, two moments missing, not announced, stored 30 h later.
    cam.start("seizure", announce=False)
    for moment in SEIZURE[:2] + SEIZURE[4:]:
        cam.mark("seizure", moment)
    late = cam.segment()
    cam.stop()
    # Act 2: delivery, complete, but the camera lost power mid-act (a boot, no stoppage).
    cam.start("delivery")
    for moment in [m.id for m in PROCEDURES["delivery"].moments]:
        cam.mark("delivery", moment)
    cam.journal.append("boot", {"reason": "recovered"})
    # Act 3: an inspection with an overheat stop and resume: explained, so no finding;
    # the vehicle moment is "if done".
    cam.start("inspection")
    for moment in ("conduct", "subject"):
        cam.mark("inspection", moment)
    cam.journal.append("stoppage", {"reason": "overheat", "detail": "81 C"})
    cam.stop("fault")
    cam.journal.append("resumed", {"reason": "overheat"})
    cam.start("inspection", announce=False)
    for moment in ("premises", "inspection"):
        cam.mark("inspection", moment)
    cam.stop()
    # Act 4: no procedure chosen.
    cam.start(None)
    cam.stop()
    acts = cam.acts(stored_utc={late: "2026-12-04T14:00:00.000000Z"})
    assert kinds(acts) == [
        [
            ("announcement_missing", ""),
            ("moment_missing", "decision_read"),
            ("moment_missing", "party_present"),
            ("stored_late", ""),
        ],
        [("stop_unexplained", "")],
        [],
        [("no_procedure", "")],
    ]
    missing = [f for f in acts[0].findings if f["kind"] == "moment_missing"]
    assert {f["article"] for f in missing} == {29}
    assert missing[0]["device"] == "cam-0007" and missing[0]["seqs"][0] == acts[0].start_seq
    late_finding = next(f for f in acts[0].findings if f["kind"] == "stored_late")
    assert late_finding["hours"] == pytest.approx(30.0, abs=0.1) and late_finding["article"] == 34
    summary = report(acts)["officers"]["A1024"]
    assert summary["acts_with_findings"] == 3
    assert summary["by_kind"]["moment_missing"]["count"] == 2
    assert summary["by_kind"]["stop_unexplained"]["articles"] == [5]


def test_a_segment_never_stored_is_late_once_24_hours_pass(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    cam.start("delivery")
    for moment in [m.id for m in PROCEDURES["delivery"].moments]:
        cam.mark("delivery", moment)
    cam.segment()
    cam.stop()
    assert kinds(cam.acts(now_ns=T0 + 23 * 3600 * S)) == [[]]
    cam2 = Camera(tmp_path / "b")
    cam2.start("delivery")
    for moment in [m.id for m in PROCEDURES["delivery"].moments]:
        cam2.mark("delivery", moment)
    cam2.segment()
    cam2.stop()
    assert kinds(cam2.acts(now_ns=T0 + 25 * 3600 * S)) == [[("stored_late", "")]]
