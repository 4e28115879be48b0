"""The dock checks the announcement in the recorded audio (dock.audiocheck): real
simulated shifts, real MPEG-TS segments in a real dock store, answers in the dock's
signed journal, read back by the compliance report."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from dock.__main__ import main as dock_main
from dock.announcements import results
from dock.audiocheck import describe, tail_records
from evidence.clock import parse_utc
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.verify_cli import main as verify_main
from simulator.__main__ import main as sim_main

pytestmark = pytest.mark.slow


def shift(tmp: Path, scenario: str) -> Path:
    """A docked shift of ``scenario`` (TOML text) in ``tmp/shift``."""
    path = tmp / "act.toml"
    path.write_text(scenario)
    out = tmp / "shift"
    assert sim_main(["shift", "--out", str(out), "-q", "--dock", "--scenario", str(path)]) == 0
    return out


def device_records(out: Path) -> list[Record]:
    (journal,) = [p for p in (out / "dock").glob("*/*/journal.jsonl") if p.parts[-3] != "_docks"]
    return [Record.from_bytes(line) for _, line in scan_journal(journal).lines]


def report(out: Path, capsys) -> dict:
    capsys.readouterr()
    dock_main(["--store", str(out / "dock"), "report", "compliance", "--format", "json"])
    return json.loads(capsys.readouterr().out)


ACT = """
[shift]
duration = "3m"
[config.recording]
segment_max_s = 5
[[event]]
at = "40s"
do = "start"
[[event]]
at = "100s"
do = "stop"
"""


def test_an_announcement_across_segments_is_found_where_it_started(tmp_path, capsys):
    """5-second segments: the 13-second announcement spans four of them; the answer
    names them all, and where it starts is the officer's press (the camera plays it at
    once), to within the journal's stamping of that press."""
    out = shift(tmp_path, ACT)
    answers = results(out / "dock")
    ((device, by_seq),) = answers.items()
    ((seq, body),) = by_seq.items()
    records = device_records(out)
    started = next(r for r in records if r.kind == "recording_started")
    announcement = next(r for r in records if r.kind == "announcement")
    assert seq == announcement.seq and body["device"] == device
    assert body["verdict"] == "heard" and body["score_milli"] > 150
    assert len(body["files"]) >= 4 and body["file"] in body["files"]
    # At the recording's start: the recorder's main loop starts the speaker while the
    # twin holds its clock for the press, so a loaded machine's late threads cannot slip in.
    assert abs(parse_utc(body["start_utc"]) - parse_utc(started.utc)) <= 100_000_000
    segment = next(r for r in records if r.kind == "segment" and r.body["file"] == body["file"])
    start = parse_utc(segment.body["start_utc"]) + body["offset_ms"] * 1_000_000
    assert abs(start - parse_utc(body["start_utc"])) < 1_000_000
    assert body["wav_sha256"] == announcement.body["sha256"] and body["threshold_milli"] == 80
    (act,) = [a for s in report(out, capsys)["officers"].values() for a in s["acts"]]
    assert act["announcement_audio"]["verdict"] == "heard"
    assert act["announcement_audio"]["start_utc"] == body["start_utc"]
    assert [f["kind"] for f in act["findings"]] == ["no_procedure"]
    # The answer is evidence in the dock's journal: the store still verifies.
    trust = out / "trust.toml"
    assert verify_main(["--trust", str(trust), str(out / "dock")]) == 0


def test_a_store_docked_before_is_checked_by_the_command(tmp_path, capsys, monkeypatch):
    """Docked without the check (as before it existed): the report says unchecked; the
    command checks, journals and prints each answer; again, nothing is left to do."""
    monkeypatch.setattr("dock.session.check_after_docking", lambda *a: None)
    out = shift(tmp_path, ACT.replace("segment_max_s = 5", "segment_max_s = 60"))
    assert results(out / "dock") == {}
    (act,) = [a for s in report(out, capsys)["officers"].values() for a in s["acts"]]
    assert act["announcement_audio"] == {"verdict": "unchecked"}
    capsys.readouterr()
    dock_main(["--store", str(out / "dock"), "report", "compliance"])
    assert "1 act(s): announcement audio not checked yet" in capsys.readouterr().out
    (fingerprint,) = tomllib.loads((out / "trust.toml").read_text())["unit_keys"]
    keeper = ["--store", str(out / "dock"), "--key", str(out / "dock-key" / "dock.key")]
    keeper += ["--unit-key", fingerprint]
    assert dock_main([*keeper, "check", "announcements"]) == 0
    said = capsys.readouterr().out.splitlines()
    (body,) = [b for d in results(out / "dock").values() for b in d.values()]
    assert said == [describe(body), "1 announcement(s) checked"]
    assert body["verdict"] == "heard" and len(body["files"]) == 1
    assert dock_main([*keeper, "check", "announcements"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 announcement(s) checked"]
    assert dock_main([*keeper, "check", "announcements", "--again"]) == 0
    (again,) = [b for d in results(out / "dock").values() for b in d.values()]
    assert again["dock_seq"] > body["dock_seq"] and again["score_milli"] == body["score_milli"]
    (act,) = [a for s in report(out, capsys)["officers"].values() for a in s["acts"]]
    assert act["announcement_audio"]["verdict"] == "heard"
    assert act["announcement_audio"]["dock_seq"] == again["dock_seq"]
    assert dock_main([*keeper, "check", "announcements", "--wav", str(tmp_path / "no.wav")]) == 2


def test_only_the_records_of_a_docking_are_read(tmp_path):
    from evidence.identity import DeviceIdentity
    from evidence.journal import Journal

    journal = Journal(tmp_path / "journal.jsonl", DeviceIdentity.generate("cam-1"))
    for i in range(3000):
        journal.append("marker", {"note": "x" * (i % 700)})
    journal.close()
    got = tail_records(tmp_path / "journal.jsonl", 2500)
    assert [r.seq for r in got] == list(range(2501, 3000))
    assert tail_records(tmp_path / "journal.jsonl", 5000) == []
    assert [r.seq for r in tail_records(tmp_path / "journal.jsonl", -1)] == list(range(3000))
