"""scripts/bench-dock --quick runs 1 and 8 bays and prints its headline figures last.

Machine-dependent figures (MB/s, CPU seconds) are printed, never asserted against a
threshold (that would depend on the machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

HEADLINES = [
    ("pty_cat", "MB/s"),
    ("pty_python_reader", "MB/s"),
    ("cp_openssl_sync", "MB/s"),
    ("dock_1bay", "MB/s"),
    ("dock_8bays", "MB/s"),
    ("dock_8bays_target", "MB/s"),
    ("cpu_bound_8bays", "MB/s"),
    ("dock_cpu_per_gb_1bay", "s/GB"),
    ("dock_cpu_per_gb_8bays", "s/GB"),
    ("camera_cpu_per_gb_8bays", "s/GB"),
    ("baseline_cpu_per_gb", "s/GB"),
    ("ratio_vs_cp", "(ours/baseline)"),
    ("ratio_vs_python_reader", "(ours/baseline)"),
    ("ratio", "(ours/baseline)"),
    ("cpu_ratio", "(ours/baseline)"),
]


def test_bench_dock_quick_prints_figures_last():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-dock"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    tail = lines[-len(HEADLINES) :]
    for line, (name, unit) in zip(tail, HEADLINES, strict=True):
        assert re.fullmatch(rf"{name}: \d+\.\d+ {re.escape(unit)}", line), line
    figures = {line.split(":")[0]: float(line.split()[1]) for line in tail}
    assert figures["dock_1bay"] > 0 and figures["dock_8bays"] > 0
    assert figures["dock_cpu_per_gb_8bays"] > 0 and figures["baseline_cpu_per_gb"] > 0
    # the ratio is what the two CPU figures say (rounding aside)
    ratio = figures["dock_cpu_per_gb_8bays"] / figures["baseline_cpu_per_gb"]
    assert abs(figures["cpu_ratio"] - ratio) <= 0.02 * ratio + 0.01
    # 8 bays stored all 8 cameras' files: "run N: dock, 8 bays ..." lines are there
    assert any(line.startswith("run 1: dock, 8 bays at once (total): ") for line in lines)
