"""Helpers for the archive export tests: a real simulated shift, docked into a real store.

The shift runs the real recorder, simulated camera and dock (``simulator shift --dock``),
so bundles and party copies are built from real MPEG-TS segments and real journals.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evidence.journal import JOURNAL_NAME, scan_journal
from evidence.record import Record


@dataclass(frozen=True)
class Shift:
    root: Path  # the simulator's --out folder (trust.toml, registry.json, keys)
    store: Path
    device: str
    folder: Path  # the device's folder in the store
    records: list[Record]

    @property
    def trust(self) -> Path:
        return self.root / "trust.toml"

    def acts(self) -> list[tuple[int, int]]:
        """``(recording_started seq, recording_stopped seq)`` of each recording."""
        acts, start = [], None
        for r in self.records:
            if r.kind == "recording_started":
                start = r.seq
            elif r.kind == "recording_stopped" and start is not None:
                acts.append((start, r.seq))
                start = None
        return acts

    def segments(self, first: int, last: int) -> list[Record]:
        return [r for r in self.records if r.kind == "segment" and first <= r.seq <= last]


_SIMULATED: dict[str, Shift] = {}  # duration -> the shift simulated for it in this process


def run_shift(out: Path, duration: str = "5m") -> Shift:
    """A short simulated shift with docking, in ``out``; fails the test if the simulator
    fails. Each duration is simulated once per test process and each call gets its own
    copy (a shift takes ~10 s on a loaded machine and some twenty modules want one):
    every module still has a store of its own to seal, damage or extend."""
    shift = _SIMULATED.get(duration)
    if shift is None:
        scratch = Path(tempfile.mkdtemp(prefix="bodycam-shift-"))
        atexit.register(shutil.rmtree, scratch, True)
        shift = _SIMULATED[duration] = simulate_shift(scratch / "s", duration)
    return copy_shift(shift, out)


def copy_shift(shift: Shift, into: Path) -> Shift:
    """A copy of a shift's folder, its paths (and those in its summary) rewritten."""
    shutil.copytree(shift.root, into, symlinks=True, dirs_exist_ok=True)
    summary = into / "summary.json"
    if summary.is_file():
        summary.write_text(summary.read_text().replace(str(shift.root), str(into)))
    return Shift(
        into,
        into / "dock",
        shift.device,
        into / shift.folder.relative_to(shift.root),
        list(shift.records),
    )


def simulate_shift(out: Path, duration: str = "5m") -> Shift:
    """``simulator shift --dock`` into ``out`` (a new camera), read back."""
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "shift", "--out", str(out), "-q", "--dock"]
        + ["--duration", duration],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    store = out / "dock"
    folders = [p for p in store.glob("*/*") if (p / JOURNAL_NAME).is_file()]
    folders = [p for p in folders if not p.parent.name.startswith(("_", "."))]
    assert len(folders) == 1, folders
    folder = folders[0]
    records = [Record.from_bytes(line) for _, line in scan_journal(folder / JOURNAL_NAME).lines]
    return Shift(out, store, folder.name, folder, records)
