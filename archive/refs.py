"""Recordings in the dock store, found by device and time range or by act, as references.

The archive never copies or rewrites an original: a recording is ``(device, seq, file,
sha256)``, the device's signed ``segment`` record that binds the file in the store
(``<store>/<unit>/<device>/<file>``). The store is opened read-only (no dock key).
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evidence.exc import RecordError
from evidence.journal import JOURNAL_NAME, scan_journal
from evidence.record import Record

from .exc import ArchiveError, NotFound


@dataclass(frozen=True)
class Removal:
    """A recording's removal from the store (its ``removals`` row): when, by whom (a
    user, or ``dock NAME`` for a removal the archive learnt from a dock's journal) and
    under what authority (the retention category it was kept for)."""

    removed_utc: str
    by_user: str
    category: str


@dataclass(frozen=True)
class RecordingRef:
    """One segment in the dock store, named by the device's record that binds it."""

    device: str
    unit: str
    seq: int
    file: str
    sha256: str
    size: int
    start_utc: str
    end_utc: str
    removed: Removal | None = None  # set by listings that join ``removals``

    def path(self, store: str | os.PathLike) -> Path:
        """Where the original lies in the store."""
        return Path(store) / self.unit / self.device / self.file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _open_store(root: str | os.PathLike):
    from dock.store import INDEX_NAME, Store

    if not (Path(root) / INDEX_NAME).exists():
        raise ArchiveError(f"{root}: not a dock store (no {INDEX_NAME})")
    return Store(root)


def _device_records(store, device: str) -> tuple[str, list[Record]]:
    for unit, dev, folder in store.device_folders():
        if dev == device:
            journal = folder / JOURNAL_NAME
            records = []
            if journal.exists():
                for _, line in scan_journal(journal).lines:
                    try:
                        records.append(Record.from_bytes(line))
                    except RecordError:
                        continue  # bodycam-verify reports it; it binds nothing here
            return unit, records
    raise NotFound(f"device {device!r} is not in the dock store")


def _ref(unit: str, record: Record) -> RecordingRef:
    b = record.body
    return RecordingRef(
        record.device,
        unit,
        record.seq,
        b["file"],
        b["sha256"],
        b["size"],
        b["start_utc"],
        b["end_utc"],
    )


def _present(store_root: Path, ref: RecordingRef) -> bool:
    """In the store at its recorded size, or kept sealed (archive.sealing) for a case."""
    from evidence.dockjournal import sealed_name

    try:
        st = os.lstat(ref.path(store_root))
    except OSError:
        sealed = Path(store_root) / ref.unit / ref.device / sealed_name(ref.file)
        return sealed.is_file()
    return stat.S_ISREG(st.st_mode) and st.st_size == ref.size


def by_range(
    store_root: str | os.PathLike, device: str, from_utc: str, to_utc: str
) -> list[RecordingRef]:
    """The device's segments that overlap ``[from_utc, to_utc)`` and are in the store."""
    if from_utc >= to_utc:
        raise ArchiveError(f"the range ends ({to_utc}) before it starts ({from_utc})")
    store = _open_store(store_root)
    try:
        unit, records = _device_records(store, device)
    finally:
        store.close()
    found = [
        _ref(unit, r)
        for r in records
        if r.kind == "segment" and r.body["start_utc"] < to_utc and r.body["end_utc"] > from_utc
    ]
    return [ref for ref in found if _present(Path(store_root), ref)]


def by_act(
    store_root: str | os.PathLike, device: str, start_seq: int, now_ns: int
) -> tuple[Any, list[RecordingRef]]:
    """The act (``dock.compliance.Act``) of ``device`` that starts at ``start_seq``, and its
    segments in the store, as ``dock.compliance_report.store_acts`` reads them."""
    from dock.compliance_report import store_acts
    from evidence.procedures import load_procedures

    store = _open_store(store_root)
    try:
        acts = [a for a in store_acts(store, load_procedures(), now_ns, 24.0) if a.device == device]
        unit = next((u for u, d, _ in store.device_folders() if d == device), "")
    finally:
        store.close()
    for act in acts:
        if act.start_seq == start_seq:
            refs = [_ref(unit, r) for r in act.segments]
            return act, [ref for ref in refs if _present(Path(store_root), ref)]
    starts = ", ".join(str(a.start_seq) for a in acts[:10]) or "none"
    raise NotFound(
        f"device {device!r} has no act starting at seq {start_seq} (acts start at: {starts})"
    )
