"""The dock's durable store: ``<store>/<unit>/<device>/`` laid out like device storage.

Every byte is written once, and a stored file is never replaced (write-once: a file is
linked into place, which fails if the name is taken; only names that
:func:`evidence.layout.stored_name_error` accepts are written). Media streams into ``<store>/.partial/<device>/`` while it is
hashed, is fsynced, renamed into ``media/YYYYMMDD/`` and the folder fsynced; only then is
the record that names it appended (one write, fsync) to the device's ``journal.jsonl`` in
the store and the SQLite index updated. So the store's journal is always a verified prefix
of the camera's chain whose media are all in place; a crash anywhere leaves at most a
partial file (resumed later) or an orphan media file (moved back to ``.partial`` by
:meth:`Store.reconcile`).

At rest nothing is world-readable: files are 0640 and folders 0750 (the dock's group may
read, e.g. for an export job; others may not).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import queue
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evidence import dockjournal
from evidence.clock import SystemClock, format_utc, parse_utc
from evidence.exc import RecordError, RegistryError
from evidence.identity import DeviceIdentity
from evidence.journal import JOURNAL_NAME, readable_records, records_of_kind, scan_journal
from evidence.layout import IDENTITY_NAME, stored_name_error
from evidence.record import Record
from evidence.registry import DeviceEntry, Registry, require_trusted
from evidence.storage import atomic_write_bytes, fsync_dir, makedirs_durable
from evidence.verify_store import dock_journal_folders
from wire.cable import record_file

from .exc import (
    DockError,
    DockFault,
    MediaConflict,
    MediaMismatch,
    RetentionNotDue,
    StoreFull,
    UnsafeName,
    is_full,
)
from .index import Index
from .journal import DockJournal

_log = logging.getLogger(__name__)
REGISTRY_NAME = "registry.json"
INDEX_NAME = "index.sqlite"
PARTIAL_DIR = ".partial"
STATUS_DIR = ".status"
LOCK_DIR = ".locks"
NO_UNIT = "unassigned"
WRITE_AHEAD = 8  # frames (up to 2 MiB) received but not yet hashed and written
FILE_MODE = 0o640
DIR_MODE = 0o750
_INSERT_MEDIA = (
    "INSERT INTO media(device, seq, kind, unit, officer, file, size, sha256,"
    " closed_utc, stored_utc) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
# a row first noted unstored gets its stored time; a stored time is never moved
_UPSERT_MEDIA = (
    _INSERT_MEDIA + " ON CONFLICT(device, seq) DO UPDATE SET"
    " stored_utc=COALESCE(stored_utc, excluded.stored_utc)"
)

# (device, file) -> (offset, sha256 object): lets a re-docked camera resume without the
# dock reading the partial file again, as long as this daemon kept running.
_hash_cache: dict[tuple[str, str], tuple[int, Any]] = {}
_hash_cache_lock = threading.Lock()


def store_failure(exc: BaseException, what: str) -> DockError:
    """The dock error a failed store write ends a session with: the error itself if it is
    one, :class:`StoreFull` for a full disk, else :class:`DockFault` (the dock is broken)."""
    if isinstance(exc, DockError):
        return exc
    if is_full(exc):
        return StoreFull(f"the store is full ({what}: {exc})")
    return DockFault(f"the store could not write ({what}): {type(exc).__name__}: {exc}")


def unit_of(entry: DeviceEntry) -> str:
    return entry.unit or NO_UNIT


def closed_utc(record: Record) -> str:
    """When a recording left the camera's control: a segment's end, else the record time."""
    end = record.body.get("end_utc") if record.kind == "segment" else None
    return end if isinstance(end, str) else record.utc


def _remove_empty_tree(folder: Path) -> bool:
    """Remove ``folder`` if it holds folders only (no file at all), durably; True if gone.

    An interrupted first docking can leave ``<unit>/<device>/media/<day>/`` with nothing
    in it once reconcile has taken its unjournaled files back to ``.partial``.
    """
    if any(not p.is_dir() for p in folder.rglob("*")):
        return False
    for d in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        d.rmdir()
    folder.rmdir()
    fsync_dir(folder.parent)
    return True


_Read = tuple[int, bytes]  # how far a journal was read, and its last whole line there
_ledgers: dict[str, tuple[dict[str, _Read], dict[str, dockjournal.DeviceLedger]]] = {}
_ledgers_lock = threading.Lock()


def _lines(data: bytes, records: list[Record]) -> tuple[int, bytes]:
    """Parse the whole lines of ``data`` into ``records``; where they end, and the last."""
    end = data.rfind(b"\n") + 1  # whole lines only; a torn tail waits for its repair
    lines = data[:end].splitlines()
    for line in lines:
        try:
            records.append(Record.from_bytes(line))
        except RecordError:
            continue
    return end, (lines[-1] + b"\n" if lines else b"")


def store_ledger(root: str | os.PathLike, device: str) -> dockjournal.DeviceLedger | None:
    """What all the store's dock journals say it holds for ``device``, unverified (for
    finding files; ``bodycam-verify`` vouches). Kept per store and process: a journal that
    only grew (it still holds the line where it was left) is read from there, its new
    records folded in, so a case of many recordings, sealed or exported one by one, reads
    a year's journal once; any other change reads everything again."""
    key = str(Path(root).resolve())
    paths = [f / JOURNAL_NAME for _, f, _d in dock_journal_folders(Path(root))]
    paths = [p for p in paths if p.exists()]
    with _ledgers_lock:
        read, ledgers = _ledgers.get(key, ({}, {}))
        if set(read) != {str(p) for p in paths}:
            read, ledgers = {}, {}
        grown: list[Record] = []
        done: dict[str, _Read] = {}
        for path in paths:
            offset, last = read.get(str(path), (0, b""))
            with open(path, "rb") as f:
                f.seek(max(0, offset - len(last)))
                if f.read(len(last)) != last:  # cut, repaired or replaced: start again
                    return _reread(key, paths, device)
                data = f.read()
            end, tail = _lines(data, grown)
            done[str(path)] = (offset + end, tail or last)
        if grown:
            dockjournal.build_ledger(grown, into=ledgers)
        _ledgers[key] = (done, ledgers)
        return ledgers.get(device)


def _reread(key: str, paths: list[Path], device: str) -> dockjournal.DeviceLedger | None:
    records: list[Record] = []
    done: dict[str, _Read] = {}
    for path in paths:
        done[str(path)] = _lines(path.read_bytes(), records)
    ledgers = dockjournal.build_ledger(records)
    _ledgers[key] = (done, ledgers)
    return ledgers.get(device)


class PartialFile:
    """A media file being received: hashed while written, resumable after an unplug."""

    def __init__(self, store: Store, device: str, file: str, size: int, sha256: str) -> None:
        self.device, self.file, self.size, self.sha256 = device, file, size, sha256
        why = stored_name_error(file)
        if why is not None:
            raise UnsafeName(f"not storing {file!r:.80}: {why}")
        try:
            folder = makedirs_durable(store.root / PARTIAL_DIR / device, DIR_MODE)
            self.path = folder / (file.replace("/", "__") + ".part")
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE
            )
        except OSError as exc:
            raise store_failure(exc, f"opening the partial file of {file}") from exc
        self.offset = os.fstat(self._fd).st_size
        if self.offset > size:
            os.ftruncate(self._fd, 0)
            self.offset = 0
        with _hash_cache_lock:
            cached = _hash_cache.pop((device, file), None)
        if cached is not None and cached[0] == self.offset:
            self._hash = cached[1]
        else:
            # The daemon restarted: read the kept bytes once to rebuild the hash state.
            self._hash = hashlib.sha256()
            if self.offset:
                with open(self.path, "rb", buffering=0) as f:
                    while chunk := f.read(1 << 20):
                        self._hash.update(chunk)
        self.resumed_from = self.offset
        self._queued = self.offset  # bytes accepted from the cable (some maybe not written yet)
        # bounded: a slow disk holds the cable back instead of filling memory
        self._pending: queue.Queue[bytes | memoryview | None] = queue.Queue(WRITE_AHEAD)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data`` (which the caller must not change afterwards) to be hashed and
        written by this file's writer thread, so the cable is read again while the last
        frame is hashed and written (hashlib and os.write release the GIL). Errors of the
        writer surface here, at :meth:`finish`, :meth:`suspend` or :meth:`sync`."""
        if self._queued + len(data) > self.size:
            raise MediaMismatch(
                f"{self.file}: camera sent more than the {self.size} bytes its record signs"
            )
        self._raise_writer_error()
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="dock-partial", daemon=True
            )
            self._writer.start()
        self._queued += len(data)
        self._pending.put(data)

    def _write_loop(self) -> None:
        while (data := self._pending.get()) is not None:
            if self._error is None:
                try:
                    self._hash.update(data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._fd, view) :]
                    self.offset += len(data)
                except BaseException as exc:  # re-raised in the session's thread
                    self._error = exc

    def _drain(self) -> None:
        """Wait until every queued byte is hashed and written; stop the writer thread."""
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join()
            self._writer = None

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise store_failure(self._error, f"writing {self.file}") from self._error

    def suspend(self) -> None:
        """The line broke: keep what arrived, durably, for the next docking."""
        self._drain()
        if self._fd < 0:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._queued = self.offset
        if self._error is not None:
            return  # hash and file may disagree: a resume re-reads the kept bytes
        with _hash_cache_lock:
            _hash_cache[(self.device, self.file)] = (self.offset, self._hash.copy())

    def finish(self) -> None:
        """Check size and SHA-256 against the signed record (before any fsync)."""
        self._drain()
        self._raise_writer_error()
        digest = self._hash.hexdigest()
        if self.offset != self.size or digest != self.sha256:
            raise MediaMismatch(
                f"{self.file}: received {self.offset} bytes with sha256 {digest[:16]}..., "
                f"the signed record says {self.size} bytes, {self.sha256[:16]}..."
            )

    def sync(self) -> None:
        """Make the verified bytes durable and close (the committer thread calls this)."""
        self._drain()
        self._raise_writer_error()
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self._drain()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


class Store:
    """A dock store folder and its index."""

    def __init__(
        self,
        root: str | os.PathLike,
        clock: Any = None,
        *,
        identity: DeviceIdentity | None = None,
        unit_keys: frozenset[str] = frozenset(),
    ) -> None:
        """``identity``: the dock's key, which keeps the dock journal (every daemon passes
        it; without it nothing can be stored). ``unit_keys``: fingerprints of the unit keys
        whose signature the store's registry must carry (empty: the registry file is
        taken as the operator gave it, as tests and tools that only read do)."""
        self.root = Path(root)
        self.clock = clock or SystemClock()
        self.unit_keys = frozenset(unit_keys)
        makedirs_durable(self.root, DIR_MODE)
        self.index = Index(self.root / INDEX_NAME)
        self.journal: DockJournal | None = None
        if identity is not None:
            makedirs_durable(self.root / STATUS_DIR, DIR_MODE)
            self.journal = DockJournal(self.root, identity, self.clock)
            self._restrict()

    def _restrict(self) -> None:
        """The keeper's store is not world-readable (files 0640, folders 0750), whatever
        the umask made of the folders and files that other modules create."""
        paths = [self.root, self.root / STATUS_DIR]
        paths += [self.journal.path.parent.parent, self.journal.path.parent]
        paths += [self.root / (INDEX_NAME + suffix) for suffix in ("", "-wal", "-shm")]
        paths += [self.journal.path, self.registry_path]
        for path in paths:
            try:
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    continue
                if mode & 0o027:
                    os.chmod(path, mode & ~0o027)
            except FileNotFoundError:
                continue

    # -- registry ---------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_NAME

    def registry(self) -> Registry:
        """Re-read at each docking, so an imported registry takes effect without a restart.
        With unit keys configured, it must be signed by one of them."""
        registry = Registry.load_or_empty(self.registry_path)
        if self.unit_keys:
            require_trusted(registry, self.unit_keys, str(self.registry_path))
        return registry

    def install_registry(self, registry: Registry, data: bytes) -> None:
        """Replace the store's registry with a newer signed edition (never an older one)."""
        if self.unit_keys:
            require_trusted(registry, self.unit_keys, "the new registry")
        if os.path.lexists(self.registry_path):
            current = Registry.load(self.registry_path)
            if (
                current.signature
                and registry.signature
                and registry.signature.serial < current.signature.serial
            ):
                raise RegistryError(
                    f"the new registry is edition {registry.signature.serial}, older than the "
                    f"installed edition {current.signature.serial}: not installing it"
                )
        atomic_write_bytes(self.registry_path, data, mode=FILE_MODE)

    def log(self, kind: str, body: dict[str, Any]) -> None:
        """Append to the dock journal (a no-op for a read-only Store without a key)."""
        if self.journal is not None:
            self.journal.append(kind, body)

    def now_utc(self) -> str:
        return format_utc(self.clock.time_ns())

    # -- devices ----------------------------------------------------------------------
    def device_dir(self, device: str, unit: str) -> Path:
        rows = self.index.query("SELECT unit FROM heads WHERE device=?", (device,))
        return self.root / (rows[0]["unit"] if rows else unit) / device

    def head(self, device: str) -> tuple[int, str] | None:
        rows = self.index.query("SELECT seq, hash FROM heads WHERE device=?", (device,))
        return (rows[0]["seq"], rows[0]["hash"]) if rows else None

    @contextmanager
    def device_lock(self, device: str, wait_s: float = 0.0):
        """One bay at a time per device, across threads and bay processes (flock).

        ``wait_s``: how long to wait for another session of the device to end first (a
        network session: after a dropped connection the camera may be back before the
        dock has noticed that its old session is dead)."""
        folder = makedirs_durable(self.root / LOCK_DIR, DIR_MODE)
        fd = os.open(folder / f"{device}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DockError(
                            f"{device} is already being offloaded in another bay"
                        ) from None
                    threading.Event().wait(0.05)  # flock has no timed wait
            yield
        finally:
            os.close(fd)

    def flag(self, device: str, kind: str, detail: str) -> None:
        body = dockjournal.flag_body(device, kind, detail)
        _log.warning("flag %s for %s: %s", body["kind"], body["device"], body["detail"])
        self.log("flag", body)
        self.index.execute(
            "INSERT INTO flags(utc, device, kind, detail) VALUES (?,?,?,?)",
            (self.now_utc(), body["device"], body["kind"], body["detail"]),
        )

    def note_known_media(self, entry: DeviceEntry, records: Iterable[Record]) -> None:
        """Remember every media record seen on the cable, stored or not (for deadlines)."""
        rows = []
        for r in records:
            if r.media is not None:
                rows.append(
                    (
                        _INSERT_MEDIA + " ON CONFLICT DO NOTHING",
                        (
                            r.device,
                            r.seq,
                            r.kind,
                            unit_of(entry),
                            entry.officer,
                            *r.media,
                            closed_utc(r),
                            None,
                        ),
                    )
                )
        if rows:
            self.index.transaction(rows)

    # -- durable writes ---------------------------------------------------------------
    def partial(self, device: str, file: str, size: int, sha256: str) -> PartialFile:
        return PartialFile(self, device, file, size, sha256)

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the store's disk."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def spool(self):
        """An anonymous file on the store's disk (gone when closed, or after a crash) for
        the records of one docking, so that they are never all held in memory."""
        folder = makedirs_durable(self.root / PARTIAL_DIR, DIR_MODE)
        return tempfile.TemporaryFile(dir=folder)

    def stored_path(self, entry: DeviceEntry, file: str) -> Path:
        why = stored_name_error(file)
        if why is not None:
            raise UnsafeName(f"not storing {file!r:.80}: {why}")
        return self.device_dir(entry.device_id, unit_of(entry)) / file

    def holds(self, entry: DeviceEntry, file: str, size: int, sha256: str) -> bool | None:
        """None if ``file`` is not stored for the device; else whether the stored bytes
        are exactly ``size`` bytes with ``sha256`` (read from disk: the files are the
        truth, not the index)."""
        path = self.stored_path(entry, file)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        with f:
            if os.fstat(f.fileno()).st_size != size:
                return False
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def place(self, entry: DeviceEntry, partial: PartialFile) -> None:
        """Link a finished partial file into the device folder, durably; never over a
        stored file (write-once: raises :class:`MediaConflict`)."""
        self._require_journal()
        dest = self.stored_path(entry, partial.file)
        makedirs_durable(dest.parent, DIR_MODE)
        try:
            os.link(partial.path, dest)
        except FileExistsError:
            raise MediaConflict(
                f"{partial.file} is already stored for {entry.device_id}: "
                "a stored file is never replaced"
            ) from None
        fsync_dir(dest.parent)
        os.unlink(partial.path)
        fsync_dir(partial.path.parent)

    def append(self, entry: DeviceEntry, records: list[Record]) -> None:
        """Append verified records (whose files are already placed) and index them."""
        self._require_journal()
        if not records:
            return
        unit = unit_of(entry)
        folder = makedirs_durable(self.device_dir(entry.device_id, unit), DIR_MODE)
        path = folder / JOURNAL_NAME
        created = not path.exists()
        data = b"".join(r.to_bytes() + b"\n" for r in records)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(folder)
        self._log_stored(entry, folder, records)
        identity = folder / IDENTITY_NAME
        if not identity.exists():  # as on the card; informational (the registry is trusted)
            atomic_write_bytes(
                identity,
                json.dumps(
                    {"device_id": entry.device_id, "public_key": entry.public_key}, indent=2
                ).encode()
                + b"\n",
                mode=FILE_MODE,
            )
        now = self.now_utc()
        last = records[-1]
        statements: list[tuple[str, tuple]] = [
            (
                "INSERT INTO heads(device, unit, seq, hash, utc) VALUES (?,?,?,?,?) "
                "ON CONFLICT(device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash, "
                "utc=excluded.utc",
                (entry.device_id, unit, last.seq, last.hash, now),
            )
        ]
        for r in records:
            if r.media is not None:
                statements.append(
                    (
                        _UPSERT_MEDIA,
                        (
                            r.device,
                            r.seq,
                            r.kind,
                            unit,
                            entry.officer,
                            *r.media,
                            closed_utc(r),
                            now,
                        ),
                    )
                )
        self.index.transaction(statements)

    def _require_journal(self) -> None:
        if self.journal is None:
            raise DockError(
                "this store was opened without the dock's key, read-only: "
                "nothing may be stored that the dock journal does not record"
            )

    def _log_stored(self, entry: DeviceEntry, folder: Path, records: list[Record]) -> None:
        """Journal, after the device's records are durable, each file they bind that is
        now in the store, and the device journal's new head there."""
        if self.journal is None:
            return
        unit = folder.parent.name
        for r in records:
            bound = record_file(r)
            if bound is not None and os.path.lexists(folder / bound[0]):
                self.journal.append(
                    "stored", dockjournal.stored_body(entry.device_id, unit, r.seq, *bound)
                )
        last = records[-1]
        self.journal.append(
            "records_stored",
            dockjournal.records_body(entry.device_id, unit, last.seq, last.hash, len(records)),
        )

    def remove_media(
        self,
        device: str,
        file: str,
        authority: str,
        reason: str,
        *,
        retention: dict[str, Any] | None = None,
    ) -> Record:
        """Remove a stored file under ``authority`` (retention): journaled first, so the
        removal is never silent; the only way media leave a store. ``retention``: the
        archive's decision (``evidence.dockjournal.RETENTION_GROUNDS``), kept in the record.

        Refused (:class:`RetentionNotDue`, nothing journaled) before the six-month floor
        has run out: 183 days after the recording ended by its device's signed record in
        this store, judged by the clock that stamps the ``removed`` record (so the record
        itself shows it was lawful, and ``bodycam-verify`` checks exactly that)."""
        if self.journal is None:
            raise DockError("removing media needs the dock's key (its journal records it)")
        size, ledgers = self._removal_ledger()
        with self.device_lock(device):
            refusal = self._removal_refusal(ledgers, device, file, self.journal.clock.time_ns())
            if refusal is not None:
                raise refusal
            ledger = ledgers[device]
            record = self.journal.append(
                "removed",
                dockjournal.removed_body(
                    device,
                    ledger.unit,
                    file,
                    ledger.files[file].sha256,
                    authority,
                    reason,
                    retention,
                ),
            )
            # gone already (verify called it missing)? the record now says why
            self._unlink_forms(self.root / ledger.unit / device, file)
        one = dockjournal.build_ledger([record])[device]  # fold it in, as a re-read would
        ledger.removed[file], ledger.removals[file] = one.removed[file], one.removals[file]
        grown = self.journal.path.stat().st_size
        alone = grown == size + len(record.to_bytes()) + 1  # no other process appended
        self._removal_cache = (grown, ledgers) if alone else None
        self.index.execute(
            "UPDATE media SET stored_utc=NULL WHERE device=? AND file=?", (device, file)
        )
        return record

    @staticmethod
    def media_forms(folder: Path, file: str) -> list[Path]:
        """Every file that holds stored media ``file`` of the device ``folder``: its sealed
        form's wrapped key (first: without it the sealed bytes open to no one), the sealed
        file (``archive.sealing``), and the clear file."""
        sealed = dockjournal.sealed_name(file)
        return [folder / dockjournal.key_name(sealed), folder / sealed, folder / file]

    def _unlink_forms(self, folder: Path, file: str) -> list[Path]:
        """Remove every form of ``file`` that is there, each folder fsynced; the removed
        (with the dot-named temporary files a seal cut short left beside them)."""
        gone = []
        key, sealed, _clear = self.media_forms(folder, file)
        temporary = [
            p
            for p in (sealed.parent.glob(".*") if sealed.parent.is_dir() else [])
            if p.name.endswith((f"-{sealed.name}", f"-{key.name}"))
        ]
        for path in [*self.media_forms(folder, file), *temporary]:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            fsync_dir(path.parent)
            gone.append(path)
        return gone

    def finish_removals(self) -> list[str]:
        """Remove what a removal cut short left (the ``removed`` record is durable, a
        crash came before every form of the file was unlinked); one line per file."""
        self._require_journal()
        actions = []
        for device, ledger in sorted(self._ledger().items()):
            folder = self.root / ledger.unit / device
            for file in sorted(ledger.removed):
                with self.device_lock(device, wait_s=30.0):
                    gone = self._unlink_forms(folder, file)
                if gone:
                    names = ", ".join(p.relative_to(folder).as_posix() for p in gone)
                    actions.append(f"{device}: finished the removal of {file} ({names})")
        return actions

    def kept_by_archive(self, own_key: str = "") -> Record | None:
        """The first ``archive_keeps`` record of the store's dock journals whose signature
        verifies under a dock key the registry lists (or ``own_key``, the dock's own):
        an archive keeps this store, whatever became of ``.status/archive.json``."""
        try:
            keys = {d.dock_id: d.public_key for d in self.registry().docks()}
        except RegistryError:
            keys = {}
        for _, folder, dock in dock_journal_folders(self.root):
            path = folder / JOURNAL_NAME
            if not path.exists():
                continue
            for record in dockjournal.archives_keeping(
                records_of_kind(path, "archive_keeps")
            ).values():
                for key in {keys.get(dock, ""), own_key} - {""}:
                    try:
                        record.verify(key)
                    except (RecordError, ValueError):
                        continue
                    return record
        return None

    def removal_refusal(self, device: str, file: str, now_ns: int) -> DockError | None:
        """Why removing ``file`` at ``now_ns`` would be refused, read from every dock
        journal of the store without writing anything (``bodycam-dock remove`` asks
        first, so that a refusal journals nothing); None if it would not be."""
        records: list[Record] = []
        for _, folder, _dock in dock_journal_folders(self.root):
            if (folder / JOURNAL_NAME).exists():
                records += readable_records(folder / JOURNAL_NAME)
        return self._removal_refusal(dockjournal.build_ledger(records), device, file, now_ns)

    def _removal_refusal(
        self, ledgers: dict[str, dockjournal.DeviceLedger], device: str, file: str, now_ns: int
    ) -> DockError | None:
        ledger = ledgers.get(device)
        stored = ledger.files.get(file) if ledger else None
        if stored is None or file in ledger.removed:
            return DockError(f"{device} {file}: not a file this dock stored")
        end = self._media_end(ledger.unit, device, stored.seq)
        until = dockjournal.kept_until_ns(parse_utc(end))
        if now_ns < until:
            return RetentionNotDue(
                f"{device} {file}: not removed: it ended {end} and is kept at least "
                f"{dockjournal.RETENTION_FLOOR_DAYS} days, until {format_utc(until)}"
            )
        return None

    def _removal_ledger(self) -> tuple[int, dict[str, dockjournal.DeviceLedger]]:
        """The dock journal's size and ledger, read again only when the journal grew since
        (a purge removes many files: one read of a year's journal, not one per file)."""
        size = self.journal.path.stat().st_size  # type: ignore[union-attr]
        cached = getattr(self, "_removal_cache", None)
        if cached is not None and cached[0] == size:
            return cached
        self._removal_cache = (size, self._ledger())
        return self._removal_cache

    def _media_end(self, unit: str, device: str, seq: int) -> str:
        """When the media bound by ``device``'s record ``seq`` ended, by its signed record
        in this store (cached per device; a journal only grows)."""
        cache: dict[str, dict[int, str]] = self.__dict__.setdefault("_media_ends", {})
        ends = cache.get(device)
        if ends is None or seq not in ends:
            ends = {
                r.seq: dockjournal.media_end_utc(r)
                for r in readable_records(self.root / unit / device / JOURNAL_NAME)
                if r.device == device
            }
            cache[device] = ends
        if seq not in ends:
            raise DockError(f"{device}: the store holds no record {seq}, which binds the file")
        return ends[seq]

    def seal_media(self, device: str, file: str, sealed: str, authority: dict[str, Any]) -> Record:
        """Journal that stored ``file`` is now kept only as ``sealed`` (the archive wrote it,
        fsynced, beside its wrapped key), then remove the clear file, durably. The sealed
        file is hashed here, so the dock's record says what the dock saw. Idempotent: a
        file already recorded sealed just loses its clear copy (a seal cut short)."""
        self._require_journal()
        ledger = self.ledger(device)
        stored = ledger.files.get(file) if ledger else None
        if stored is None or file in ledger.removed:
            raise DockError(f"{device} {file}: not a file a dock stored here")
        if sealed != dockjournal.sealed_name(file):
            raise UnsafeName(f"{sealed!r:.80}: not the sealed name of {file}")
        folder = self.root / ledger.unit / device
        with self.device_lock(device, wait_s=30.0):
            record = ledger.sealed.get(file)
            made = None
            if record is None:
                digest, size = hashlib.sha256(), 0
                with open(folder / sealed, "rb", buffering=0) as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                body = dockjournal.sealed_body(
                    device,
                    ledger.unit,
                    stored.seq,
                    file,
                    stored.size,
                    stored.sha256,
                    (sealed, size, digest.hexdigest()),
                    authority,
                )
                made = self.journal.append("sealed", body)  # durable before the unlink
            try:
                os.unlink(folder / file)
            except FileNotFoundError:
                pass
            fsync_dir((folder / file).parent)
        return made or self._sealed_record(device, file)

    def _sealed_record(self, device: str, file: str) -> Record:
        for record in self.journal.records() if self.journal else []:
            if record.kind == "sealed" and record.body.get("device") == device:
                if record.body.get("file") == file:
                    return record
        raise DockError(f"{device} {file}: no sealed record")

    def ledger(self, device: str) -> dockjournal.DeviceLedger | None:
        """What the dock journals say the store holds for ``device`` (read-only stores
        too: every dock journal in the store is read; :func:`store_ledger`)."""
        return store_ledger(self.root, device)

    def device_record(self, device: str, seq: int) -> Record:
        """Record ``seq`` of ``device``'s journal as this store holds it."""
        for _unit, dev, folder in self.device_folders():
            if dev != device:
                continue
            for record in readable_records(folder / JOURNAL_NAME):
                if record.seq == seq:
                    return record
            raise DockError(f"{device}: the store holds no record {seq} of its journal")
        raise DockError(f"{device}: no such device in this store")

    def relabel(self, record: Record, procedure: str, was: str, moment: str, by: str, why: str):
        """Journal that ``record`` (a device's marker) names ``moment``, not ``was``; the
        device's record stays as it is."""
        self._require_journal()
        return self.journal.append(  # type: ignore[union-attr]
            "relabel",
            dockjournal.relabel_body(
                record.device, record.seq, record.hash, procedure, was, moment, by, why
            ),
        )

    def relabels(self) -> dict[tuple[str, int], list[dockjournal.Relabel]]:
        """Every relabelling in this store's dock journals, by (device, marker seq), oldest
        first."""
        found: dict[tuple[str, int], list[dockjournal.Relabel]] = {}
        for _, folder, _dock in dock_journal_folders(self.root):
            path = folder / JOURNAL_NAME
            if not path.exists():
                continue
            for key, made in dockjournal.relabels(records_of_kind(path, "relabel")).items():
                found.setdefault(key, []).extend(made)
        for made in found.values():
            made.sort(key=lambda r: (r.utc, r.dock, r.dock_seq))
        return found

    def _ledger(self) -> dict[str, dockjournal.DeviceLedger]:
        return dockjournal.build_ledger(self.journal.records()) if self.journal else {}

    # -- recovery ---------------------------------------------------------------------
    def _unit_dirs(self) -> list[Path]:
        """Unit folders (not the working space or the dock journals, which start . or _)."""
        return sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
        )

    def device_folders(self) -> list[tuple[str, str, Path]]:
        """``(unit, device, folder)`` for every device folder in the store."""
        found = []
        for unit_dir in self._unit_dirs():
            for dev_dir in sorted(p for p in unit_dir.iterdir() if p.is_dir()):
                if (dev_dir / JOURNAL_NAME).exists() or (dev_dir / "media").exists():
                    found.append((unit_dir.name, dev_dir.name, dev_dir))
        return found

    def reconcile(self) -> list[str]:
        """Make index and files agree with the store's journals (the truth) after a crash.

        A torn journal line (the dock died mid-append, before any receipt) is cut off;
        media files no journal line names go back to ``.partial`` so a re-dock resumes
        them; index rows are corrected; what a removal cut short left (the clear, sealed or
        key file of media the dock journal records removed) is removed. Returns what was
        done, one line per action.
        """
        actions: list[str] = []
        registry = self.registry()
        ledgers = self._ledger()
        for unit, device, folder in self.device_folders():
            try:
                with self.device_lock(device):
                    self._reconcile_device(unit, device, folder, registry, actions)
                    self._catch_up_journal(device, folder, ledgers.get(device), actions)
            except DockError:
                actions.append(f"{device}: being offloaded by a bay now; left alone")
        if self.journal is not None:
            actions += self.finish_removals()
        for unit_dir in self._unit_dirs():
            for dev_dir in sorted(p for p in unit_dir.iterdir() if p.is_dir()):
                if _remove_empty_tree(dev_dir):
                    actions.append(
                        f"{dev_dir.name}: removed the empty folder an interrupted docking left"
                    )
        for action in actions:
            _log.warning("reconcile: %s", action)
        return actions

    def _catch_up_journal(
        self, device: str, folder: Path, ledger: dockjournal.DeviceLedger | None, actions: list[str]
    ) -> None:
        """Records made durable in the store just before a crash, before the dock journal
        said so: journal them now (their files were verified before they were placed)."""
        journal = folder / JOURNAL_NAME
        if self.journal is None or not journal.exists():
            return
        upto = ledger.upto[0] if ledger and ledger.upto else -1
        records = [Record.from_bytes(line) for _, line in scan_journal(journal).lines if line]
        new = [r for r in records if r.seq > upto]
        if new:
            self._log_stored(DeviceEntry(device, "0" * 64), folder, new)
            actions.append(
                f"{device}: the dock journal now records seq {new[0].seq}.."
                f"{new[-1].seq}, already in the store"
            )

    def _reconcile_device(
        self, unit: str, device: str, folder: Path, registry: Registry, actions: list[str]
    ) -> None:
        journal = folder / JOURNAL_NAME
        named: dict[str, Record] = {}
        records: list[Record] = []
        if journal.exists():
            scan = scan_journal(journal)
            if scan.torn is not None:
                with open(journal, "r+b") as f:
                    f.truncate(scan.torn[0])
                    os.fsync(f.fileno())
                actions.append(f"{device}: cut a torn store journal line at byte {scan.torn[0]}")
            records = [Record.from_bytes(line) for _, line in scan.lines if line]
            if not records and journal.stat().st_size == 0:
                journal.unlink()  # created by a first docking that died before its first line
                fsync_dir(folder)
                actions.append(f"{device}: removed an empty store journal")
            for r in records:
                if r.media is not None:
                    named[r.media[0]] = r
        media_root = folder / "media"
        if media_root.exists():
            for path in sorted(p for p in media_root.rglob("*") if p.is_file()):
                rel = path.relative_to(folder).as_posix()
                if rel not in named:
                    dest = makedirs_durable(self.root / PARTIAL_DIR / device, DIR_MODE) / (
                        rel.replace("/", "__") + ".part"
                    )
                    os.replace(path, dest)
                    fsync_dir(path.parent)
                    actions.append(f"{device}: {rel} is not journaled yet; kept for resume")
        entry = registry.get(device) or DeviceEntry(device, "0" * 64, "", unit)
        statements: list[tuple[str, tuple]] = [
            (
                "UPDATE media SET stored_utc=NULL WHERE device=? AND stored_utc IS NOT NULL"
                " AND seq > ?",
                (device, records[-1].seq if records else -1),
            )
        ]
        if records:
            last = records[-1]
            statements.append(
                (
                    "INSERT INTO heads(device, unit, seq, hash, utc) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash",
                    (device, unit, last.seq, last.hash, self.now_utc()),
                )
            )
        else:
            statements.append(("DELETE FROM heads WHERE device=?", (device,)))
        for r in named.values():
            path = folder / r.media[0]
            if not path.exists():
                continue  # absent under a 'wiped' record on the camera
            mtime = format_utc(path.stat().st_mtime_ns)
            statements.append(
                (
                    _UPSERT_MEDIA,
                    (device, r.seq, r.kind, unit, entry.officer, *r.media, closed_utc(r), mtime),
                )
            )
        self.index.transaction(statements)

    def close(self) -> None:
        self.index.close()
