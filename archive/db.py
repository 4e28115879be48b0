"""The archive's database: SQLite beside the dock store by default, PostgreSQL by URL.

:func:`open_database` makes the engine and brings the schema to the newest Alembic
revision, so a new archive and an older one are handled by the same path. SQLite runs in
WAL mode with ``synchronous=FULL`` (a commit is on disk when it returns: the database holds
the case files' references to evidence) and takes its write lock at ``BEGIN`` so two
commands never interleave a read-then-write.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .exc import ArchiveError

_log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
DB_NAME = "archive.sqlite"


def default_url(folder: str | Path) -> str:
    """SQLite in the archive's folder."""
    return f"sqlite:///{Path(folder) / DB_NAME}"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (the driver we install), not psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
        raise ArchiveError(
            f"database {url.split('://', 1)[0]!r}: use sqlite:///PATH or postgresql://..."
        )
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: sa.Engine) -> str:
    """Upgrade to the newest revision (a no-op when there already); the revision."""
    with engine.begin() as conn:
        cfg = alembic_config(conn)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            _log.info("archive database: migrating from %s to %s", current or "empty", head)
            command.upgrade(cfg, "head")
    return head


def open_database(url: str) -> sa.Engine:
    """An engine on an up-to-date schema; one-line errors for a server that is not there."""
    engine = make_engine(url)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ArchiveError(f"cannot open the archive database: {reason}") from None
    return engine
