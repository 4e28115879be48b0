"""The dock's own journal: every docking, file stored, receipt, flag and removal, signed.

Kept at ``<store>/_docks/<dock id>/journal.jsonl`` in the camera journal's record format
(bodies: :mod:`evidence.dockjournal`), so the verifier checks a store against it. The
``serve`` daemon and the per-cable ``bay`` processes append to one file: each append
takes an exclusive ``flock``, reads the head again if another process appended since,
repairs a torn last line (a crash mid-append) into a side file, signs, writes with one
``write`` and fsyncs. A short write is cut back before the lock is released. The repair is
the camera journal's (:class:`evidence.journal.TornTailRepair`), idempotent: a crash in
the middle of it is finished by the next append or start, never left as an orphan side
file. A start that repaired says so: its ``boot`` record's reason is ``recovered``.

After each append the signed head (a ``status`` message) is written to
``<store>/.status/dock-heads/<dock>.json`` for ``bodycam-dock status`` and the MQTT status.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any

from evidence.canonical import GENESIS_HASH
from evidence.clock import Clock, SystemClock, format_utc
from evidence.dockjournal import DOCK_JOURNALS_DIR
from evidence.exc import JournalError, RecordError
from evidence.identity import DeviceIdentity
from evidence.journal import JOURNAL_NAME, JournalScan, Repair, TornTailRepair
from evidence.record import Record, sign_record
from evidence.storage import fsync_dir, makedirs_durable
from wire.message import Message, sign_status

_log = logging.getLogger(__name__)
TAIL_READ = 256 * 1024  # enough for the last record (a line is at most 64 KiB)
STATUS_DIR = ".status"


def head_status_path(store_root: Path, dock_id: str) -> Path:
    return store_root / STATUS_DIR / "dock-heads" / f"{dock_id}.json"


def read_head_status(store_root: Path) -> list[Message]:
    """The signed heads the store's docks last wrote (not verified here)."""
    folder = store_root / STATUS_DIR / "dock-heads"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(Message.from_bytes(path.read_bytes().strip()))
        except (OSError, RecordError):
            continue
    return found


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return os.urandom(16).hex()


class DockJournal:
    """Appends to a dock's journal, safely across threads and processes."""

    def __init__(
        self,
        store_root: str | os.PathLike,
        identity: DeviceIdentity,
        clock: Clock | None = None,
        *,
        program: str = "bodycam-dock",
    ) -> None:
        self.store_root = Path(store_root)
        self.identity = identity
        self.clock = clock or SystemClock()
        folder = makedirs_durable(self.store_root / DOCK_JOURNALS_DIR / identity.device_id)
        self.path = folder / JOURNAL_NAME
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        if created:
            fsync_dir(folder)
        self._lock = threading.Lock()
        self._known: tuple[int, tuple[int, str] | None] | None = None  # (size, head)
        self._head_utc: str | None = None  # the last record's UTC, with _known
        self._tail = TornTailRepair(self.path, identity.device_id, mode=0o640)
        self._repairing = False
        self.repairs: list[Repair] = []
        """Torn-tail repairs this process made or finished (another process's crash)."""
        self.head  # noqa: B018 - reads the head, repairing what a crash left first
        reason = "recovered" if self.repairs else "start"
        self.append("boot", {"firmware": program, "boot_id": _boot_id(), "reason": reason})

    # -- reading the head under the lock ------------------------------------------------
    def _head_locked(self) -> tuple[int, str] | None:
        size = os.fstat(self._fd).st_size
        if self._known is not None and self._known[0] == size:
            return self._known[1]
        scan = self._scan_tail(size)
        if not self._repairing:
            unfinished = self._tail.unfinished(scan)
            if scan.torn is not None or unfinished is not None:
                self._repair_locked(scan, unfinished)
                return self._head_locked()
        elif scan.torn is not None:
            raise JournalError(f"{self.path}: torn again while its torn tail was repaired")
        head = None
        for _, line in reversed(scan.lines):
            if line:
                try:
                    record = Record.from_bytes(line)
                except RecordError as exc:
                    raise JournalError(f"{self.path}: last record unreadable: {exc}") from None
                if record.device != self.identity.device_id:
                    raise JournalError(
                        f"{self.path}: journal of dock {record.device!r}, "
                        f"not {self.identity.device_id!r}"
                    )
                head = (record.seq, record.hash)
                self._head_utc = record.utc
                break
        if head is None and size > 0 and size > TAIL_READ:
            raise JournalError(f"{self.path}: no readable record in its last {TAIL_READ} bytes")
        self._known = (size, head)
        return head

    def _scan_tail(self, size: int) -> JournalScan:
        """The journal's last ``TAIL_READ`` bytes as a scan: whole lines (the first one,
        which the window may cut, left out) and a torn tail, at their file offsets."""
        start = max(0, size - TAIL_READ)
        tail = os.pread(self._fd, size - start, start)
        end = tail.rfind(b"\n") + 1  # where the whole lines end
        if start > 0 and end == 0:
            raise JournalError(f"{self.path}: no whole line in its last {TAIL_READ} bytes")
        pos = 0 if start == 0 else tail.find(b"\n") + 1
        lines = []
        while pos < end:
            stop = tail.index(b"\n", pos)
            lines.append((start + pos, tail[pos:stop]))
            pos = stop + 1
        torn = (start + end, tail[end:]) if end < len(tail) else None
        return JournalScan(lines, torn, size)

    def _repair_locked(self, scan: JournalScan, unfinished: tuple[Path, bytes] | None) -> None:
        """A process died mid-append, or mid-repair: the camera journal's own repair (one
        implementation, :class:`evidence.journal.TornTailRepair`) keeps the torn bytes
        aside and journals ``torn_tail``, or finishes the repair a crash cut short."""
        self._repairing = True  # the repair's own append must not start another
        try:
            repair = self._tail.run(self._fd, scan, unfinished, self._cut_to, self._append_locked)
        finally:
            self._repairing = False
        if repair is not None:
            self.repairs.append(repair)

    def _cut_to(self, offset: int) -> None:
        self._known = None  # read again: the file now ends at ``offset``

    # -- appending ------------------------------------------------------------------------
    def append(self, kind: str, body: dict[str, Any]) -> Record:
        """Sign ``body`` as the next record and make it durable before returning it."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                record = self._append_locked(kind, body)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._write_head_status(record)
        return record

    def _append_locked(self, kind: str, body: dict[str, Any]) -> Record:
        head = self._head_locked()
        now = format_utc(self.clock.time_ns())
        if head is not None and self._head_utc is not None and now < self._head_utc:
            # The dock's clock reads earlier than its journal's last record (a clock set
            # back, or a store that a simulation faster than real time wrote): the step
            # goes on the record first, so that it is seen and explained, not hidden.
            _log.warning(
                "dock journal: the clock reads %s, before its last record's %s", now, self._head_utc
            )
            self._write_locked(
                "clock_set",
                {"old_utc": self._head_utc, "new_utc": now, "by": "system_clock"},
                head,
                now,
            )
            head = self._head_locked()
        return self._write_locked(kind, body, head, now)

    def _write_locked(
        self, kind: str, body: dict[str, Any], head: tuple[int, str] | None, utc: str
    ) -> Record:
        seq, prev = (0, GENESIS_HASH) if head is None else (head[0] + 1, head[1])
        record = sign_record(
            self.identity,
            seq=seq,
            prev=prev,
            utc=utc,
            mono_ns=self.clock.monotonic_ns(),
            kind=kind,
            body=body,
        )
        line = record.to_bytes() + b"\n"
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
        except OSError as exc:
            os.ftruncate(self._fd, size)  # never leave half a record for the next append
            self._known = None
            raise JournalError(f"{self.path}: cannot append: {exc}") from None
        self._known = (size + len(line), (record.seq, record.hash))
        self._head_utc = record.utc
        return record

    @property
    def head(self) -> tuple[int, str] | None:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return self._head_locked()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def records(self) -> list[Record]:
        """Every record, parsed (for reconcile); raises RecordError on a bad line."""
        with open(self.path, "rb") as f:
            return [Record.from_bytes(line.rstrip(b"\n")) for line in f if line.strip()]

    def signed_head(self) -> Message:
        """The dock's head as a signed status message (what MQTT and `status` show)."""
        return sign_status(
            self.identity,
            utc=format_utc(self.clock.time_ns()),
            online=True,
            state="dock",
            head=self.head,
            battery=-1,
        )

    def _write_head_status(self, record: Record) -> None:
        message = sign_status(
            self.identity,
            utc=record.utc,
            online=True,
            state="dock",
            head=(record.seq, record.hash),
            battery=-1,
        )
        path = head_status_path(self.store_root, self.identity.device_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(message.to_bytes() + b"\n")
            os.replace(tmp, path)
        except OSError as exc:  # operator display only; the journal itself is durable
            _log.warning("cannot write the dock's head status: %s", exc)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def describe_head(message: Message) -> str:
    head = message.head
    where = "empty" if head is None else f"seq {head[0]} hash {head[1]}"
    return f"dock {message.device} journal head: {where} (signed {message.utc})"


__all__ = ["DockJournal", "describe_head", "head_status_path", "read_head_status"]
