"""The compliance report's decisions: per act, what is on the record and what is missing,
each finding with its article and evidence, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dock.compliance import acts_of, report
from dock.compliance_report import render_html, render_text
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

    def start(self, procedure: str | None, announce: bool = True) -> int | None:
        """Start an act; the announcement record's seq."""
        self.journal.append("recording_started", {"pre_event_s": 30, "procedure": procedure})
        if announce:
            return self.journal.append("announcement", {"text": "...", "sha256": "ab" * 32}).seq
        return None

    def act(self, procedure: str) -> int | None:
        """A complete act of ``procedure`` (every moment, one segment); its announcement."""
        seq = self.start(procedure)
        for moment in [m.id for m in PROCEDURES[procedure].moments]:
            self.mark(procedure, moment)
        self.segment()
        self.stop()
        return seq

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


def answer(seq: int, verdict: str, score_milli: int, n: int = 1) -> dict:
    """The dock's announcement_audio answer, as dock.announcements.results gives it."""
    file = f"media/20261203/cam-0007-20261203T080000000Z-{n:06d}.ts"
    heard = verdict != "no_audio"
    return {
        "device": "cam-0007",
        "unit": "unit-1",
        "seq": seq,
        "wav_sha256": "ab" * 32,
        "files": [file] if heard else [],
        "method": "ncc-preemphasis-1",
        "threshold_milli": 80,
        "verdict": verdict,
        "score_milli": score_milli,
        "start_utc": "2026-12-03T08:00:02.000000Z" if heard else None,
        "file": file if heard else None,
        "offset_ms": 31000 if heard else None,
        "dock": "dock-1",
        "dock_seq": 40 + seq,
        "checked_utc": "2026-12-03T12:00:00.000000Z",
    }


def test_the_announcement_in_the_audio_is_judged_from_the_docks_answers(tmp_path: Path) -> None:
    """Heard: nothing found. Played but not heard, or no audio: announcement_inaudible
    (Art. 6) with its evidence. Not checked yet: said so, not a finding and not a pass.
    An act whose procedure needs no announcement is not judged on it."""
    cam = Camera(tmp_path)
    heard = cam.act("delivery")
    muffled = cam.act("delivery")
    silent = cam.act("delivery")
    cam.act("delivery")  # not checked yet
    exam = cam.act("licensing_exam")  # announce = false
    audio = {
        heard: answer(heard, "heard", 205),
        muffled: answer(muffled, "not_heard", 5, n=2),
        silent: answer(silent, "no_audio", 0),
        exam: answer(exam, "not_heard", 4),
    }
    acts = cam.acts(audio=audio)
    assert kinds(acts) == [
        [],
        [("announcement_inaudible", "")],
        [("announcement_inaudible", "")],
        [],
        [],
    ]
    (f,) = acts[1].findings
    assert f["article"] == 6 and f["device"] == "cam-0007" and f["seqs"] == [muffled]
    assert f["verdict"] == "not_heard" and f["score"] == 0.005
    assert f["file"] == "media/20261203/cam-0007-20261203T080000000Z-000002.ts"
    assert (f["dock"], f["dock_seq"], f["utc"]) == (
        "dock-1",
        40 + muffled,
        audio[muffled]["start_utc"],
    )
    (g,) = acts[2].findings
    assert g["verdict"] == "no_audio" and g["utc"] == acts[2].announced_utc
    assert acts[0].audio_summary() == {
        "verdict": "heard",
        "start_utc": "2026-12-03T08:00:02.000000Z",
        "file": "media/20261203/cam-0007-20261203T080000000Z-000001.ts",
        "offset_s": 31.0,
        "score": 0.205,
        "threshold": 0.08,
        "dock": "dock-1",
        "dock_seq": 40 + heard,
    }
    assert acts[3].audio_summary() == {"verdict": "unchecked"}
    data = report(acts)
    data["now_utc"] = "2026-12-03T12:00:00.000000Z"
    slot = data["officers"]["A1024"]
    assert slot["audio_unchecked"] == 1 and slot["acts_with_findings"] == 2
    assert slot["by_kind"]["announcement_inaudible"] == {
        "count": 2,
        "articles": [6],
        "zh": "告知语音未在录音中听到",
        "en": "the announcement was played but is not heard in the recorded audio",
    }
    text = render_text(data)
    assert "1 act(s): announcement audio not checked yet" in text
    assert (
        f"announcement seq {heard} heard in the audio, starts 2026-12-03T08:00:02.000000Z "
        "(media/20261203/cam-0007-20261203T080000000Z-000001.ts +31.000 s), score 0.205"
    ) in text
    assert text.count("is not heard in the recorded audio") == 2
    page = render_html(data)
    assert page.count("录音中听到告知语音") == 1
    assert page.count("录音中未听到告知语音") == 2 and "尚未核对录音" in page  # and the exam
    assert "无录音可核对" in page and "(no audio)" in page


def test_without_the_docks_answers_every_announcement_is_unchecked(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    cam.act("delivery")
    cam.start("inspection", announce=False)
    cam.stop()
    acts = cam.acts()
    assert acts[0].audio_summary() == {"verdict": "unchecked"} and acts[0].findings == []
    assert acts[1].audio_summary() is None
    assert report(acts)["officers"]["A1024"]["audio_unchecked"] == 1
