"""The append-only, hash-chained device journal (``journal.jsonl``: one record per line).

Appends are durable: a record is written with a single ``write`` on an ``O_APPEND``
descriptor and fsynced before :meth:`Journal.append` returns. A power cut mid-append leaves
a torn last line; opening the journal detects it and either refuses (the default) or,
with ``repair_torn=True``, moves the torn bytes to a side file and journals a ``torn_tail``
record naming their hash, so nothing is silently dropped or accepted.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import GENESIS_HASH, sha256_hex
from .clock import Clock, SystemClock, format_utc
from .exc import JournalError, JournalFullError, RecordError, TornRecordError
from .identity import DeviceIdentity
from .record import Record, sign_record
from .storage import atomic_write_bytes, fsync_dir

JOURNAL_NAME = "journal.jsonl"
TORN_PREFIX = "journal.torn-"
TORN_FILE = re.compile(r"\Ajournal\.torn-[0-9]{1,19}\Z", re.ASCII)
"""The name a torn-tail repair gives the bytes it moved aside (kept as evidence)."""


@dataclass(frozen=True)
class JournalScan:
    """What is in a journal file, line by line, before any judgement."""

    lines: list[tuple[int, bytes]]  # (byte offset, line without newline)
    torn: tuple[int, bytes] | None  # trailing bytes without a newline


def scan_journal(path: str | os.PathLike) -> JournalScan:
    data = Path(path).read_bytes()
    lines: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            return JournalScan(lines, (offset, data[offset:]))
        lines.append((offset, data[offset:end]))
        offset = end + 1
    return JournalScan(lines, None)


class Journal:
    """A device's journal, open for appending. Thread-safe: appends are serialised."""

    def __init__(
        self,
        path: str | os.PathLike,
        identity: DeviceIdentity,
        *,
        clock: Clock | None = None,
        repair_torn: bool = False,
    ) -> None:
        self.path = Path(path)
        self.identity = identity
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None
        self._listeners: list[Callable[[Record], None]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn: tuple[int, bytes] | None = None
        if self.path.exists():
            scan = scan_journal(self.path)
            for offset, line in reversed(scan.lines):
                if not line:
                    continue
                try:
                    last = Record.from_bytes(line)
                except RecordError as exc:
                    raise JournalError(
                        f"{self.path}: record at byte {offset} unreadable: {exc}"
                    ) from None
                if last.device != identity.device_id:
                    raise JournalError(
                        f"{self.path}: journal belongs to device {last.device!r}, "
                        f"not {identity.device_id!r}"
                    )
                self._head = (last.seq, last.hash)
                break
            torn = scan.torn
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            fsync_dir(self.path.parent)
        if torn is not None:
            if not repair_torn:
                os.close(self._fd)
                raise TornRecordError(str(self.path), torn[0], len(torn[1]))
            self._repair(*torn)
        elif repair_torn:
            self._finish_repair()

    def _repair(self, offset: int, data: bytes) -> None:
        """Keep the torn bytes in ``journal.torn-<offset>``, cut them off, journal that.

        Idempotent across a crash at any step: a side file for this offset already there
        means an earlier repair got as far as cutting the tail, and what is torn now is
        its own ``torn_tail`` record, so the side file (the original bytes) is kept."""
        side = self.path.with_name(f"{TORN_PREFIX}{offset}")
        if side.is_file():
            data = side.read_bytes()
        else:
            atomic_write_bytes(side, data)
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        self._journal_torn(offset, data, side)

    def _finish_repair(self) -> None:
        """A crash after a repair cut the tail but before its ``torn_tail`` record was
        appended leaves ``journal.torn-<size>`` with the journal ending exactly there:
        append the record now (a finished repair's record lies past that offset)."""
        size = os.fstat(self._fd).st_size
        side = self.path.with_name(f"{TORN_PREFIX}{size}")
        if size and side.is_file():
            self._journal_torn(size, side.read_bytes(), side)

    def _journal_torn(self, offset: int, data: bytes, side: Path) -> None:
        self.append(
            "torn_tail",
            {"offset": offset, "size": len(data), "sha256": sha256_hex(data), "file": side.name},
        )

    @property
    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last record, or None for an empty journal."""
        return self._head

    @property
    def next_seq(self) -> int:
        return 0 if self._head is None else self._head[0] + 1

    def append(self, kind: str, body: dict[str, Any]) -> Record:
        """Sign ``body`` as the next record and make it durable before returning it."""
        with self._lock:
            seq, prev = (
                (0, GENESIS_HASH) if self._head is None else (self._head[0] + 1, self._head[1])
            )
            record = sign_record(
                self.identity,
                seq=seq,
                prev=prev,
                utc=format_utc(self.clock.time_ns()),
                mono_ns=self.clock.monotonic_ns(),
                kind=kind,
                body=body,
            )
            self._write_durably(record.to_bytes() + b"\n")
            self._head = (record.seq, record.hash)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(record)
        return record

    def _write_durably(self, line: bytes) -> None:
        """Append ``line`` and fsync it, or leave the file as it was: a failed or short
        write is truncated back to the last good record before the error is raised, so
        nothing is ever appended after a partial line."""
        end = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written == len(line):
                os.fsync(self._fd)
                return
            problem = f"short write ({written} of {len(line)} bytes)"
            full = True
        except OSError as exc:
            problem = f"cannot append: {exc.strerror or exc}"
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        try:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        except OSError as exc:  # the card is failing: say so, the next open repairs the tail
            raise JournalError(f"{self.path}: {problem}; rollback failed: {exc}") from None
        error = JournalFullError if full else JournalError
        raise error(f"{self.path}: {problem}; rolled back to byte {end}") from None

    def add_listener(self, listener: Callable[[Record], None]) -> None:
        """Call ``listener(record)`` after each durable append, in the appending thread
        (the alert outbox uses this). Listeners must be quick and must not append."""
        self._listeners.append(listener)

    def records(self) -> list[Record]:
        """Every complete record, parsed (raises :class:`RecordError` on a bad line)."""
        return [Record.from_bytes(line) for _, line in scan_journal(self.path).lines]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
