"""The append-only, hash-chained device journal (``journal.jsonl``: one record per line).

Appends are durable: a record is one ``write`` on an ``O_APPEND`` descriptor, fsynced before
:meth:`Journal.append` returns. An append that fails (a short write, ENOSPC, EIO, a failed
fsync) is rolled back, truncated to the last good record and fsynced, before anything else
is appended, so a full disk never leaves half a line for the next record to follow.

A power cut mid-append leaves a torn last line; opening the journal detects it and either
refuses (the default) or, with ``repair_torn=True``, moves the torn bytes to a side file
and journals a ``torn_tail`` record naming their hash, so nothing is silently dropped or
accepted. The repair is idempotent: a repair cut short (the side file written, the journal
truncated or not, the ``torn_tail`` record lost or torn) is finished by the next opening,
and :attr:`Journal.repaired` says what the opening did (the recorder's ``boot`` reason).
:class:`TornTailRepair` is the one implementation: the dock's own journal runs it too.

Next to the journal, ``journal.reserve`` holds room on the file system (a few records'
worth) for the records that report a full disk and for the boot that follows: an append
that meets ENOSPC gives it back a block at a time and retries. It is made again once space
returns. It is not evidence: nothing names it, verify and the dock never read it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import GENESIS_HASH, canonical_bytes, sha256_hex
from .clock import Clock, SystemClock, format_utc
from .exc import (
    JournalError,
    JournalFullError,
    JournalWriteError,
    RecordError,
    TornRecordError,
)
from .identity import DeviceIdentity
from .record import Record, sign_record
from .storage import atomic_write_bytes, fsync_dir

_log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"
TORN_PREFIX = "journal.torn-"
TORN_FILE = re.compile(r"\Ajournal\.torn-[0-9]{1,19}\Z", re.ASCII)
"""The name a torn-tail repair gives the bytes it moved aside (kept as evidence)."""
RESERVE_NAME = "journal.reserve"
RESERVE_RECORDS = 8
RECORD_ROOM = 1024
"""Bytes one record of a stoppage or a boot takes at most. Measured by
tests/test_journal_faults.py: 358 (resumed) to 619 (segment) bytes."""
RESERVE_BYTES = RESERVE_RECORDS * RECORD_ROOM
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # JournalFullError
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # where giving back the reserve helps


@dataclass(frozen=True)
class JournalScan:
    """What is in a journal file, line by line, before any judgement."""

    lines: list[tuple[int, bytes]]  # (byte offset, line without newline)
    torn: tuple[int, bytes] | None  # trailing bytes without a newline
    size: int = 0


def scan_journal(path: str | os.PathLike) -> JournalScan:
    data = Path(path).read_bytes()
    lines: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            return JournalScan(lines, (offset, data[offset:]), len(data))
        lines.append((offset, data[offset:end]))
        offset = end + 1
    return JournalScan(lines, None, len(data))


def readable_records(path: str | os.PathLike) -> list[Record]:
    """Every complete record of a journal that parses, in file order; a damaged line is
    skipped (verify reports it, and a report sees the gap in the sequence numbers)."""
    records = []
    for _, line in scan_journal(path).lines:
        try:
            records.append(Record.from_bytes(line))
        except RecordError:
            continue
    return records


def records_of_kind(path: str | os.PathLike, kind: str) -> list[Record]:
    """The complete records of ``kind`` in a journal, parsing only the lines that name it
    (canonical JSON writes ``"kind":"<kind>"`` exactly; a body string can only hold it
    escaped), so a report can pick a few kinds out of a year's journal at read speed.
    Lines that do not parse are skipped: verify reports them."""
    data = Path(path).read_bytes()
    marker = b'"kind":"%s"' % kind.encode()
    found = []
    at = data.find(marker)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        if end < 0:
            break  # a torn last line is no record
        try:
            record = Record.from_bytes(data[start:end])
        except RecordError:
            record = None
        if record is not None and record.kind == kind:
            found.append(record)
        at = data.find(marker, end)
    return found


class SpaceReserve:
    """Room held on the journal's file system, given back when the disk is full.

    ``size`` is rounded up to whole blocks of the file system: a record needs a new block
    only when it crosses into one, and a block is what truncating the reserve frees.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.block = 4096
        if size > 0:
            try:
                self.block = os.statvfs(path.parent).f_bsize or 4096
            except OSError:
                pass
        self.size = -(-size // self.block) * self.block if size > 0 else 0

    @property
    def held(self) -> int:
        """Bytes the reserve holds now."""
        try:
            return os.lstat(self.path).st_size
        except OSError:
            return 0

    def replenish(self) -> bool:
        """Grow the reserve back to its full size; False while storage has no room."""
        held = self.held
        if held >= self.size:
            return True
        created = not os.path.lexists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.posix_fallocate(fd, held, self.size - held)
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, held)  # a failed fallocate may keep what it took
                if exc.errno not in _NO_ROOM:
                    raise
                return False
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)
        return True

    def release(self) -> int:
        """Give one block of the reserve back to the file system; the bytes given."""
        held = self.held
        if held <= 0:
            return 0
        keep = max(0, held - self.block)
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.ftruncate(fd, keep)
            os.fsync(fd)  # commits the free: some file systems reuse freed blocks only then
        finally:
            os.close(fd)
        return held - keep


@dataclass(frozen=True)
class Repair:
    """A torn-tail repair made: the ``size`` torn bytes that were at byte ``offset`` are
    kept in the side file ``file``; ``finished``: it completed one a crash had cut short."""

    file: str
    offset: int
    size: int
    finished: bool = False


class TornTailRepair:
    """The torn-tail repair of one journal file: the one implementation that the camera's
    :class:`Journal` and the dock's journal (``dock.journal``) both run, so a crash leaves
    either in the same few states and the next opening finishes any of them.

    Each step is durable before the next, and the side file ``journal.torn-<offset>`` is the
    intent: a crash after it is written leaves a state :meth:`run` completes (the journal
    cut back to ``offset``, then the ``torn_tail`` record naming it). The caller holds the
    journal's locks and gives the two steps that touch its own state: ``cut(offset)`` (the
    file now ends there) and ``append(kind, body)`` (sign and append a record durably).
    """

    def __init__(self, path: Path, device_id: str, *, mode: int = 0o644) -> None:
        self.path = path
        self.device_id = device_id
        self.mode = mode  # of the side file: the journal's own

    def unfinished(self, scan: JournalScan) -> tuple[Path, bytes] | None:
        """A side file of a repair cut short: named by no ``torn_tail`` record of
        ``scan.lines``, and for the offset where the good records end (``(path, its
        bytes)``), else None. A finished repair's record lies at that side file's offset,
        so a scan of the journal's last lines (the dock reads only those) is enough."""
        good_end = scan.torn[0] if scan.torn is not None else scan.size
        side = self.path.with_name(f"{TORN_PREFIX}{good_end}")
        if not os.path.isfile(side) or os.path.islink(side):
            return None
        for _, line in scan.lines:
            if b'"torn_tail"' in line and side.name.encode() in line:
                try:
                    record = Record.from_bytes(line)
                except RecordError:
                    continue
                if record.kind == "torn_tail" and record.body.get("file") == side.name:
                    return None  # a finished repair
        return side, side.read_bytes()

    def refusal(self, scan: JournalScan, unfinished) -> TornRecordError:
        """The error for a journal that needs a repair the caller did not ask for."""
        if unfinished is None:
            offset, data = scan.torn
            return TornRecordError(str(self.path), offset, len(data))
        side, data = unfinished
        return TornRecordError(
            str(self.path),
            int(side.name[len(TORN_PREFIX) :]),
            len(data),
            f"{self.path}: a torn-tail repair was cut short ({side.name} is named by no "
            "torn_tail record); open it with repair_torn to finish it",
        )

    def run(
        self,
        fd: int,
        scan: JournalScan,
        unfinished: tuple[Path, bytes] | None,
        cut: Callable[[int], None],
        append: Callable[[str, dict[str, Any]], object],
    ) -> Repair | None:
        """Finish the repair cut short (``unfinished``), else move a torn tail of ``scan``
        to ``journal.torn-<offset>``, cut it off and journal it; None if neither is due.
        ``fd`` is the journal open for writing."""
        if unfinished is not None:
            side, kept = unfinished
            finished = True
        elif scan.torn is not None:
            offset, kept = scan.torn
            side = self.path.with_name(f"{TORN_PREFIX}{offset}")
            atomic_write_bytes(side, kept, mode=self.mode)
            scan = JournalScan([], (offset, kept), offset + len(kept))
            finished = False
        else:
            return None
        offset = int(side.name[len(TORN_PREFIX) :])
        body = {"offset": offset, "size": len(kept), "sha256": sha256_hex(kept), "file": side.name}
        if scan.torn is not None and scan.torn[1] != kept:
            # The bytes after the good records are not the ones moved aside: they must be
            # the start of this repair's own torn_tail record, cut short. Anything else is
            # evidence no rule here may drop.
            own = (
                b'{"body":'
                + canonical_bytes(body)
                + b',"device":'
                + canonical_bytes(self.device_id)
                + b',"kind":"torn_tail","mono_ns":'
            )
            extra = scan.torn[1]
            if not (own.startswith(extra) or extra.startswith(own)):
                raise JournalError(
                    f"{self.path}: {len(extra)} bytes at byte {offset} are neither the torn "
                    f"record kept in {side.name} nor its torn_tail record; not repaired"
                )
            _log.warning("journal: a torn_tail record was cut short; writing it again")
        os.ftruncate(fd, offset)
        os.fsync(fd)
        cut(offset)
        for leftover in self.path.parent.glob(f".{TORN_PREFIX}*.tmp-*"):
            leftover.unlink(missing_ok=True)  # an atomic write cut short: the bytes are kept
        _log.warning(
            "journal %s: kept a torn last record (%d bytes) in %s%s",
            self.path,
            len(kept),
            side.name,
            " (finishing a repair cut short)" if finished else "",
        )
        append("torn_tail", body)
        return Repair(side.name, offset, len(kept), finished)


class Journal:
    """A device's journal, open for appending. Thread-safe: appends are serialised.

    ``reserve_bytes`` is the room kept in ``journal.reserve`` (0: none).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        identity: DeviceIdentity,
        *,
        clock: Clock | None = None,
        repair_torn: bool = False,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.identity = identity
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None
        self._listeners: list[Callable[[Record], None]] = []
        self._end = 0  # bytes of good records: where the next append starts
        self._dirty = False  # a rollback failed: the file may hold bytes past _end
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reserve = SpaceReserve(self.path.with_name(RESERVE_NAME), reserve_bytes)
        scan = JournalScan([], None)
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
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._end = scan.size
        if created:
            fsync_dir(self.path.parent)
        self.reserve_spends = 0
        """How often the reserve went from whole to spent since this opening (1 at once
        if it could not be made whole): the recorder alerts ``reserve_spent`` for each."""
        tail = TornTailRepair(self.path, identity.device_id)
        self.repaired: Repair | None = None
        """The torn-tail repair this opening made or finished (None: none was needed)."""
        try:
            unfinished = tail.unfinished(scan)
            if (scan.torn is not None or unfinished is not None) and not repair_torn:
                raise tail.refusal(scan, unfinished)
            self._replenish()
            self.reserve_spends = 1 if self.reserve_spent else 0
            self.repaired = tail.run(self._fd, scan, unfinished, self._cut_to, self.append)
        except BaseException:
            self.close()
            raise

    def _cut_to(self, offset: int) -> None:
        """The repair cut the file back to ``offset`` (durably): the next append goes there."""
        self._end = offset

    # -- the reserve ------------------------------------------------------------------------

    @property
    def reserve_spent(self) -> bool:
        """True while ``journal.reserve`` holds less than its full size: storage was (or
        is) full, and the room kept for reporting it has been used."""
        return self.reserve.size > 0 and self.reserve.held < self.reserve.size

    def replenish_reserve(self) -> bool:
        """Make the reserve whole again; False while storage still has no room."""
        with self._lock:
            return self._replenish()

    def _replenish(self) -> bool:
        if self.reserve.size <= 0:
            return True
        try:
            return self.reserve.replenish()
        except OSError as exc:
            _log.warning("journal: cannot make %s: %s", self.reserve.path.name, exc)
            return False

    # -- appending --------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last record, or None for an empty journal."""
        return self._head

    @property
    def next_seq(self) -> int:
        return 0 if self._head is None else self._head[0] + 1

    def append(self, kind: str, body: dict[str, Any]) -> Record:
        """Sign ``body`` as the next record and make it durable before returning it.

        Raises :class:`JournalFullError` (storage full, the reserve spent) or
        :class:`JournalWriteError` (another storage fault); either way nothing of the
        record stays in the journal, and the next append may succeed.
        """
        with self._lock:
            if self._fd < 0:
                raise JournalError(f"{self.path}: the journal is closed")
            self._restore_end()
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
            line = record.to_bytes() + b"\n"
            released = False
            while True:
                try:
                    self._write(line, kind)
                    break
                except JournalFullError as exc:
                    if exc.errno not in _NO_ROOM:
                        raise  # a file size limit: room elsewhere would not help
                    try:
                        whole = self.reserve.size > 0 and self.reserve.held >= self.reserve.size
                        given = self.reserve.release() if self.reserve.size > 0 else 0
                        if given and whole:
                            self.reserve_spends += 1  # a new spell of a full disk
                    except OSError as exc:
                        _log.error("journal: cannot give back the reserve: %s", exc)
                        given = 0
                    if not given:
                        raise
                    released = True
                    _log.warning(
                        "journal: storage full; gave back %d bytes of the reserve for %s",
                        given,
                        kind,
                    )
            self._end += len(line)
            self._head = (record.seq, record.hash)
            if not released and self.reserve_spent and self._replenish():
                _log.info("journal: storage has room again; the reserve is whole")
            listeners = list(self._listeners)
        for listener in listeners:
            listener(record)
        return record

    def _write(self, line: bytes, kind: str) -> None:
        """Write ``line`` at ``_end`` with one ``write`` and fsync it, or roll it back and
        raise. A short write is a failure too: what caused it (a full card, a file size
        limit) makes the next write fail, and half a record must not stay."""
        start = self._end
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                err = errno.ENOSPC if self._no_room(len(line) - written) else errno.EFBIG
                raise OSError(err, f"short write ({written} of {len(line)} bytes)")
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise OSError(exc.errno, f"fsync failed: {exc.strerror or exc}") from None
        except OSError as exc:
            self._roll_back()
            cls = JournalFullError if exc.errno in _FULL else JournalWriteError
            raise cls(
                f"{self.path}: cannot append a {kind} record: {exc.strerror or exc}; "
                f"rolled back to byte {start}",
                exc.errno,
            ) from None

    def _no_room(self, need: int) -> bool:
        """Whether the file system lacks ``need`` bytes (a short write's likely cause)."""
        try:
            st = os.fstatvfs(self._fd)
        except OSError:
            return True
        return st.f_bavail * st.f_frsize < need + st.f_bsize

    def _roll_back(self) -> None:
        """Cut the file back to its good records (``_end``), durably."""
        try:
            os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)
            self._dirty = False
        except OSError as exc:
            self._dirty = True  # the next append tries again before it writes
            _log.error("journal: cannot roll back a failed append: %s", exc)

    def _restore_end(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == self._end and not self._dirty:
            return
        if size < self._end:
            raise JournalError(
                f"{self.path}: the file is {size} bytes, shorter than the {self._end} "
                "this journal wrote (cut by someone else)"
            )
        if not self._dirty:
            raise JournalError(
                f"{self.path}: {size - self._end} bytes were appended by someone else"
            )
        self._roll_back()
        if self._dirty:
            raise JournalWriteError(
                f"{self.path}: cannot roll back a failed append; not appending after it",
                errno.EIO,
            )

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
