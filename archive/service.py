"""The archive: its folder, database, key and audit log, and every action on them.

Every action of the command line (and of the web console to come) is a method here that
takes the acting :class:`Session`, asks :meth:`Archive.require` (the one access check:
:func:`archive.policy.decide`, with each refusal logged and audited), does its database
work in one transaction, and appends its audit entry before that transaction commits:
an entry may name an action whose commit then failed, never the reverse.

Folder (``<archive>``, default ``/var/lib/bodycam/archive``, beside the dock store)::

    archive.toml        the store, the database URL and the archive's id (written by init),
                        [retention] categories, dock_config (the dock's dock.toml)
    archive.sqlite      the default database (or a postgresql:// URL in archive.toml)
    key/archive.key     the archive's Ed25519 key (0600): signs the audit log
    key/master.key      the master key of encrypted documents, unless a systemd credential
    audit/              the audit log (journal.jsonl, archive.json): bodycam-verify reads it
    documents/<sha256>  written documents of case files, by content hash (public, internal)
    documents/enc-<id>  encrypted documents of cases above internal (archive.vault)
    registry.json       a copy of the store's unit-signed registry, for bodycam-verify
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evidence.clock import Clock, SystemClock, format_utc
from evidence.identity import DeviceIdentity, check_device_id
from evidence.storage import atomic_write_bytes, makedirs_durable

from . import users as pw
from .audit import AuditLog
from .auditread import AuditReading
from .cases import CaseFiles
from .copies import CopyRequests
from .db import default_url, open_database
from .documents import Documents
from .exc import ArchiveError, LoginFailed, NotFound, Refused
from .listing import Listing
from .oversight import Oversight
from .policy import Actor, Material, decide
from .retention import Retention, load_rules
from .schema import meta, users
from .sealing import Sealing
from .session import SYSTEM, Session
from .timeline import Timeline
from .vault import create_master_key, master_key_path

_log = logging.getLogger(__name__)

CONFIG_NAME = "archive.toml"
KEY_PATH = "key/archive.key"
DOCUMENTS = "documents"
REGISTRY_NAME = "registry.json"
DEFAULT_DIR = "/var/lib/bodycam/archive"


def check_device_id_text(archive_id: str) -> str:
    """An archive id is a device id (it is the audit log's ``device``)."""
    try:
        return check_device_id(archive_id)
    except ValueError as exc:
        raise ArchiveError(str(exc).replace("device id", "archive id")) from None


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Archive(
    CaseFiles,
    CopyRequests,
    Documents,
    Listing,
    Oversight,
    Retention,
    Sealing,
    Timeline,
    AuditReading,
):
    """One archive, open. Use :meth:`create` once, then :meth:`open`."""

    def __init__(self, folder: str | os.PathLike, *, clock: Clock | None = None) -> None:
        self.folder = Path(folder)
        self.clock = clock or SystemClock()
        cfg_path = self.folder / CONFIG_NAME
        try:
            cfg = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArchiveError(
                f"{self.folder}: not an archive (no {CONFIG_NAME}); make one with "
                "bodycam-archive init"
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{cfg_path}: not readable TOML: {exc}") from None
        unknown = set(cfg) - {
            *("store", "database", "archive_id", "key", "master_key"),
            *("retention", "dock_config"),
        }
        if unknown:
            raise ArchiveError(f"{cfg_path}: unknown keys {sorted(unknown)}")
        self.store_root = Path(cfg.get("store", ""))
        self.url = cfg.get("database") or default_url(self.folder)
        self.master_key_path = master_key_path(self.folder, cfg.get("master_key", ""))
        self.retention_rules = load_rules(cfg.get("retention"), str(cfg_path))
        """Retention by category (``[retention]``; archive.retention), checked at opening."""
        self.dock_config = str(cfg.get("dock_config", ""))
        """The dock's dock.toml: its key and trust, for removals under retention
        and the ``sealed`` records of sealing (archive.sealing)."""
        key_path = Path(cfg.get("key") or self.folder / KEY_PATH)
        self.identity = DeviceIdentity.load(key_path)
        """The archive's signing identity (its id is the audit log's ``device``)."""
        if self.identity.device_id != cfg.get("archive_id", self.identity.device_id):
            raise ArchiveError(f"{key_path}: the key is not archive {cfg['archive_id']!r}'s")
        self.engine = open_database(self.url)
        self.audit = AuditLog(self.folder, self.identity, self.clock)
        self._check_audit_head()
        self.refresh_registry()
        self.claim_store()

    def audit_head(self) -> tuple[int, str] | None:
        """The audit log's head as the database last recorded it: an account of the log
        kept apart from it (``bodycam-verify --expect-head ARCHIVE:SEQ:HASH``)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "audit_head")).scalar()
        if not value:
            return None
        seq, _, digest = value.partition(":")
        return int(seq), digest

    def _check_audit_head(self) -> None:
        """Refuse to work on an audit log that lost or changed the entries the database
        saw: the database's head is read first, and the log only grows, so an honest log
        holds that very entry (it may be ahead: an action whose commit failed)."""
        from evidence.journal import scan_journal
        from evidence.record import Record

        head = self.audit_head()
        if head is None:
            return
        seq, digest = head
        lines = scan_journal(self.audit.path).lines if self.audit.path.exists() else []
        found = None
        if seq < len(lines):
            try:
                found = Record.from_bytes(lines[seq][1])
            except ValueError:
                found = None
        if found is None or found.seq != seq or found.hash != digest:
            raise ArchiveError(
                f"{self.audit.path}: the audit log no longer holds entry {seq} as the database "
                "recorded it (entries removed or altered): check it with bodycam-verify "
                f"--expect-head {self.identity.device_id}:{seq}:{digest}"
            )

    # -- making and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        store: str | os.PathLike,
        archive_id: str,
        admin: str,
        password: str,
        *,
        database: str = "",
        clock: Clock | None = None,
    ) -> Archive:
        """Make a new archive with its key, schema, audit log and first administrator."""
        folder = Path(folder)
        if (folder / CONFIG_NAME).exists():
            raise ArchiveError(f"{folder}: an archive is already here; not replacing it")
        pw.check_name(admin)
        check_device_id_text(archive_id)
        if not (Path(store) / "index.sqlite").exists():
            raise ArchiveError(f"{store}: not a dock store (no index.sqlite)")
        hashed = pw.hash_password(password)
        makedirs_durable(folder, 0o750)
        # The database first: an unreachable server or a database already in use leaves
        # no half-made archive behind (no key, no archive.toml).
        engine = open_database(database or default_url(folder))
        try:
            with engine.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar():
                    raise ArchiveError("the database already holds an archive's users")
        finally:
            engine.dispose()
        DeviceIdentity.create(folder / KEY_PATH, archive_id)
        master = master_key_path(folder)
        if not master.exists():
            create_master_key(master)
        os.chmod(folder / KEY_PATH.split("/")[0], 0o700)
        lines = [
            "# bodycam-archive: written by `bodycam-archive init`.",
            f"archive_id = {_toml_str(archive_id)}",
            f"store = {_toml_str(str(Path(store).resolve()))}",
            f"database = {_toml_str(database)}",
        ]
        atomic_write_bytes(folder / CONFIG_NAME, ("\n".join(lines) + "\n").encode(), 0o640)
        archive = cls(folder, clock=clock)
        with archive.engine.begin() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar():
                raise ArchiveError(f"{archive.url}: the database already holds users")
            conn.execute(meta.insert().values(key="archive_id", value=archive_id))
            archive._insert_user(conn, admin, "administrator", hashed, "", None)
            archive._audit(
                conn, "archive", SYSTEM, archive_id, {"event": "created", "admin": admin}
            )
        _log.info("archive %s made in %s", archive_id, folder)
        return archive

    @classmethod
    def open(cls, folder: str | os.PathLike, *, clock: Clock | None = None) -> Archive:
        return cls(folder, clock=clock)

    def close(self) -> None:
        self.audit.close()
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_utc(self) -> str:
        return format_utc(self.clock.time_ns())

    def refresh_registry(self) -> None:
        """Keep a copy of the store's registry beside the audit log, for bodycam-verify
        (it is only used to check; trust still comes from the unit key the user names)."""
        source = self.store_root / REGISTRY_NAME
        target = self.folder / REGISTRY_NAME
        try:
            data = source.read_bytes()
        except OSError:
            return
        try:
            if target.read_bytes() == data:
                return
        except OSError:
            pass
        atomic_write_bytes(target, data, 0o644)

    # -- the one access check, and the audit ---------------------------------------------

    def _audit(self, conn: sa.Connection, kind: str, session: Session, target: str, detail: Any):
        record = self.audit.append(kind, session.name, session.role, target, detail)
        head = f"{record.seq}:{record.hash}"
        done = conn.execute(meta.update().where(meta.c.key == "audit_head").values(value=head))
        if not done.rowcount:
            conn.execute(meta.insert().values(key="audit_head", value=head))
        return record

    def audit_now(self, kind: str, session: Session, target: str, detail: Any = None) -> None:
        """An audit entry in a transaction of its own (refusals, failed logins, views)."""
        with self.engine.begin() as conn:
            self._audit(conn, kind, session, target, detail)

    def require(self, session: Session, action: str, material: Material | None = None) -> None:
        """Raise :class:`Refused` (logged and audited) unless the policy allows it."""
        decision = decide(session.actor, action, material)
        if decision.allowed:
            return
        _log.warning("refused: %s", decision.reason)
        target = material.label if material is not None else ""
        self.audit_now(
            "refusal",
            session,
            target,
            {
                "action": action,
                "reason": decision.reason,
                "classification": material.classification if material else "",
            },
        )
        raise Refused(f"refused: {decision.reason}")

    # -- people --------------------------------------------------------------------------

    def _insert_user(self, conn, name: str, role: str, hashed: str, officer: str, totp: str | None):
        conn.execute(
            users.insert().values(
                name=name,
                role=role,
                officer=officer,
                password_hash=hashed,
                totp_secret=totp,
                totp_last_step=0,
                active=True,
                created_utc=self.now_utc(),
            )
        )

    def login(
        self, name: str, password: str, totp: str | None = None, *, client: str = ""
    ) -> Session:
        """Check a password (and the TOTP code, for a user who has one); audited, with the
        client's address when there is one (the web console's logins)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
        ok = pw.password_matches(row["password_hash"] if row else None, password)
        why = "" if ok else "wrong name or password"
        if ok and not row["active"]:
            ok, why = False, "the user is deactivated"
        step = None
        if ok and row["totp_secret"]:
            step = pw.totp_step(
                row["totp_secret"], totp or "", self.clock.time_ns() / 1e9, row["totp_last_step"]
            )
            if step is None:
                ok, why = False, "a second-factor code is missing, wrong or already used"
        who = Session(
            Actor(name[:64], row["role"] if row else "unknown", row["officer"] if row else "")
        )
        if not ok:
            _log.warning("failed login for %r: %s", name[:64], why)
            detail = {"reason": why} | ({"client": client} if client else {})
            self.audit_now("login_failed", who, name[:64], detail)
            raise LoginFailed(f"login failed for {name[:64]!r}: wrong name, password or code")
        with self.engine.begin() as conn:
            if step is not None:
                used = conn.execute(
                    users.update()
                    .where(users.c.name == name, users.c.totp_last_step < step)
                    .values(totp_last_step=step)
                )
                if not used.rowcount:  # another login took this code first
                    why = {"reason": "code already used"} | ({"client": client} if client else {})
                    self._audit(conn, "login_failed", who, name, why)
                    raise LoginFailed(f"login failed for {name!r}: wrong name, password or code")
            detail = {"second_factor": step is not None} | ({"client": client} if client else {})
            self._audit(conn, "login", who, name, detail)
        return who

    def add_user(
        self,
        session: Session,
        name: str,
        role: str,
        password: str,
        *,
        officer: str = "",
        totp: bool = False,
    ) -> str | None:
        """Add a user (administrators only); the TOTP secret when ``totp`` (shown once)."""
        self.require(session, "user_manage")
        pw.check_name(name)
        pw.check_role(role)
        if role == "officer" and not officer:
            raise ArchiveError("an officer needs --officer BADGE (as the registry names them)")
        secret = pw.new_totp_secret() if totp else None
        hashed = pw.hash_password(password)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
                raise ArchiveError(f"user {name!r} already exists")
            self._insert_user(conn, name, role, hashed, officer[:64], secret)
            self._audit(
                conn,
                "user",
                session,
                name,
                {"event": "added", "role": role, "officer": officer, "second_factor": totp},
            )
        return secret

    def set_password(self, session: Session, name: str, password: str) -> None:
        """A user changes their own password; an administrator anyone's. Audited."""
        if session.name != name:
            self.require(session, "user_manage")
        hashed = pw.hash_password(password)
        with self.engine.begin() as conn:
            done = conn.execute(
                users.update().where(users.c.name == name).values(password_hash=hashed)
            )
            if not done.rowcount:
                raise NotFound(f"no user {name!r}")
            self._audit(conn, "user", session, name, {"event": "password changed"})

    def set_active(self, session: Session, name: str, active: bool) -> None:
        self.require(session, "user_manage")
        with self.engine.begin() as conn:
            done = conn.execute(users.update().where(users.c.name == name).values(active=active))
            if not done.rowcount:
                raise NotFound(f"no user {name!r}")
            self._audit(
                conn, "user", session, name, {"event": "activated" if active else "deactivated"}
            )

    def list_users(self, session: Session) -> list[dict[str, Any]]:
        self.require(session, "user_manage")
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.name)).mappings().all()
        return [
            {
                "name": r["name"],
                "role": r["role"],
                "officer": r["officer"],
                "second_factor": bool(r["totp_secret"]),
                "active": bool(r["active"]),
                "created_utc": r["created_utc"],
            }
            for r in rows
        ]
