"""scripts/bench-compliance --quick runs and prints its headline figures last, as agreed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench  # a machine-dependent figure: pytest -m bench
def test_bench_quick_prints_headline_figures():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-compliance"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    tail = result.stdout.strip().splitlines()[-8:]
    figures = dict(line.split(": ", 1) for line in tail)
    assert list(figures) == [
        "officers",
        "shifts",
        "records",
        "acts",
        "findings",
        "read_only",
        "report",
        "ratio",
    ]
    assert figures["shifts"] == "24"
    records = int(figures["records"])
    acts = int(figures["acts"])
    assert records > 10 * acts > 0  # every act is a dozen records or more
    assert 0 < int(figures["findings"]) < acts  # about 5% of moments left out
    assert re.fullmatch(r"[\d.]+ s", figures["read_only"])
    assert re.fullmatch(r"[\d.]+ s", figures["report"])
    ratio = float(re.fullmatch(r"([\d.]+) \(ours/baseline\)", figures["ratio"]).group(1))
    assert ratio > 0.5  # the target (1.5) is measured with the full office, not --quick
