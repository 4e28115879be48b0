"""Retention by category and legal holds: when a recording may leave the dock store.

A mixin of :class:`archive.service.Archive`, over a pure decision (:func:`judge`, no I/O).
The categories (docs/archive.md, "Retention and legal hold"):

========== ================================================ ===========================
category   kept                                             applies to
========== ================================================ ===========================
routine    183 days after the recording's end (six months;  every recording of a unit
           ``[retention.categories] routine`` may lengthen) without a category
<named>    ``[retention.categories] NAME = DAYS`` (>= 183)  the units that
                                                            ``[retention.units]`` maps
case       permanently                                      a recording in any case,
                                                            open or closed
legal_hold permanently, while the hold stands               a camera's time range, or
                                                            the span of a case's
                                                            recordings on its cameras
========== ================================================ ===========================

No category may be shorter than six months (``evidence.dockjournal.RETENTION_FLOOR_DAYS``,
the floor the dock and ``bodycam-verify`` enforce too): an archive.toml that tries is
refused at opening. A purge removes each due recording through the dock store
(:meth:`dock.store.Store.remove_media`), with the dock's own key (``dock_config`` in
archive.toml names the dock's dock.toml), so the dock journal's ``removed`` record carries
the decision: rule, category, kept-until, the archive, the user and the audit entry.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evidence.clock import format_utc, parse_utc
from evidence.dockjournal import RETENTION_FLOOR_DAYS, kept_until_ns
from evidence.identity import check_device_id
from evidence.storage import atomic_write_bytes, makedirs_durable

from .exc import ArchiveError, NotFound
from .policy import Material
from .schema import cases, entries, holds, meta, recordings, removals
from .session import SYSTEM, Session

_log = logging.getLogger(__name__)

ROUTINE = "routine"
CASE = "case"
HOLD = "legal_hold"
RULE_RAN_OUT = "retention_ran_out"
STORE_MARK = ".status/archive.json"
"""Written into the dock store: ``bodycam-dock remove`` refuses in a store an archive
keeps (the archive alone sees cases and holds)."""
_DAY_NS = 86_400 * 1_000_000_000
_TEXT = 512
RETENTION_LOCK = 0x626F_6479_6361_6D01
"""PostgreSQL's advisory lock that a purge's removal and an attachment both hold."""
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,31}")


# -- the rules (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """Days per category, and the category of each unit (others: routine)."""

    categories: Mapping[str, int]
    units: Mapping[str, str]

    def category_of(self, unit: str) -> str:
        return self.units.get(unit, ROUTINE)

    def days(self, category: str) -> int:
        return self.categories[category]

    @property
    def shortest(self) -> int:
        return min(self.categories.values())


DEFAULT_RULES = Rules({ROUTINE: RETENTION_FLOOR_DAYS}, {})


def load_rules(table: Any, where: str) -> Rules:
    """The ``[retention]`` table of archive.toml, checked: every category at least six
    months, every unit mapped to a known category, no unknown key (ArchiveError)."""
    if table is None:
        return DEFAULT_RULES
    if not isinstance(table, dict):
        raise ArchiveError(f"{where}: retention must be a table")
    unknown = set(table) - {"categories", "units"}
    if unknown:
        raise ArchiveError(f"{where}: retention: unknown keys {sorted(unknown)}")
    categories = {ROUTINE: RETENTION_FLOOR_DAYS}
    for name, days in (table.get("categories") or {}).items():
        if name in (CASE, HOLD) or not _CATEGORY.fullmatch(name):
            raise ArchiveError(f"{where}: retention.categories.{name}: not a category name")
        if type(days) is not int or days < RETENTION_FLOOR_DAYS:
            raise ArchiveError(
                f"{where}: retention.categories.{name} = {days!r}: a category keeps recordings "
                f"at least {RETENTION_FLOOR_DAYS} days (six months), in whole days"
            )
        categories[name] = days
    units = {}
    for unit, category in (table.get("units") or {}).items():
        if category not in categories:
            raise ArchiveError(
                f"{where}: retention.units.{unit} = {category!r}: no such category "
                f"(known: {', '.join(sorted(categories))})"
            )
        units[unit] = category
    return Rules(categories, units)


@dataclass(frozen=True)
class Recording:
    """A recording as retention sees it (a row of the recordings index)."""

    device: str
    seq: int
    unit: str
    file: str
    sha256: str
    start_utc: str
    end_utc: str


@dataclass(frozen=True)
class HoldSpan:
    """A standing hold over one camera's recordings in ``[from_utc, to_utc)``."""

    hold: int
    device: str
    from_utc: str
    to_utc: str
    label: str

    def covers(self, rec: Recording) -> bool:
        return (
            rec.device == self.device
            and rec.start_utc < self.to_utc
            and rec.end_utc > self.from_utc
        )


@dataclass(frozen=True)
class Verdict:
    """Whether a recording may be removed now, and why (``kept_until_utc`` None: kept
    permanently)."""

    due: bool
    category: str
    kept_until_utc: str | None
    rule: str
    why: str


def judge(
    rec: Recording,
    now_ns: int,
    rules: Rules,
    in_cases: Iterable[str] = (),
    spans: Iterable[HoldSpan] = (),
) -> Verdict:
    """May ``rec`` be removed at ``now_ns``? In a case or under a hold: never; else once
    its category's days after its end have run out. Pure."""
    numbers = sorted(set(in_cases))
    if numbers:
        return Verdict(False, CASE, None, "in_case", f"in case {', '.join(numbers)}: kept")
    held = [s for s in spans if s.covers(rec)]
    if held:
        return Verdict(False, HOLD, None, HOLD, f"under {', '.join(s.label for s in held)}: kept")
    category = rules.category_of(rec.unit)
    days = rules.days(category)
    until = kept_until_ns(parse_utc(rec.end_utc), days)
    until_utc = format_utc(until)
    if now_ns >= until:
        why = f"{category}: ended {rec.end_utc}, kept {days} days until {until_utc}"
        return Verdict(True, category, until_utc, RULE_RAN_OUT, why)
    return Verdict(False, category, until_utc, "kept", f"{category}: kept until {until_utc}")


# -- the archive's side -----------------------------------------------------------------


def lock_retention(conn: sa.Connection) -> None:
    """Serialise, for this transaction, a purge's removal of a recording with attachments
    (an attached recording is kept permanently): PostgreSQL takes a transaction-scoped
    advisory lock, first, before any other lock (so two never wait on each other);
    SQLite's write lock is taken at BEGIN already (archive.db)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": RETENTION_LOCK})


def gone_from_store(conn: sa.Connection, store_root: Path, refs: list[Any]) -> list[Any]:
    """Of ``refs``, those a purge removed (the ``removals`` table) or no longer in the store
    (neither clear nor sealed: a removal the archive has not recorded yet). Asked under
    :func:`lock_retention`, so an attachment never holds a removed recording."""
    from .refs import _present

    devices = sorted({r.device for r in refs})
    removed = set(
        conn.execute(
            sa.select(removals.c.device, removals.c.seq).where(removals.c.device.in_(devices))
        ).all()
    )
    return [r for r in refs if (r.device, r.seq) in removed or not _present(store_root, r)]


def _rec(row: Any) -> Recording:
    return Recording(
        row["device"],
        row["seq"],
        row["unit"],
        row["file"],
        row["sha256"],
        row["start_utc"],
        row["end_utc"],
    )


class Retention:
    """Legal holds and retention (mixed into :class:`archive.service.Archive`)."""

    def claim_store(self, store: Any = None) -> None:
        """Say in the dock store that this archive keeps it, so ``bodycam-dock remove``
        refuses and points here: a signed ``archive_keeps`` record in the dock journal (the
        dock's key, from ``dock_config``; journaled once, and where it is kept in the
        archive's own database, ``meta.store_claim``, audited), and
        ``.status/archive.json``, which says so too for the dock and caches the record's
        seq (deleting or forging it changes nothing: the archive never reads it back).
        Without a usable ``dock_config`` only the file is written, and the record waits
        for an opening, a purge or a seal that has the key (``store``: the dock store such
        a one opened with it); a failure is logged, never raised."""
        if not self.store_root.is_dir():
            return
        claimed = self._store_claim()
        if claimed is None and (store is not None or self.dock_config):
            made = self._journal_claim(store)
            if made is not None:
                claimed = (made.device, made.seq)
                self._record_claim(made)
        self._claimed = claimed is not None
        mark = self.store_root / STORE_MARK
        doc: dict[str, Any] = {
            "archive_id": self.identity.device_id,
            "folder": str(self.folder.resolve()),
        }
        if claimed is not None:
            doc |= {"dock": claimed[0], "dock_seq": claimed[1]}
        try:
            current = json.loads(mark.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if isinstance(current, dict) and current.get("archive_id") not in (
            None,
            self.identity.device_id,
        ):
            _log.warning("%s names archive %s, not this one", mark, current.get("archive_id"))
            return
        if current == doc:
            return
        try:
            makedirs_durable(mark.parent, 0o750)
            atomic_write_bytes(mark, json.dumps(doc, sort_keys=True).encode() + b"\n", 0o640)
        except OSError as exc:
            _log.warning("cannot mark the store as kept by this archive: %s", exc)

    def _store_claim(self) -> tuple[str, int] | None:
        """Where this archive's ``archive_keeps`` record is, as its database recorded it."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "store_claim")
            ).scalar()
        if not value:
            return None
        dock, _, seq = value.rpartition(":")
        return dock, int(seq)

    def _record_claim(self, made: Any) -> None:
        value = f"{made.device}:{made.seq}"
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    meta.update().where(meta.c.key == "store_claim").values(value=value)
                )
                if not done.rowcount:
                    conn.execute(meta.insert().values(key="store_claim", value=value))
                self._audit(
                    conn,
                    "archive",
                    SYSTEM,
                    self.identity.device_id,
                    {"event": "keeps the store", "dock": made.device, "dock_seq": made.seq},
                )
        except sa.exc.IntegrityError:  # another opening recorded it at the same moment
            pass

    def _journal_claim(self, store: Any = None):
        """This archive's ``archive_keeps`` record in the store's dock journals: found, or
        journaled now with the dock's key (``store``'s, else ``dock_config``'s); None
        (logged) when the key cannot be had."""
        from dock.exc import DockError
        from dock.store import Store
        from evidence.dockjournal import archive_keeps_body, archives_keeping
        from evidence.journal import JOURNAL_NAME, records_of_kind
        from evidence.verify_store import dock_journal_folders

        if store is None:
            try:
                identity, keys = self._dock_key()
            except (ArchiveError, DockError, OSError) as exc:
                _log.warning("cannot journal in the dock store that this archive keeps it: %s", exc)
                return None
        for _, folder, _dock in dock_journal_folders(self.store_root):
            if (folder / JOURNAL_NAME).exists():
                found = archives_keeping(records_of_kind(folder / JOURNAL_NAME, "archive_keeps"))
                if self.identity.device_id in found:
                    return found[self.identity.device_id]
        body = archive_keeps_body(
            self.identity.device_id, self.identity.public_key_hex, str(self.folder.resolve())
        )
        if store is not None:
            return store.journal.append("archive_keeps", body)
        try:
            store = Store(self.store_root, self.clock, identity=identity, unit_keys=keys)
        except (DockError, OSError) as exc:
            _log.warning("cannot journal in the dock store that this archive keeps it: %s", exc)
            return None
        try:
            return store.journal.append("archive_keeps", body)
        finally:
            store.close()

    # -- reading what keeps a recording ------------------------------------------------

    def _spans(self, conn: sa.Connection, device: str | None = None) -> list[HoldSpan]:
        q = sa.select(holds).where(holds.c.released_utc.is_(None))
        found = []
        for h in conn.execute(q).mappings():
            if h["kind"] == "range":
                if device is None or h["device"] == device:
                    label = f"hold {h['id']} ({h['device']} {h['from_utc']}..{h['to_utc']})"
                    found.append(HoldSpan(h["id"], h["device"], h["from_utc"], h["to_utc"], label))
                continue
            q = (
                sa.select(
                    entries.c.device,
                    sa.func.min(entries.c.start_utc),
                    sa.func.max(entries.c.end_utc),
                    sa.func.min(cases.c.number),
                )
                .join(cases, cases.c.id == entries.c.case_id)
                .where(entries.c.case_id == h["case_id"], entries.c.kind == "recording")
                .group_by(entries.c.device)
            )
            if device is not None:
                q = q.where(entries.c.device == device)
            for dev, first, last, number in conn.execute(q):
                label = f"hold {h['id']} (case {number})"
                found.append(HoldSpan(h["id"], dev, first, last, label))
        return found

    def _memberships(
        self, conn: sa.Connection, device: str | None = None, seq: int | None = None
    ) -> dict[tuple[str, int], list[str]]:
        q = (
            sa.select(entries.c.device, entries.c.seq, cases.c.number)
            .join(cases, cases.c.id == entries.c.case_id)
            .where(entries.c.kind == "recording")
        )
        if device is not None:
            q = q.where(entries.c.device == device)
        if seq is not None:
            q = q.where(entries.c.seq == seq)
        found: dict[tuple[str, int], list[str]] = {}
        for dev, s, number in conn.execute(q):
            found.setdefault((dev, s), []).append(number)
        return found

    def _candidates(
        self, conn: sa.Connection, now_ns: int, device: str | None, before: str | None
    ) -> list[Recording]:
        """Recordings still in the store whose shortest retention may have run out."""
        latest_end = format_utc(now_ns - self.retention_rules.shortest * _DAY_NS)
        q = (
            sa.select(recordings)
            .outerjoin(
                removals,
                sa.and_(
                    removals.c.device == recordings.c.device, removals.c.seq == recordings.c.seq
                ),
            )
            .where(removals.c.seq.is_(None), recordings.c.end_utc <= latest_end)
            .order_by(recordings.c.end_utc, recordings.c.device, recordings.c.seq)
        )
        if device is not None:
            q = q.where(recordings.c.device == device)
        if before is not None:
            q = q.where(recordings.c.end_utc < before)
        return [_rec(r) for r in conn.execute(q).mappings()]

    def _due(
        self, conn: sa.Connection, now_ns: int, device: str | None, before: str | None
    ) -> list[tuple[Recording, Verdict]]:
        found = []
        rows = self._candidates(conn, now_ns, device, before)
        if not rows:
            return found
        member = self._memberships(conn, device)
        spans = self._spans(conn, device)
        by_device: dict[str, list[HoldSpan]] = {}
        for s in spans:
            by_device.setdefault(s.device, []).append(s)
        for rec in rows:
            v = judge(
                rec,
                now_ns,
                self.retention_rules,
                member.get((rec.device, rec.seq), ()),
                by_device.get(rec.device, ()),
            )
            if v.due:
                found.append((rec, v))
        return found

    @staticmethod
    def _filters(device: str | None, before: str | None) -> tuple[str | None, str | None]:
        from .cases import _utc

        if device is not None:
            try:
                check_device_id(device)
            except ValueError as exc:
                raise ArchiveError(f"--device: {exc}") from None
        return device, (_utc(before, "--before") if before else None)

    # -- what the dock removed ---------------------------------------------------------

    def reconcile_removals(self) -> list[dict[str, Any]]:
        """Record what the store's dock journals say was removed and the ``removals`` table
        does not: a purge killed after the dock journaled its removal and before the
        archive's commit (the dock's record names that purge's audit entry), or a removal
        made by another way. Each is a ``retention`` audit entry (event ``reconciled``) in
        the transaction that records it, under the retention lock. Read-only on the store
        (its journals are read through :func:`dock.store.store_ledger`). Called before
        each ``retention due``/``purge`` and by ``sync``."""
        from dock.store import store_ledger

        with self.engine.connect() as conn:
            devices = [d for (d,) in conn.execute(sa.select(recordings.c.device).distinct())]
            recorded = set(conn.execute(sa.select(removals.c.device, removals.c.file)).all())
        missing = []
        for device in sorted(devices):
            ledger = store_ledger(self.store_root, device)
            for file, removal in sorted(ledger.removals.items()) if ledger else []:
                if (device, file) not in recorded:
                    missing.append((device, removal))
        done = []
        for device, removal in missing:
            row = self._record_removal(device, removal)
            if row is not None:
                done.append(row)
        return done

    def _record_removal(self, device: str, removal: Any) -> dict[str, Any] | None:
        with self.engine.begin() as conn:
            lock_retention(conn)
            rec = (
                conn.execute(
                    sa.select(recordings).where(
                        recordings.c.device == device, recordings.c.file == removal.file
                    )
                )
                .mappings()
                .first()
            )
            if rec is None:  # not indexed (yet): `sync` first
                return None
            seq = rec["seq"]
            if conn.execute(
                sa.select(removals.c.seq).where(removals.c.device == device, removals.c.seq == seq)
            ).first():
                return None  # another process recorded it meanwhile
            grounds = removal.retention or {}
            ours = grounds.get("archive") == self.identity.device_id
            kept_by = [
                f"case {n}" for n in self._memberships(conn, device, seq).get((device, seq), [])
            ]
            kept_by += [s.label for s in self._spans(conn, device) if s.covers(_rec(rec))]
            detail = {
                "event": "reconciled",
                "device": device,
                "seq": seq,
                "file": removal.file,
                "sha256": removal.sha256,
                "dock": removal.dock,
                "dock_seq": removal.dock_seq,
                "removed_utc": removal.utc,
                "authority": removal.authority,
                "decision_audit_seq": grounds.get("audit_seq") if ours else None,
                "kept_by": kept_by,
            }
            entry = self._audit(conn, "retention", SYSTEM, f"{device}:{seq}", detail)
            until = grounds.get("kept_until_utc") or format_utc(
                kept_until_ns(parse_utc(rec["end_utc"]))
            )
            conn.execute(
                removals.insert().values(
                    device=device,
                    seq=seq,
                    file=removal.file,
                    sha256=rec["sha256"],
                    category=str(grounds.get("category") or removal.authority)[:32],
                    end_utc=rec["end_utc"],
                    kept_until_utc=until,
                    removed_utc=removal.utc,
                    by_user=str(grounds.get("user") or f"dock {removal.dock}")[:64],
                    audit_seq=grounds["audit_seq"] if ours else entry.seq,
                    dock_seq=removal.dock_seq,
                )
            )
        if kept_by:
            _log.error(
                "the dock store no longer holds %s seq %s (%s), which %s keeps: %s",
                device,
                seq,
                removal.file,
                ", ".join(kept_by),
                removal.line(),
            )
        else:
            _log.warning("recorded a removal the archive had missed: %s", removal.line())
        return {"device": device, "seq": seq, "file": removal.file, "kept_by": kept_by} | {
            "dock": removal.dock,
            "dock_seq": removal.dock_seq,
            "audit_seq": entry.seq,
        }

    # -- due and purge -------------------------------------------------------------------

    def retention_due(
        self,
        session: Session,
        *,
        now_ns: int | None = None,
        device: str | None = None,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Recordings whose retention ran out, in no case and under no hold, with why."""
        self.require(session, "report")
        device, before = self._filters(device, before)
        now = self.clock.time_ns() if now_ns is None else now_ns
        self.reconcile_removals()
        with self.engine.connect() as conn:
            due = self._due(conn, now, device, before)
        self.audit_now(
            "view",
            session,
            "retention",
            {"what": "retention due", "now": format_utc(now), "shown": len(due)},
        )
        return [_due_row(rec, v) for rec, v in due]

    def _dock_store(self, dock_config: str | None = None):
        """The dock store with the dock's own key, as the dock gets it: its dock.toml (the
        key file or the systemd credential, and the unit keys it trusts)."""
        from dock.store import Store

        identity, keys = self._dock_key(dock_config)
        store = Store(self.store_root, self.clock, identity=identity, unit_keys=keys)
        if not getattr(self, "_claimed", False):
            self.claim_store(store)  # the dock's key is at hand: journal that we keep it
        return store

    def _dock_key(self, dock_config: str | None = None):
        """The dock's identity and trusted unit keys from its dock.toml, checked (its store
        must be this archive's), without opening the store: nothing is journaled."""
        from daemonkit.errors import UserError
        from dock.config import load as load_dock_config
        from dock.credential import load_dock_identity
        from evidence.trust import load_unit_keys

        path = dock_config or self.dock_config
        if not path:
            raise ArchiveError(
                "a purge removes through the dock store with the dock's key: set dock_config "
                "in archive.toml to the dock's dock.toml (or give --dock-config)"
            )
        try:
            cfg = load_dock_config(path)
            if Path(cfg.dock.store).resolve() != self.store_root.resolve():
                raise ArchiveError(
                    f"{path}: the dock's store is {cfg.dock.store}, not this archive's "
                    f"{self.store_root}"
                )
            keys = load_unit_keys(cfg.dock.unit_keys)
            identity = load_dock_identity(cfg.dock.key)
        except ArchiveError:
            raise
        except UserError as exc:
            raise ArchiveError(f"the dock's config {path}: {exc}") from None
        if not keys:
            raise ArchiveError(f"{path}: no unit key named (dock.unit_keys)")
        return identity, keys

    def retention_purge(
        self,
        session: Session,
        *,
        device: str | None = None,
        before: str | None = None,
        dry_run: bool = False,
        dock_config: str | None = None,
    ) -> dict[str, Any]:
        """Remove the due recordings through the dock store, each decision audited before
        the dock journals its ``removed`` record (which names that audit entry). Each is
        judged again, in its own transaction that holds off new holds and attachments."""
        from dock.exc import DockError

        self.require(session, "purge")
        device, before = self._filters(device, before)
        now = self.clock.time_ns()
        reconciled = self.reconcile_removals()
        with self.engine.connect() as conn:
            due = self._due(conn, now, device, before)
        if dry_run:
            self.audit_now(
                "view", session, "retention", {"what": "purge dry run", "shown": len(due)}
            )
            return {
                "removed": [],
                "refused": [],
                "would_remove": [_due_row(r, v) for r, v in due],
                "reconciled": reconciled,
            }
        done: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        result = {"removed": done, "refused": refused, "would_remove": [], "reconciled": reconciled}
        if not due and not reconciled:
            return result
        store = self._dock_store(dock_config)
        try:
            for line in store.finish_removals():  # what a killed removal left
                _log.warning("purge: %s", line)
            for rec, _ in due:
                try:
                    row = self._purge_one(session, store, rec)
                except (DockError, ArchiveError) as exc:
                    why = str(exc)
                    _log.warning("purge: %s seq %s not removed: %s", rec.device, rec.seq, why)
                    self.audit_now(
                        "retention",
                        session,
                        f"{rec.device}:{rec.seq}",
                        {"event": "not_removed", "file": rec.file, "reason": why},
                    )
                    refused.append(
                        {"device": rec.device, "seq": rec.seq, "file": rec.file, "reason": why}
                    )
                    continue
                if row is not None:
                    done.append(row)
        finally:
            store.close()
        return result

    def _purge_one(self, session: Session, store: Any, rec: Recording) -> dict[str, Any] | None:
        with self.engine.begin() as conn:
            lock_retention(conn)  # against attachments (archive.cases), re-checked below
            if conn.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE locks already
                conn.execute(
                    sa.text("LOCK TABLE holds, case_entries, removals IN SHARE ROW EXCLUSIVE MODE")
                )
            gone = conn.execute(
                sa.select(removals.c.seq).where(
                    removals.c.device == rec.device, removals.c.seq == rec.seq
                )
            ).first()
            if gone is not None:
                return None  # another purge took it
            now = self.clock.time_ns()
            v = judge(
                rec,
                now,
                self.retention_rules,
                self._memberships(conn, rec.device, rec.seq).get((rec.device, rec.seq), ()),
                self._spans(conn, rec.device),
            )
            if not v.due:
                raise ArchiveError(f"no longer due: {v.why}")
            decision = {
                "event": "purge",
                "device": rec.device,
                "seq": rec.seq,
                "file": rec.file,
                "sha256": rec.sha256,
                "rule": v.rule,
                "category": v.category,
                "days": self.retention_rules.days(v.category),
                "end_utc": rec.end_utc,
                "kept_until_utc": v.kept_until_utc,
            }
            entry = self._audit(conn, "retention", session, f"{rec.device}:{rec.seq}", decision)
            grounds = {
                "rule": v.rule,
                "category": v.category,
                "end_utc": rec.end_utc,
                "kept_until_utc": v.kept_until_utc,
                "archive": self.identity.device_id,
                "user": session.name,
                "audit_seq": entry.seq,
            }
            reason = (
                f"archive {self.identity.device_id}: {v.why} (decided by {session.name}, "
                f"audit seq {entry.seq})"
            )
            made = store.remove_media(rec.device, rec.file, "retention", reason, retention=grounds)
            conn.execute(
                removals.insert().values(
                    device=rec.device,
                    seq=rec.seq,
                    file=rec.file,
                    sha256=rec.sha256,
                    category=v.category,
                    end_utc=rec.end_utc,
                    kept_until_utc=v.kept_until_utc,
                    removed_utc=made.utc,
                    by_user=session.name,
                    audit_seq=entry.seq,
                    dock_seq=made.seq,
                )
            )
        _log.info(
            "purged %s seq %s (%s), dock journal seq %s", rec.device, rec.seq, rec.file, made.seq
        )
        return _due_row(rec, v) | {
            "audit_seq": entry.seq,
            "dock_seq": made.seq,
            "dock": made.device,
        }

    # -- legal holds ---------------------------------------------------------------------

    def place_hold(
        self,
        session: Session,
        reason: str,
        *,
        case: str | None = None,
        device: str | None = None,
        from_utc: str | None = None,
        to_utc: str | None = None,
    ) -> int:
        """Hold a case's recordings, or a camera's over ``[from_utc, to_utc)``; the id."""
        from .cases import _utc

        reason = (reason or "").strip()
        if (case is None) == (device is None):
            raise ArchiveError("hold a case (--case NUMBER) or a camera's time range (--device)")
        values: dict[str, Any] = {"kind": "case" if case else "range"}
        if case is not None:
            with self.engine.connect() as conn:
                row = self._case_row(conn, case)
            material = self.material_of(row)
            values["case_id"] = row["id"]
            what: dict[str, Any] = {"case": case}
        else:
            material = Material("internal", frozenset(), f"the recordings of {device}")
        self.require(session, "hold", material)
        if not reason:
            raise ArchiveError("a legal hold needs --reason (it goes on the record)")
        if case is None:
            try:
                check_device_id(device or "")
            except ValueError as exc:
                raise ArchiveError(f"--device: {exc}") from None
            if not (from_utc and to_utc):
                raise ArchiveError("a hold on a camera needs --from and --to")
            start, end = _utc(from_utc, "--from"), _utc(to_utc, "--to")
            if start >= end:
                raise ArchiveError(f"--from {start} is not before --to {end}")
            values.update(device=device, from_utc=start, to_utc=end)
            what = {"device": device, "from": start, "to": end}
        values.update(
            reason=reason[:_TEXT],
            placed_utc=self.now_utc(),
            placed_by=session.name,
            release_reason="",
        )
        with self.engine.begin() as conn:
            hold_id = int(conn.execute(holds.insert().values(**values)).inserted_primary_key[0])
            self._audit(
                conn,
                "hold",
                session,
                f"hold {hold_id}",
                {"event": "placed", "hold": hold_id, "reason": reason} | what,
            )
        _log.info("legal hold %s placed by %s", hold_id, session.name)
        return hold_id

    def release_hold(self, session: Session, hold_id: int, reason: str) -> None:
        """End a hold (its recordings fall back to their category), saying why."""
        reason = (reason or "").strip()
        with self.engine.connect() as conn:
            h = conn.execute(sa.select(holds).where(holds.c.id == hold_id)).mappings().first()
            if h is None:
                raise NotFound(f"no hold {hold_id}")
            if h["kind"] == "case":
                row = conn.execute(sa.select(cases).where(cases.c.id == h["case_id"]))
                material = self.material_of(dict(row.mappings().one()))
            else:
                material = Material("internal", frozenset(), f"the recordings of {h['device']}")
        self.require(session, "hold", material)
        if not reason:
            raise ArchiveError("releasing a legal hold needs --reason (it goes on the record)")
        with self.engine.begin() as conn:
            done = conn.execute(
                holds.update()
                .where(holds.c.id == hold_id, holds.c.released_utc.is_(None))
                .values(
                    released_utc=self.now_utc(),
                    released_by=session.name,
                    release_reason=reason[:_TEXT],
                )
            )
            if not done.rowcount:
                raise ArchiveError(f"hold {hold_id} was released already")
            self._audit(
                conn,
                "hold",
                session,
                f"hold {hold_id}",
                {"event": "released", "hold": hold_id, "reason": reason},
            )
        _log.info("legal hold %s released by %s", hold_id, session.name)

    def list_holds(self, session: Session, *, released: bool = False) -> list[dict[str, Any]]:
        """The standing holds (``released``: every hold ever placed), oldest first."""
        self.require(session, "report")
        q = sa.select(holds, cases.c.number).outerjoin(cases, cases.c.id == holds.c.case_id)
        if not released:
            q = q.where(holds.c.released_utc.is_(None))
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q.order_by(holds.c.id)).mappings()]
        self.audit_now("view", session, "legal holds", {"what": "holds", "shown": len(rows)})
        keys = ("id", "kind", "device", "from_utc", "to_utc", "reason", "placed_utc", "placed_by")
        out = []
        for r in rows:
            item = {k: r[k] for k in keys} | {"case": r["number"]}
            item |= {k: r[k] for k in ("released_utc", "released_by", "release_reason")}
            out.append(item)
        return out


def _due_row(rec: Recording, v: Verdict) -> dict[str, Any]:
    return {
        "device": rec.device,
        "seq": rec.seq,
        "unit": rec.unit,
        "file": rec.file,
        "sha256": rec.sha256,
        "end_utc": rec.end_utc,
        "category": v.category,
        "kept_until_utc": v.kept_until_utc,
        "rule": v.rule,
        "why": v.why,
    }
