"""A real PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` in a temporary folder.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to an
unprivileged user (``postgres``, else ``nobody``) and the commands run through
``runuser``. The server listens on 127.0.0.1 on a free port with trust authentication (the
folder and the port are the test's own). Where PostgreSQL is not installed the fixture
skips, saying so; anywhere else a failure to start is an error, not a skip.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_GLOB = "/usr/lib/postgresql/*/bin"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or PATH's."""
    found = sorted(glob.glob(PG_GLOB), key=lambda p: int(Path(p).parent.name))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that runs as an unprivileged user, and that user (None: as is)."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"], user
    pytest.skip("PostgreSQL cannot run as root and there is no unprivileged user to run it")


class PgServer:
    """One running cluster; :meth:`database` makes a fresh empty database per test."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL is not installed (no initdb): PostgreSQL tests skipped")
        self.bindir = bindir
        self.prefix, user = _runner()
        self.folder = Path(tempfile.mkdtemp(prefix="bodycam-pg-"))
        self.data = self.folder / "data"
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.port = _free_port()
        self._count = 0
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c shared_buffers=16MB -c max_connections=40",
            "start",
        )
        self._watch()

    def _watch(self) -> None:
        """A watchdog that stops the server and removes its folder once this process is
        gone, however it ended (a killed test run must not leave a server behind)."""
        ctl = " ".join([*self.prefix, str(self.bindir / "pg_ctl")])
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; "
            f"{ctl} -D {self.data} -m immediate -w stop >/dev/null 2>&1; rm -rf {self.folder}"
        )
        subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.prefix, str(self.bindir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.folder, timeout=120)
        if done.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A new, empty database's SQLAlchemy URL."""
        import psycopg

        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if not self.folder.exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


_SERVER: PgServer | None = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server per test process, however many modules import this fixture (each
    import is a fixture of its own to pytest); stopped when the process exits."""
    global _SERVER
    if _SERVER is None:
        _SERVER = PgServer()
        atexit.register(_SERVER.stop)
    yield _SERVER


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The archive's database, on each backend in turn: SQLite in the test's folder, or a
    fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.sqlite'}"
    return request.getfixturevalue("pg_server").database()
