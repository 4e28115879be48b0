"""The dock's SQLite index: what each store folder holds, when, and what was flagged.

The store's journals and media are the truth; the index is derived data. WAL mode with
``synchronous=FULL``: a committed row survives a power cut. One connection per process,
serialised by a lock, shared by the bay workers (rows are small; the media bytes never
pass through SQLite).

A damaged index (a bad header, a truncated file, an overwritten page) must never stop the
dock. It is found by ``PRAGMA quick_check`` when the index is opened and by SQLite's
``SQLITE_CORRUPT``/``SQLITE_NOTADB`` errors at use. Either way the damaged file is moved
aside (kept, timestamped, for whoever investigates), a new index is rebuilt from the
store's device journals and the dock journals (:func:`rebuild_statements`), and the
statement that met the damage is run again. Service pauses only for the rebuild: it runs
under this process's lock and a ``flock`` that other dock processes on the same store
(``bay`` processes, ``report``) take before they repair, and every process notices a
replaced file (another inode at the path) before its next statement and reopens it.
Each repair is logged and written to ``<store>/.status/index-repair.json``, which
``bodycam-dock status`` shows.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evidence.clock import format_utc, parse_utc
from evidence.dockjournal import DOCK_JOURNALS_DIR
from evidence.exc import EvidenceError
from evidence.journal import JOURNAL_NAME, scan_journal
from evidence.record import Record

from .exc import DockError

_log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    device TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    unit TEXT NOT NULL, officer TEXT NOT NULL, file TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    closed_utc TEXT NOT NULL, stored_utc TEXT,
    PRIMARY KEY (device, seq));
CREATE TABLE IF NOT EXISTS heads (
    device TEXT PRIMARY KEY, unit TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
    utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dockings (
    id INTEGER PRIMARY KEY, device TEXT, bay TEXT NOT NULL, started_utc TEXT NOT NULL,
    ended_utc TEXT, camera_head_seq INTEGER, clock_offset_ns INTEGER,
    records INTEGER DEFAULT 0, media INTEGER DEFAULT 0, bytes INTEGER DEFAULT 0,
    receipt_upto INTEGER, outcome TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS flags (
    id INTEGER PRIMARY KEY, utc TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS status_heads (
    device TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, utc TEXT NOT NULL,
    pending_since TEXT);
CREATE TABLE IF NOT EXISTS flag_alerts (
    flag_id INTEGER PRIMARY KEY, sent_utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    device TEXT NOT NULL, level TEXT NOT NULL, since_utc TEXT NOT NULL, sent_utc TEXT NOT NULL,
    PRIMARY KEY (device, level, since_utc));
"""
TABLES = ("media", "heads", "dockings", "flags", "status_heads", "flag_alerts", "alerts")
LOCK_DIR = ".locks"  # as dock.store's
REPAIR_STATUS = Path(".status") / "index-repair.json"
DAMAGED_INFIX = ".damaged-"
# Flags older than this when the index is rebuilt were alerted before the damage (the
# deadline watcher sends new flags every check, 60 s by default); newer ones are sent again.
FLAG_ALERTED_AFTER_S = 600
BUSY_TIMEOUT_S = 60.0  # another process may be rebuilding: wait for it, do not fail
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class IndexDamaged(DockError):
    """The index was damaged and could not be rebuilt (the reason says why)."""


_abandoned: list[sqlite3.Connection] = []


def _abandon(db: sqlite3.Connection) -> None:
    """Never close a connection to a damaged or replaced file. SQLite's last close
    checkpoints the WAL into the database and then deletes ``<path>-wal`` and ``-shm``
    *by name*: after the file was moved aside those names belong to the new index, whose
    committed rows would be lost ("How To Corrupt An SQLite Database File", 2.4). The
    connection is kept, and its reference count raised so that not even the interpreter's
    shutdown closes it; the process's exit releases its files without deleting anything.
    A few file descriptors per repair, and repairs are rare."""
    _abandoned.append(db)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(db))


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "database disk image is malformed" and "file is not a database"."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and (code & 0xFF) in _CORRUPT_CODES
    )


@dataclass(frozen=True)
class Repair:
    """What one repair did (logged, written for ``status``, printed by the CLI)."""

    utc: str
    reason: str
    kept_as: str | None  # the damaged file, moved aside (None: there was no file)
    devices: int
    media: int
    flags: int
    seconds: float

    def line(self) -> str:
        kept = f"moved aside as {Path(self.kept_as).name}" if self.kept_as else "no file to keep"
        return (
            f"index {self.reason}: {kept}; rebuilt from the store and the dock journal in "
            f"{self.seconds:.1f} s ({self.devices} device(s), {self.media} media file(s), "
            f"{self.flags} flag(s))"
        )


def read_repair(store_root: Path) -> Repair | None:
    """The last repair of the index of ``store_root`` (for ``bodycam-dock status``)."""
    try:
        return Repair(**json.loads((store_root / REPAIR_STATUS).read_text()))
    except (OSError, ValueError, TypeError):
        return None


class Index:
    """The store's index; repairs itself when damaged (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None
        self._repairing = False
        self.repairs: list[Repair] = []  # what this process repaired (newest last)
        with self._lock:
            try:
                self._open_checked()
            except sqlite3.Error as exc:  # not damage: a full disk, a folder not writable
                raise DockError(f"{self.path}: cannot open the index: {exc}") from None

    # -- opening ---------------------------------------------------------------------------
    def _connect(self) -> tuple[sqlite3.Connection, bool]:
        """Open the file at ``path``; return the connection and whether it was new (no
        table yet: a missing, empty or moved-aside index, which must be rebuilt)."""
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            db.executescript(SCHEMA)
        except BaseException as exc:
            if is_damage(exc):
                _abandon(db)
            else:
                db.close()
            raise
        st = os.stat(self.path)
        self._ident = (st.st_dev, st.st_ino)
        return db, not set(TABLES) <= names

    def _open_checked(self) -> None:
        """Open, run ``PRAGMA quick_check``, and repair what it finds."""
        try:
            db, new = self._connect()
            problem = self._quick_check(db)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            self._repair(str(exc))
            return
        if problem is not None:
            _abandon(db)
            self._repair(problem)
            return
        self._db = db
        if new:
            with self._repair_lock():
                self._rebuild_into_open("was missing or empty")

    @staticmethod
    def _quick_check(db: sqlite3.Connection) -> str | None:
        rows = [r[0] for r in db.execute("PRAGMA quick_check(5)").fetchall()]
        return None if rows == ["ok"] else "failed its check: " + "; ".join(rows)

    def _current(self) -> sqlite3.Connection:
        """The connection, reopened first if another process replaced the file."""
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._ident
        except FileNotFoundError:
            same = False
        if self._db is None or not same:
            if self._db is not None:
                _abandon(self._db)
                self._db = None
                _log.warning("index %s was replaced by another process; reopening", self.path)
            self._open_checked()
        assert self._db is not None
        return self._db

    # -- repairing -------------------------------------------------------------------------
    @contextmanager
    def _repair_lock(self) -> Iterator[None]:
        """One repair at a time across the processes of this store."""
        if self._repairing:  # re-entered by this thread (it holds self._lock too)
            yield
            return
        folder = self.path.parent / LOCK_DIR
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{self.path.name}.repair", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repairing = True
            yield
        finally:
            self._repairing = False
            os.close(fd)

    def _repair(self, reason: str, seen: tuple[int, int] | None = None) -> None:
        """Move the damaged file aside, make a new index, rebuild it (under both locks).

        ``seen``: the file that was found damaged; if the path now holds another file,
        another process repaired it already and it is only reopened."""
        if self._db is not None:
            _abandon(self._db)  # its file is kept as found, not checkpointed into
            self._db = None
        with self._repair_lock():
            try:
                st = os.stat(self.path)
                now_there: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                now_there = None
            if seen is not None and now_there != seen:
                _log.warning("index %s was already repaired by another process", self.path)
                self._open_checked()
                return
            if now_there is not None:  # opened damaged: check again, under the lock
                if seen is None and self._healthy_now():
                    self._open_checked()  # repaired meanwhile by another process
                    return
            kept = self._move_aside() if now_there is not None else None
            t0 = time.monotonic()
            try:
                db, _ = self._connect()
            except sqlite3.Error as exc:
                raise IndexDamaged(f"{self.path}: cannot make a new index: {exc}") from None
            self._db = db
            self._rebuild_into_open(f"was damaged ({reason})", kept, t0)

    def _healthy_now(self) -> bool:
        try:
            db, _ = self._connect()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                return False
            raise
        try:
            healthy = self._quick_check(db) is None
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                db.close()
                raise
            healthy = False
        if healthy:
            db.close()
        else:
            _abandon(db)
        return healthy

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        kept = self.path.with_name(f"{self.path.name}{DAMAGED_INFIX}{stamp}")
        n = 1
        while kept.exists():
            n += 1
            kept = self.path.with_name(f"{self.path.name}{DAMAGED_INFIX}{stamp}-{n}")
        for suffix in ("-wal", "-shm"):  # SQLite's side files belong to the damaged file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + suffix))
        os.replace(self.path, kept)
        _fsync_dir(self.path.parent)
        return str(kept)

    def _rebuild_into_open(
        self, reason: str, kept: str | None = None, t0: float | None = None
    ) -> None:
        t0 = time.monotonic() if t0 is None else t0
        statements, counts = rebuild_statements(self.path.parent)
        assert self._db is not None
        self._run_transaction(self._db, statements)
        repair = Repair(
            utc=format_utc(time.time_ns()),
            reason=" ".join(reason.split()),  # one line (quick_check's report has several)
            kept_as=kept,
            seconds=round(time.monotonic() - t0, 3),
            **counts,
        )
        self.repairs.append(repair)
        if kept is None and not counts["devices"] and not counts["flags"]:
            return  # a new, empty store: nothing to say
        _log.warning("%s: %s", self.path, repair.line())
        try:
            status = self.path.parent / REPAIR_STATUS
            status.parent.mkdir(exist_ok=True)
            tmp = status.with_name(f".{status.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(asdict(repair)))
            os.replace(tmp, status)
        except OSError as exc:
            _log.warning("cannot write %s: %s", REPAIR_STATUS, exc)

    # -- statements ------------------------------------------------------------------------
    def _use(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` on the connection; on damage, repair and run it once more."""
        with self._lock:
            db = self._current()
            try:
                return work(db)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                _log.warning("index %s: %s at use; repairing", self.path, exc)
                self._repair(str(exc), seen=self._ident)
            try:
                return work(self._current())
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                raise IndexDamaged(f"{self.path}: damaged again after a rebuild: {exc}") from None

    def execute(self, sql: str, args: tuple | dict = ()) -> int | None:
        """Run one statement in its own transaction; return lastrowid."""
        return self._use(lambda db: db.execute(sql, args).lastrowid)

    def transaction(self, statements: list[tuple[str, tuple]]) -> None:
        self._use(lambda db: self._run_transaction(db, statements))

    @staticmethod
    def _run_transaction(db: sqlite3.Connection, statements: list[tuple[str, tuple]]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                db.execute(sql, args)
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # a damaged file may refuse even that; the repair starts afresh
            raise
        db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return self._use(lambda db: [dict(row) for row in db.execute(sql, args).fetchall()])

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._ident
            except FileNotFoundError:
                same = False
            if same:
                self._db.close()
            else:
                _abandon(self._db)
            self._db = None


# -- rebuilding from the truth ---------------------------------------------------------------
_HEAD_UPSERT = (
    "INSERT INTO heads(device, unit, seq, hash, utc) VALUES (?,?,?,?,?) "
    "ON CONFLICT(device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash, utc=excluded.utc "
    "WHERE excluded.seq > heads.seq"
)
_MEDIA_UPSERT = (
    "INSERT INTO media(device, seq, kind, unit, officer, file, size, sha256, closed_utc,"
    " stored_utc) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(device, seq) DO UPDATE SET"
    " stored_utc=COALESCE(stored_utc, excluded.stored_utc)"
)


def _records(path: Path) -> Iterator[Record]:
    """The readable records of a journal (a torn or garbled line is skipped, not fatal:
    ``reconcile`` and the verifier deal with those; the index only needs what is there)."""
    for _, line in scan_journal(path).lines:
        if line:
            try:
                yield Record.from_bytes(line)
            except EvidenceError:
                continue


def _officers(store_root: Path) -> dict[str, str]:
    from evidence.registry import Registry

    try:
        registry = Registry.load_or_empty(store_root / "registry.json")
    except (EvidenceError, OSError, ValueError):
        return {}
    return {e.device_id: e.officer for e in registry}


def rebuild_statements(store_root: Path) -> tuple[list[tuple[str, tuple]], dict[str, int]]:
    """The rows a new index needs, read from the store: heads and media from each device's
    journal in the store (a file counts as stored when it is in place), stored times and
    flags and dockings from the dock journals. Lost with the damaged file, and filled in
    again by the next docking or status message: recordings seen on a cable but not yet
    stored, and the MQTT status heads. Pure reading: nothing in the store is changed."""
    now = format_utc(time.time_ns())
    stored_at: dict[tuple[str, int], str] = {}
    head_at: dict[tuple[str, int], str] = {}
    flags: list[tuple[str, str, str, str]] = []
    dockings: list[tuple] = []
    docks = store_root / DOCK_JOURNALS_DIR
    for journal in sorted(docks.glob(f"*/{JOURNAL_NAME}")) if docks.is_dir() else []:
        for r in _records(journal):
            b = r.body
            if r.kind == "stored":
                stored_at.setdefault((b.get("device"), b.get("seq")), r.utc)
            elif r.kind == "records_stored":
                head_at[(b.get("device"), b.get("upto_seq"))] = r.utc
            elif r.kind == "flag":
                flags.append((r.utc, b.get("device", ""), b.get("kind", ""), b.get("detail", "")))
            elif r.kind == "docking":
                head = b.get("camera_head") if isinstance(b.get("camera_head"), dict) else {}
                dockings.append(
                    (b.get("device"), b.get("bay", "?"), r.utc, head.get("seq"), "rebuilt")
                )
    officers = _officers(store_root)
    statements: list[tuple[str, tuple]] = []
    devices = media = 0
    for unit_dir in sorted(p for p in store_root.iterdir() if p.is_dir()):
        if unit_dir.name.startswith((".", "_")):
            continue
        for folder in sorted(p for p in unit_dir.iterdir() if p.is_dir()):
            journal = folder / JOURNAL_NAME
            if not journal.is_file():
                continue
            records = list(_records(journal))
            if not records:
                continue
            device, unit, last = folder.name, unit_dir.name, records[-1]
            devices += 1
            statements.append(
                (
                    _HEAD_UPSERT,
                    (device, unit, last.seq, last.hash, head_at.get((device, last.seq), now)),
                )
            )
            for r in records:
                if r.media is None:
                    continue
                path = folder / r.media[0]
                if not path.is_file():
                    continue  # removed under retention, or wiped on the camera before docking
                stored = stored_at.get((device, r.seq)) or format_utc(path.stat().st_mtime_ns)
                end = r.body.get("end_utc") if r.kind == "segment" else None
                closed = end if isinstance(end, str) else r.utc
                statements.append(
                    (
                        _MEDIA_UPSERT,
                        (device, r.seq, r.kind, unit, officers.get(device, ""), *r.media)
                        + (closed, stored),
                    )
                )
                media += 1
    alerted_before = time.time_ns() - FLAG_ALERTED_AFTER_S * 1_000_000_000
    for utc, device, kind, detail in sorted(flags):
        # idempotent: two processes may rebuild the same new index
        same = "utc=? AND device=? AND kind=? AND detail=?"
        statements.append(
            (
                "INSERT INTO flags(utc, device, kind, detail) SELECT ?,?,?,? "
                f"WHERE NOT EXISTS (SELECT 1 FROM flags WHERE {same})",
                (utc, device, kind, detail) * 2,
            )
        )
        if _before(utc, alerted_before):
            statements.append(
                (
                    f"INSERT OR IGNORE INTO flag_alerts(flag_id, sent_utc) "
                    f"SELECT id, ? FROM flags WHERE {same}",
                    (now, utc, device, kind, detail),
                )
            )
    for device, bay, started, head_seq, outcome in dockings:
        statements.append(
            (
                "INSERT INTO dockings(device, bay, started_utc, camera_head_seq, outcome)"
                " SELECT ?,?,?,?,? WHERE NOT EXISTS"
                " (SELECT 1 FROM dockings WHERE device IS ? AND started_utc=?)",
                (device, bay, started, head_seq, outcome, device, started),
            )
        )
    return statements, {"devices": devices, "media": media, "flags": len(flags)}


def _before(utc: str, ns: int) -> bool:
    try:
        return parse_utc(utc) < ns
    except ValueError:
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
