"""scripts/bench-archive --quick runs on both backends and prints its ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench  # machine-dependent figures: pytest -m bench
def test_bench_quick_prints_both_ratios_for_each_backend():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-archive"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = result.stdout
    for backend in ("sqlite", "postgresql"):
        listing = re.search(
            rf"^{backend}: list an officer's month \((\d+) recordings\).*ratio ([0-9.]+)", out, re.M
        )
        bundle = re.search(rf"^{backend}: bundle of (\d+) files.*ratio ([0-9.]+)", out, re.M)
        assert listing and bundle, out
        assert int(listing.group(1)) > 0 and int(bundle.group(1)) > 0
        assert float(listing.group(2)) > 0 and float(bundle.group(2)) > 0
