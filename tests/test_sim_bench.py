"""The camera benchmark runs (--quick) and reports its headline figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench-sim-camera"


@pytest.mark.bench  # a machine-dependent threshold: pytest -m bench
def test_bench_sim_camera_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    figures = dict(line.split(": ", 1) for line in lines[-6:])
    assert list(figures) == [
        "camera_160x120",
        "sim_speed",
        "shift_8h",
        "camera_1080p",
        "bitrate_1080p",
        "ratio",
    ]
    assert re.fullmatch(r"\d+(\.\d+)? \(ours/baseline\)", figures["ratio"])
    speed = float(figures["sim_speed"].removesuffix(" x"))
    assert speed > 160  # 8 simulated hours in under 3 real minutes, with room for the recorder
    assert float(figures["camera_1080p"].removesuffix(" frames/s")) > 0
    assert lines[-1].startswith("ratio: ")
