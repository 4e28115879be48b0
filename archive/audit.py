"""The archive's audit log: a hash-chained journal signed by the archive's own key.

It is exactly a journal of docs/journal-format.md (``evidence.journal.Journal``), kept in
``<archive>/audit/journal.jsonl`` with the archive's id as its ``device``; ``archive.json``
beside it names the archive (informational, like a camera's ``identity.json``: trust comes
from the unit-signed registry's ``archives``). ``bodycam-verify <archive>/audit`` checks it:
a removed, edited or reordered entry is reported like any journal's.

Kinds (each body: ``user``, ``role``, ``target``, ``detail``): ``login``, ``login_failed``,
``view``, ``export``, ``approval``, ``refusal``, ``classification``, ``case``, ``user``,
``copy_request``, ``archive``, ``hold`` (a legal hold placed or released), ``retention``
(a recording removed under retention: the decision, before the dock removes it). Several processes may append (the command line and the
console): each append holds an exclusive lock on ``<archive>/.audit.lock`` and reopens the
journal when another process appended since.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from evidence.clock import Clock, SystemClock
from evidence.identity import DeviceIdentity
from evidence.journal import JOURNAL_NAME, Journal
from evidence.record import Record
from evidence.storage import atomic_write_bytes, makedirs_durable

_log = logging.getLogger(__name__)

AUDIT_DIR = "audit"
MARKER = "archive.json"
MARKER_FORMAT = "bodycam-archive-audit-v1"
LOCK_NAME = ".audit.lock"
KINDS = (
    "archive",
    "login",
    "login_failed",
    "view",
    "export",
    "approval",
    "refusal",
    "classification",
    "case",
    "user",
    "copy_request",
    "hold",
    "retention",
    "seal",
    "key",
    "acknowledge",  # a camera's alert acknowledged from the console's live page
    "logout",  # a console session ended: logged out, or found expired when used again
)
_TEXT = 512


def _short(value: Any) -> Any:
    """Bound free text so one entry stays a short line (a record is at most 64 KiB)."""
    if isinstance(value, str):
        return value[:_TEXT]
    if isinstance(value, dict):
        return {str(k)[:64]: _short(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_short(v) for v in value[:64]]
    if isinstance(value, bool | int) or value is None:
        return value
    return str(value)[:_TEXT]


class AuditLog:
    """Append-only, signed, shared by every process of one archive."""

    def __init__(
        self, folder: str | os.PathLike, identity: DeviceIdentity, clock: Clock | None = None
    ):
        self.root = Path(folder)
        self.folder = self.root / AUDIT_DIR
        self.path = self.folder / JOURNAL_NAME
        self.identity = identity
        self.clock = clock or SystemClock()
        makedirs_durable(self.folder, 0o750)
        marker = self.folder / MARKER
        if not marker.exists():
            doc = {
                "format": MARKER_FORMAT,
                "archive_id": identity.device_id,
                "public_key": identity.public_key_hex,
            }
            atomic_write_bytes(marker, json.dumps(doc, sort_keys=True).encode() + b"\n", 0o644)
        self._lock_path = self.root / LOCK_NAME
        self._journal: Journal | None = None
        self._size = -1

    def append(
        self,
        kind: str,
        user: str,
        role: str,
        target: str = "",
        detail: Any = None,
    ) -> Record:
        """Sign and append one entry, durably, before returning it."""
        if kind not in KINDS:
            raise ValueError(f"unknown audit kind {kind!r}")
        body = {
            "user": _short(user),
            "role": _short(role),
            "target": _short(target),
            "detail": _short(detail if detail is not None else ""),
        }
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = self.path.stat().st_size if self.path.exists() else 0
            if self._journal is None or size != self._size:
                if self._journal is not None:
                    self._journal.close()
                self._journal = Journal(
                    self.path, self.identity, clock=self.clock, repair_torn=True, reserve_bytes=0
                )
            record = self._journal.append(kind, body)
            self._size = self.path.stat().st_size
        finally:
            os.close(fd)  # releases the lock
        _log.debug("audit: %s %s by %s", kind, target, user)
        return record

    @property
    def head(self) -> tuple[int, str] | None:
        return self._journal.head if self._journal is not None else None

    def records(self) -> list[Record]:
        """Every entry (for ``bodycam-archive audit show``), parsed."""
        if not self.path.exists():
            return []
        from evidence.journal import scan_journal

        return [Record.from_bytes(line) for _, line in scan_journal(self.path).lines]

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
