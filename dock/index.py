"""The dock's SQLite index: what each store folder holds, when, and what was flagged.

The store's journals and media are the truth; the index is rebuilt from them by
:meth:`dock.store.Store.reconcile` after a crash. WAL mode with ``synchronous=FULL``:
a committed row survives a power cut. One connection, serialised by a lock, shared by
the bay workers (rows are small; the media bytes never pass through SQLite).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

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


class Index:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def execute(self, sql: str, args: tuple | dict = ()) -> int | None:
        """Run one statement in its own transaction; return lastrowid."""
        with self._lock:
            cur = self._db.execute(sql, args)
            return cur.lastrowid

    def transaction(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, args).fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
