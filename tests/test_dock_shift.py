"""End to end: a simulated shift docks; the store verifies; the camera keeps nothing else."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dockkit import dock_once, make_camera, make_dock, store_trust, verify_args

from evidence.journal import RESERVE_NAME
from evidence.verify import verify_path

pytestmark = pytest.mark.slow


def test_a_simulated_shift_docks_and_every_segment_is_on_time(tmp_path):
    out = tmp_path / "shift"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "shift",
            "--out",
            str(out),
            "--duration",
            "20m",
            "--dock",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    verify = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", *verify_args(out / "dock")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    summary = json.loads((out / "summary.json").read_text())
    dock = summary["dock"]
    assert dock["outcome"] == "stored" and dock["wiped"] == dock["media"] > 0
    assert dock["clock_offset_ns"] != 0  # the dock corrected the camera's clock
    device = out / "device"
    folder = next(
        p
        for p in (out / "dock").glob(f"*/{summary['device']}")
        if not p.parent.name.startswith(".")
    )
    for path in device.rglob("*"):
        if path.is_file() and path.name != RESERVE_NAME:  # room on the card, not evidence
            rel = path.relative_to(device)
            assert (folder / rel).read_bytes() == path.read_bytes(), rel
    assert not list((device / "media").rglob("*.ts"))
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "dock",
            "--store",
            str(out / "dock"),
            "report",
            "deadlines",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stdout
    officers = json.loads(report.stdout)["officers"]
    counts = [(s["on_time"], s["late"], s["missing"], s["overdue"]) for s in officers.values()]
    assert counts == [(dock["media"], 0, 0, 0)]

    # The compliance report over the same store: the scenario's officer marks moments but
    # chooses no procedure, so every act is found to lack one, and nothing else is found.
    def compliance(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dock", "--store", str(out / "dock"), "report", "compliance"]
            + list(extra),
            capture_output=True,
            text=True,
            timeout=60,
        )

    found = compliance("--format", "json")
    assert found.returncode == 1, found.stderr
    acts = [a for s in json.loads(found.stdout)["officers"].values() for a in s["acts"]]
    # Six acts (simulator.scenario's working day); the stoppages' resumes stay in their act.
    assert len(acts) == 6 < summary["recordings"]
    assert all([f["kind"] for f in a["findings"]] == ["no_procedure"] for a in acts), acts
    assert all(a["announcement_seq"] is not None and a["moments"] for a in acts)
    page = compliance("--format", "html").stdout
    assert page.startswith("<!DOCTYPE html>") and "执法全过程记录合规报告" in page
    assert page.count("未选择执法程序") == len(acts) + 1  # one row per act, one in the summary
    bad = compliance("--from", "yesterday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


def test_reconcile_after_a_crash_between_rename_and_journal(tmp_path):
    """The dock died after placing a file but before journaling it, mid-line too."""
    camera, registry = make_camera(tmp_path)
    camera.record(2, 30_000)
    dock_identity, store = make_dock(tmp_path, registry)
    assert dock_once(store, dock_identity, camera)[0].outcome == "stored"
    files = camera.record(1, 40_000, seed=3)
    folder = tmp_path / "dock" / "unit-1" / "cam-001"
    # What a crash leaves: the media file in place, half a record line in the journal.
    orphan = folder / files[0]
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes((camera.root / files[0]).read_bytes())
    with open(folder / "journal.jsonl", "ab") as f:
        f.write(b'{"body":{"file":"me')
    store.close()
    dock_identity, store = make_dock(tmp_path, registry)  # the dock starts again
    actions = store.reconcile()
    assert any("torn store journal line" in a for a in actions)
    assert any("kept for resume" in a for a in actions)
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    result, _ = dock_once(store, dock_identity, camera)
    assert result.outcome == "stored" and result.resumed_bytes == 40_000 and result.bytes == 0
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    assert camera.media_files() == set()
