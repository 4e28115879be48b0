"""scripts/bench-dock --quick runs and prints its headline figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_bench_dock_quick_prints_figures_last():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-dock"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    names = [line.split(":")[0] for line in lines[-8:]]
    assert names == [
        "pty_cat",
        "pty_python_reader",
        "cp_openssl_sync",
        "dock_1bay",
        "dock_4bays",
        "ratio_vs_cp",
        "ratio_vs_python_reader",
        "ratio",
    ]
    assert re.match(r"^ratio: \d+\.\d\d \(ours/baseline\)$", lines[-1])
    assert float(lines[-5].split()[1]) > 0  # dock_1bay MB/s
