"""Helpers for the archive export tests: a real simulated shift, docked into a real store.

The shift runs the real recorder, simulated camera and dock (``simulator shift --dock``),
so bundles and party copies are built from real MPEG-TS segments and real journals.
"""

from __future__ import annotations

import subprocess
import sys
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


def run_shift(out: Path, duration: str = "5m") -> Shift:
    """A short simulated shift with docking; fails the test if the simulator fails."""
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
