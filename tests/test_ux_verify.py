"""``bodycam-verify`` pointed at the wrong thing: one clear line and exit 2, never a list of
made-up problems or a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.layout import DeviceStorage

ROOT = Path(__file__).resolve().parents[1]


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith("bodycam-verify: error: ") and "Traceback" not in line
    assert "bundle" not in line  # there is no export bundle to speak of
    return line


def device_folder(path: Path, tmp: Path) -> None:
    identity = DeviceIdentity.create(tmp / f"key-{path.parent.name}" / "device.key", "cam-test")
    journal = Journal(path / "journal.jsonl", identity)
    journal.append("boot", {"firmware": "test"})
    journal.close()
    DeviceStorage(path).write_identity(identity)


def tmp_like(tmp_path: Path) -> Path:
    """Like /tmp: two simulated shifts' folders among unrelated ones."""
    top = tmp_path / "tmp"
    for name in ("shift-a", "shift-b"):
        device_folder(top / name / "device", tmp_path)
        for other in ("device-key", "speaker", "unit-key"):
            (top / name / other).mkdir()
    for junk in ("pytest-of-me/pytest-1", "systemd-private-x/tmp", "ssh-agent"):
        (top / junk).mkdir(parents=True)
    return top


def test_a_folder_of_folders_is_one_line_not_a_problem_per_subfolder(tmp_path: Path) -> None:
    top = tmp_like(tmp_path)
    line = one_line(verify(str(top)))
    assert "not a device folder" in line and "or a dock store" in line
    assert "it holds 2 device folders" in line
    assert f"bodycam-verify {top / 'shift-a' / 'device'}" in line
    assert "journal_missing" not in line
    # ... and the command it suggests does check that folder (untrusted: exit 1, no problem).
    suggested = line.rsplit("e.g. ", 1)[1].split()
    checked = verify(*suggested[1:])
    assert checked.returncode == 1 and "UNTRUSTED: no problem found" in checked.stdout


def test_json_asked_gets_json_for_the_same_refusal(tmp_path: Path) -> None:
    top = tmp_like(tmp_path)
    result = verify(str(top), "--json")
    assert result.returncode == 2
    out = json.loads(result.stdout)
    assert out["exit"] == 2 and "it holds 2 device folders" in out["error"]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "not a device folder (no journal.jsonl) or a dock store"),
        (lambda p: (p.mkdir(), (p / "a" / "b").mkdir(parents=True)), "not a device folder"),
        (lambda p: p.write_text("hello\n"), "not a folder"),
        (lambda p: None, "no such file or folder"),
    ],
    ids=["empty", "folders-without-journals", "a-file", "missing"],
)
def test_neither_device_folder_nor_store(tmp_path: Path, make, says) -> None:
    target = tmp_path / "target"
    make(target)
    assert says in one_line(verify(str(target)))
    assert not (target / "index.sqlite").exists()  # looking changes nothing


def test_verbose_logs_are_json_lines_when_asked(tmp_path: Path) -> None:
    folder = tmp_path / "device"
    device_folder(folder, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", "-v", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "BODYCAM_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # untrusted keys, no problem
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert logs and all({"time", "level", "logger", "message"} <= r.keys() for r in logs)
    assert any("0 problems" in r["message"] for r in logs)
    assert "UNTRUSTED: no problem found" in result.stdout  # the verdict stays for people
