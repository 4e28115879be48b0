"""One scenario a procedure (simulator/scenarios/): the officer chooses it with the mark
button, records, marks every key moment, docks; the compliance report finds the act with
its procedure and every moment in order, and nothing missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.procedures import load_procedures

pytestmark = pytest.mark.slow
SCENARIOS = Path(__file__).resolve().parents[1] / "simulator" / "scenarios"
PROCEDURES = load_procedures()


def test_there_is_one_scenario_per_procedure() -> None:
    assert set(PROCEDURES) <= {p.stem for p in SCENARIOS.glob("*.toml")}


@pytest.mark.parametrize("procedure", list(PROCEDURES))
def test_a_procedure_recorded_with_every_moment_is_compliant(
    tmp_path: Path, procedure: str
) -> None:
    out = tmp_path / "shift"
    shift = subprocess.run(
        [sys.executable, "-m", "simulator", "shift", "--out", str(out), "-q", "--dock"]
        + ["--scenario", str(SCENARIOS / f"{procedure}.toml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shift.returncode == 0, shift.stderr[-2000:]
    report = subprocess.run(
        [sys.executable, "-m", "dock", "--store", str(out / "dock"), "report", "compliance"]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr
    acts = [a for s in json.loads(report.stdout)["officers"].values() for a in s["acts"]]
    assert len(acts) == 1
    (act,) = acts
    assert act["procedure"] == procedure and act["findings"] == []
    assert [m["moment"] for m in act["moments"]] == [m.id for m in PROCEDURES[procedure].moments]
