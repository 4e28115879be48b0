"""What the real recorder leaves after a simulated shift verifies intact, and its damage shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.verify import verify_path

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def shift(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shift") / "out"
    subprocess.run(
        [BIN / "bodycam-sim", "shift", "--out", out, "--duration", "5m", "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def test_simulated_shift_verifies_intact_and_tampering_is_found(shift):
    result = subprocess.run(
        [BIN / "bodycam-verify", shift / "device", "--registry", shift / "registry.json", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    (device,) = report["devices"]
    assert device["trust"] == "registry" and device["media_files"] > 0
    segment = next(p for p in sorted((shift / "device" / "media").rglob("*.ts")))
    with open(segment, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    (problem,) = verify_path(shift / "device", registry_path=shift / "registry.json").problems
    assert problem.code == "media_changed"
    assert problem.file == segment.relative_to(shift / "device").as_posix()
