"""scripts/bench-alerts --quick runs end to end and prints its headline figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench-alerts"


def test_bench_alerts_quick_prints_headline_figures_last():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-6:]
    names = [line.split(":")[0] for line in last]
    assert names == ["baseline_p50", "baseline_p99", "throughput", "p50", "p99", "ratio"]
    assert re.fullmatch(r"p99: \d+\.\d\d ms", last[4])
    assert re.fullmatch(r"ratio: \d+\.\d\d \(ours/baseline\)", last[5])
    assert float(last[4].split()[1]) > 0 and float(last[2].split()[1]) > 0
