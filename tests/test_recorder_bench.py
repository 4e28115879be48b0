"""scripts/bench-recorder --quick runs and prints its headline figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.bench  # a machine-dependent threshold: pytest -m bench
def test_bench_recorder_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bench-recorder"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("shift_quick_wall:"))
    figures = dict(line.split(": ", 1) for line in lines[first:])
    assert list(figures)[-1] == "ratio" and figures["ratio"].endswith("(ours/baseline)")
    for name in (
        "shift_quick_wall",
        "sim_speed",
        "signing_cost",
        "cpu_per_recorded_s_signed",
        "cpu_per_recorded_s_unsigned",
        "signing_overhead",
        "peak_memory_preevent30_360p",
    ):
        assert re.match(r"^-?\d+(\.\d+)? \S", figures[name]), (name, figures[name])
    assert float(figures["sim_speed"].split()[0]) > 20
    assert float(figures["peak_memory_preevent30_360p"].split()[0]) < 150
