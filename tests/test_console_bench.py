"""scripts/bench-console --quick runs end to end and prints its headline figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from consolekit import need_chromium

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench  # machine-dependent figures: pytest -m bench
def test_bench_console_quick_prints_each_figure() -> None:
    need_chromium()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-console"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    out = result.stdout
    figures = {
        name: float(value)
        for name, value in re.findall(r"^(\w+): ([0-9.]+)", out, re.M)
        if name in ("time_to_first_frame", "seek", "day_page", "ratio")
    }
    assert {"time_to_first_frame", "seek", "ratio"} <= set(figures), out
    assert out.rstrip().splitlines()[-1].startswith("ratio: ")  # the figures come last
    assert 0 < figures["time_to_first_frame"] < 5000 and 0 < figures["seek"] < 5000, out
    assert figures["ratio"] > 0.1, out
    if "day_page" in figures:
        assert 0 < figures["day_page"] < 5000, out
