"""Relabelling a key moment at the dock: the camera's marker is kept as marked, the dock
journals who read it as which moment and why, and the compliance report judges the act by
the moment in force while showing both."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dockkit import dock_cmd, shift_docked, store_trust
from test_compliance import SEIZURE, Camera, kinds

from dock.compliance import acts_of, relabel_problem
from evidence.dockjournal import Relabel, relabel_body, relabels
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.procedures import load_procedures

PROCEDURES = load_procedures()


def relabel_of(record, moment: str, *, was: str, dock_seq: int = 1) -> Relabel:
    return Relabel(
        record.device, record.seq, record.hash, was, moment, "A0001", "seen", "dock-1", dock_seq, ""
    )


def marked_seizure(tmp_path: Path, moments: list[str]) -> Camera:
    cam = Camera(tmp_path)
    cam.start("seizure")
    for moment in moments:
        cam.mark("seizure", moment)
    cam.stop()
    return cam


def test_a_relabel_in_force_decides_the_findings_and_both_labels_are_shown(
    tmp_path: Path,
) -> None:
    # The officer marked "statement" twice; the footage shows the first was the party present.
    cam = marked_seizure(tmp_path, [m if m != "party_present" else "statement" for m in SEIZURE])
    cam.journal.close()
    records = cam.journal.records()
    assert kinds(acts_of(records, PROCEDURES, now_ns=0)) == [[("moment_missing", "party_present")]]
    wrong = next(r for r in records if r.body.get("moment") == "statement")
    fixed = acts_of(
        records,
        PROCEDURES,
        now_ns=0,
        relabels={wrong.seq: [relabel_of(wrong, "party_present", was="statement")]},
    )
    assert kinds(fixed) == [[]]
    (act,) = fixed
    assert [m for m, _, _ in act.moments] == SEIZURE
    assert act.summary()["relabelled"] == [
        {
            "seq": wrong.seq,
            "was": "statement",
            "moment": "party_present",
            "by": "A0001",
            "why": "seen",
            "dock": "dock-1",
            "dock_seq": 1,
            "utc": "",
        }
    ]


def test_the_latest_relabel_is_in_force_and_one_for_another_record_is_ignored(
    tmp_path: Path,
) -> None:
    cam = marked_seizure(tmp_path, SEIZURE)
    cam.journal.close()
    records = cam.journal.records()
    target = next(r for r in records if r.body.get("moment") == "signing")
    there_and_back = [
        relabel_of(target, "other", was="signing", dock_seq=1),
        relabel_of(target, "signing", was="other", dock_seq=2),
    ]
    acts = acts_of(records, PROCEDURES, now_ns=0, relabels={target.seq: there_and_back})
    assert kinds(acts) == [[]] and len(acts[0].relabelled) == 2
    stale = relabel_of(records[0], "other", was="signing")  # made against another record
    acts = acts_of(records, PROCEDURES, now_ns=0, relabels={target.seq: [stale]})
    assert kinds(acts) == [[]] and acts[0].relabelled == []


def test_what_cannot_be_relabelled_says_why(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    cam.start(None)
    cam.mark(None, "other")
    cam.stop()
    cam.start("seizure")
    cam.mark("seizure", "time_place")
    cam.mark("bogus", "time_place")
    cam.stop()
    cam.journal.close()
    records = {r.seq: r for r in cam.journal.records()}
    by_moment = [r for r in records.values() if r.kind == "marker"]
    unchosen, seizure, bogus = by_moment

    def why(record, moment, current=None):
        return relabel_problem(record, moment, PROCEDURES, current)

    assert "not a marked key moment" in why(records[1], "other")
    assert "no procedure chosen" in why(unchosen, "time_place")
    assert "not in the list" in why(bogus, "other")
    assert "has no moment 'nope'" in why(seizure, "nope")
    assert "already names time_place" in why(seizure, "time_place")
    assert "already names other" in why(seizure, "other", current="other")
    assert why(seizure, "other") is None and why(seizure, "credentials") is None
    assert why(seizure, "time_place", current="other") is None


def test_relabel_bodies_fold_and_malformed_ones_count_for_nothing(tmp_path: Path) -> None:
    dock = Journal(tmp_path / "journal.jsonl", DeviceIdentity.generate("dock-1"))
    good = relabel_body("cam-0007", 5, "ab" * 32, "seizure", "statement", "other", "A1", "why")
    dock.append("relabel", good)
    dock.append("relabel", {**good, "record_hash": "xyz"})
    dock.append("relabel", {**good, "why": ""})
    dock.append("relabel", {**good, "moment": "signing", "was": "other"})
    dock.close()
    found = relabels(dock.records())
    assert list(found) == [("cam-0007", 5)]
    assert [(r.was, r.moment, r.dock_seq) for r in found["cam-0007", 5]] == [
        ("statement", "other", 0),
        ("other", "signing", 3),
    ]
    long = relabel_body("cam-0007", 5, "ab" * 32, "seizure", "a", "b", "x" * 500, "y" * 5000)
    assert len(long["by"]) == 64 and len(long["why"]) == 512


@pytest.mark.slow
def test_relabel_at_the_dock_end_to_end(tmp_path: Path) -> None:
    """A docked seizure: relabel a moment away and back with the CLI; the report follows,
    the camera's journal in the store is unchanged byte for byte, both relabellings are in
    the dock journal, the store verifies, and every refusal is one line, exit 2."""
    shift_docked(tmp_path, "seizure", timeout=300)

    def dock(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            dock_cmd(tmp_path, *args), capture_output=True, text=True, timeout=120
        )

    def report() -> tuple[int, dict]:
        done = dock("report", "compliance", "--format", "json")
        (act,) = [a for s in json.loads(done.stdout)["officers"].values() for a in s["acts"]]
        return done.returncode, act

    rc, act = report()
    assert rc == 0 and act["findings"] == []
    device = act["device"]
    seq = next(m["seq"] for m in act["moments"] if m["moment"] == "party_present")
    camera_journal = next((tmp_path / "dock").glob(f"*/{device}/journal.jsonl"))
    before = hashlib.sha256(camera_journal.read_bytes()).hexdigest()

    moved = dock("relabel", device, str(seq), "statement", "--by", "A0001 Li", "--why", "02:47")
    assert moved.returncode == 0, moved.stderr
    assert "party_present -> statement" in moved.stdout
    rc, act = report()
    assert rc == 1
    assert [(f["kind"], f.get("moment")) for f in act["findings"]] == [
        ("moment_missing", "party_present")
    ]
    assert [(r["was"], r["moment"], r["by"]) for r in act["relabelled"]] == [
        ("party_present", "statement", "A0001 Li")
    ]
    html = dock("report", "compliance", "--format", "html").stdout
    assert "重点环节更正" in html and "A0001 Li" in html

    refusals = {
        "already names": dock("relabel", device, str(seq), "statement", "--by", "x", "--why", "y"),
        "not a marked key moment": dock("relabel", device, "1", "other", "--by", "x", "--why", "y"),
        "has no moment 'nope'": dock(
            "relabel", device, str(seq), "nope", "--by", "x", "--why", "y"
        ),
        "holds no record 99999": dock(
            "relabel", device, "99999", "other", "--by", "x", "--why", "y"
        ),
        "no such device": dock("relabel", "cam-nobody", "1", "other", "--by", "x", "--why", "y"),
        "--why: say who decides": dock(
            "relabel", device, str(seq), "other", "--by", "x", "--why", " "
        ),
    }
    for needle, done in refusals.items():
        assert done.returncode == 2, (needle, done.stdout, done.stderr)
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr

    back = dock("relabel", device, str(seq), "party_present", "--by", "B2", "--why", "mistake")
    assert back.returncode == 0, back.stderr
    assert "statement -> party_present" in back.stdout
    rc, act = report()
    assert rc == 0 and act["findings"] == [] and len(act["relabelled"]) == 2

    assert hashlib.sha256(camera_journal.read_bytes()).hexdigest() == before
    dock_journal = next((tmp_path / "dock" / "_docks").glob("*/journal.jsonl"))
    kinds_in_dock = [json.loads(line)["kind"] for line in dock_journal.read_text().splitlines()]
    assert kinds_in_dock.count("relabel") == 2  # the refusals journaled nothing
    verified = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(tmp_path / "dock")]
        + [a for fp in sorted(store_trust(tmp_path)) for a in ("--unit-key", fp)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0 and "INTACT" in verified.stdout, verified.stdout
