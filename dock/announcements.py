"""The dock journal's ``announcement_audio`` records: what the dock heard of each
announcement in the recorded audio, read back for the compliance report.

The record (docs/journal-format.md section 10) is written by :mod:`dock.audiocheck`;
this module only reads, without numpy or PyAV, so that the report stays a plain read of
journals: only the lines that name the kind are parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evidence.dockjournal import DOCK_JOURNALS_DIR
from evidence.journal import JOURNAL_NAME, records_of_kind

KIND = "announcement_audio"
VERDICTS = ("heard", "not_heard", "no_audio")


def results(store_root: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Every ``announcement_audio`` answer in the store's dock journals: device -> the
    announcement's seq -> the body, with ``dock``, ``dock_seq`` and ``checked_utc``
    (the latest answer wins). Only lines that name the kind are parsed."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    answers = []
    for path in sorted(Path(store_root, DOCK_JOURNALS_DIR).glob(f"*/{JOURNAL_NAME}")):
        try:
            answers += records_of_kind(path, KIND)
        except OSError:
            continue
    for record in sorted(answers, key=lambda r: r.utc):
        b = record.body
        if isinstance(b.get("device"), str) and type(b.get("seq")) is int:
            found.setdefault(b["device"], {})[b["seq"]] = {
                **b,
                "dock": record.device,
                "dock_seq": record.seq,
                "checked_utc": record.utc,
            }
    return found
