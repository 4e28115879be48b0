"""Case files: open, attach recordings (by time range or by act) and documents, close.

A mixin of :class:`archive.service.Archive` (it uses its engine, access check and audit).
A closed case is immutable: nothing in it changes, and a later addition is a new entry
marked ``after_close`` that must say why. Each act a case holds has a deadline, 30 days
after the act ended (Archives Law Art. 34); the case's deadline is its earliest.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evidence.canonical import canonical_bytes
from evidence.clock import UTC_PATTERN, format_utc, parse_utc
from evidence.identity import check_device_id

from .documents import needs_encryption
from .exc import ArchiveError, ClosedCase, NotFound
from .policy import Material, rank
from .refs import RecordingRef, by_act, by_range
from .retention import gone_from_store, lock_retention
from .schema import cases, entries, meta
from .session import Session

LIMIT_DAYS = 30
SOON_DAYS = 5  # due soon from day 25 on: the first alert
_DAY_NS = 86_400 * 10**9
_TEXT = 512


def _names(values: list[str] | tuple[str, ...], what: str) -> list[str]:
    out = []
    for v in values:
        v = v.strip()
        if not v or len(v) > 128 or any(ord(c) < 0x20 for c in v):
            raise ArchiveError(f"{what} {v!r:.40}: a short line of text, please")
        out.append(v)
    return out


def _utc(text: str, what: str) -> str:
    """A stamp in the journals' form; a date or a stamp without microseconds is accepted."""
    if UTC_PATTERN.match(text or ""):
        return text
    t = (text or "").rstrip("Z")
    if len(t) == 10:
        t += "T00:00:00"
    if len(t) == 19:
        t += ".000000"
    if not UTC_PATTERN.match(t + "Z"):
        raise ArchiveError(f"{what} {text!r}: use a UTC time, YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD")
    parse_utc(t + "Z")  # a real date
    return t + "Z"


def _device_id(device: str) -> str:
    """A device id from a person (the console's form, the command line): an
    :class:`ArchiveError` saying what is wrong with it, as every bad input gets."""
    try:
        return check_device_id(device)
    except ValueError as exc:
        raise ArchiveError(str(exc)) from None


class CaseFiles:
    """Case-file actions (mixed into :class:`archive.service.Archive`)."""

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def _lock_case(conn: sa.Connection, number: str) -> None:
        """Lock the case's row for this transaction (PostgreSQL; SQLite's write lock is
        taken at BEGIN): an attachment and a classification of one case serialise."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(cases.c.id).where(cases.c.number == number).with_for_update())

    def _case_row(self, conn: sa.Connection, number: str) -> dict[str, Any]:
        row = conn.execute(sa.select(cases).where(cases.c.number == number)).mappings().first()
        if row is None:
            raise NotFound(f"no case {number!r}")
        return dict(row)

    @staticmethod
    def material_of(row: dict[str, Any]) -> Material:
        """A case as the policy sees it: its classification and the officers it names."""
        return Material(
            row["classification"], frozenset(json.loads(row["officers"])), f"case {row['number']}"
        )

    def _entries(self, conn: sa.Connection, case_id: int) -> list[dict[str, Any]]:
        rows = conn.execute(
            sa.select(entries).where(entries.c.case_id == case_id).order_by(entries.c.id)
        ).mappings()
        return [dict(r) for r in rows]

    @staticmethod
    def deadline_of(row: dict[str, Any], items: list[dict[str, Any]]) -> str | None:
        """30 days after the earliest end of an act the case holds (None: no act known)."""
        ends: dict[str, str] = {}
        for e in items:
            if e["kind"] == "recording" and e["end_utc"]:
                key = e["act"] or f"{e['device']}:{e['seq']}"
                ends[key] = max(ends.get(key, ""), e["end_utc"])
        candidates = list(ends.values()) + ([row["act_end_utc"]] if row["act_end_utc"] else [])
        if not candidates:
            return None
        return format_utc(parse_utc(min(candidates)) + LIMIT_DAYS * _DAY_NS)

    def _show(self, row: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        out = {
            k: row[k] for k in ("number", "kind_of_act", "procedure", "classification", "status")
        }
        out |= {
            "parties": json.loads(row["parties"]),
            "officers": json.loads(row["officers"]),
            "act_end_utc": row["act_end_utc"],
            "opened_utc": row["opened_utc"],
            "opened_by": row["opened_by"],
            "closed_utc": row["closed_utc"],
            "closed_by": row["closed_by"],
            "deadline_utc": self.deadline_of(row, items),
        }
        shown = []
        for e in items:
            item = {k: e[k] for k in ("kind", "utc", "by_user", "sha256", "size")}
            if e["after_close"]:
                item |= {"after_close": True}
            if e["reason"]:
                item["reason"] = e["reason"]
            if e["kind"] == "recording":
                item |= {k: e[k] for k in ("device", "seq", "file", "start_utc", "end_utc", "act")}
                item["sealed"] = self.is_sealed(e["device"], e["file"])  # archive.sealing
            else:
                item |= {"title": e["title"], "encrypted": bool(e["encrypted"])}
            shown.append(item)
        out["entries"] = shown
        return out

    def show_case(self, session: Session, number: str) -> dict[str, Any]:
        """A case and its entries (a ``view``, audited)."""
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
            items = self._entries(conn, row["id"])
        self.require(session, "view", self.material_of(row))
        self.audit_now("view", session, f"case {number}", {"what": "case"})
        return self._show(row, items)

    def list_cases(self, session: Session, status: str | None = None) -> list[dict[str, Any]]:
        """The cases this user may see (others are not named); one ``view`` entry."""
        from .policy import decide

        q = sa.select(cases).order_by(cases.c.number)
        if status:
            q = q.where(cases.c.status == status)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        self.require(session, "view", Material("public", frozenset(), "the list of cases"))
        keys = ("number", "kind_of_act", "procedure", "classification", "status", "opened_utc")
        shown = [
            {k: r[k] for k in keys}
            for r in rows
            if decide(session.actor, "view", self.material_of(r)).allowed
        ]
        self.audit_now("view", session, "cases", {"what": "list", "shown": len(shown)})
        return shown

    def case_recordings(
        self, session: Session, number: str, action: str = "view", *, approved: bool = False
    ) -> list[RecordingRef]:
        """The case's recordings as references into the dock store (for the court bundle
        and the party's copy), after the access check for ``action``."""
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
            items = self._entries(conn, row["id"])
        material = self.material_of(row)
        self.require(session, action, replace(material, approved=approved))
        unit_of = self._units()
        return [
            RecordingRef(
                e["device"],
                unit_of.get(e["device"], ""),
                e["seq"],
                e["file"],
                e["sha256"],
                e["size"],
                e["start_utc"],
                e["end_utc"],
            )
            for e in items
            if e["kind"] == "recording"
        ]

    def _units(self) -> dict[str, str]:
        found = {}
        root = Path(self.store_root)
        if root.is_dir():
            for unit_dir in root.iterdir():
                if unit_dir.name[:1] in "._" or not unit_dir.is_dir():
                    continue
                for dev in unit_dir.iterdir():
                    found.setdefault(dev.name, unit_dir.name)
        return found

    # -- changing ---------------------------------------------------------------------

    def open_case(
        self,
        session: Session,
        kind_of_act: str,
        procedure: str,
        parties: list[str],
        officers: list[str],
        classification: str,
        act_end_utc: str | None = None,
    ) -> str:
        """Open a case file; its number (``YYYY-NNNN``, by year of opening)."""
        try:
            rank(classification)
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None
        parties, officers = _names(parties, "party"), _names(officers, "officer")
        kind_of_act = _names([kind_of_act], "kind of act")[0]
        procedure = _names([procedure], "procedure")[0][:64]
        act_end = _utc(act_end_utc, "--act-end") if act_end_utc else None
        self.require(
            session, "case_open", Material(classification, frozenset(officers), "a new case")
        )
        now = self.now_utc()
        with self.engine.begin() as conn:
            key = f"case_seq:{now[:4]}"
            done = conn.execute(
                meta.update()
                .where(meta.c.key == key)
                .values(value=sa.cast(sa.cast(meta.c.value, sa.Integer) + 1, sa.Text))
            )
            if not done.rowcount:
                conn.execute(meta.insert().values(key=key, value="1"))
            n = int(conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one())
            number = f"{now[:4]}-{n:04d}"
            conn.execute(
                cases.insert().values(
                    number=number,
                    kind_of_act=kind_of_act[:128],
                    procedure=procedure,
                    classification=classification,
                    parties=canonical_bytes(parties).decode(),
                    officers=canonical_bytes(officers).decode(),
                    status="open",
                    act_end_utc=act_end,
                    opened_utc=now,
                    opened_by=session.name,
                    alerted_days=0,
                )
            )
            self._audit(
                conn,
                "case",
                session,
                f"case {number}",
                {
                    "event": "opened",
                    "kind_of_act": kind_of_act,
                    "procedure": procedure,
                    "parties": parties,
                    "officers": officers,
                    "classification": classification,
                    "act_end_utc": act_end or "",
                },
            )
        return number

    def _changeable(self, session: Session, row: dict[str, Any], reason: str) -> bool:
        """The access check for a change (outside any write transaction: a refusal is
        audited in its own), then :meth:`_late`."""
        self.require(session, "case_change", self.material_of(row))
        return self._late(row, reason)

    @staticmethod
    def _late(row: dict[str, Any], reason: str) -> bool:
        """Whether the addition comes after closing (then ``reason`` is required)."""
        if row["status"] == "closed":
            if not reason.strip():
                raise ClosedCase(
                    f"case {row['number']} is closed and immutable; a later addition must "
                    "say why (--reason)"
                )
            return True
        return False

    def _attach_refs(
        self,
        session: Session,
        number: str,
        refs: list[RecordingRef],
        act: str,
        reason: str,
        how: dict,
    ) -> list[RecordingRef]:
        if not refs:
            raise NotFound(f"no recordings of {how.get('device')} in the dock store for {act}")
        with self.engine.connect() as conn:
            before = self._case_row(conn, number)
        if needs_encryption(before["classification"]):
            self.refuse_unsealable(session, before, "case_change")  # archive.sealing
        # Filing what a higher case holds into this one would name it on this case's page
        # to everyone cleared for this case: only who may view the higher case may do it.
        self.require_sealed_clearance(session, refs, self.material_of(before), "view")
        with self.engine.begin() as conn:
            lock_retention(conn)  # a purge removing one of them ends first, or waits
            self._lock_case(conn, number)
            row = self._case_row(conn, number)
            if needs_encryption(row["classification"]) and not needs_encryption(
                before["classification"]
            ):
                raise ArchiveError(
                    f"case {number} was classified {row['classification']} meanwhile: attach again"
                )
            late = self._late(row, reason)
            have = {
                (e["device"], e["seq"])
                for e in self._entries(conn, row["id"])
                if e["kind"] == "recording"
            }
            new = [r for r in refs if (r.device, r.seq) not in have]
            if not new:
                raise ArchiveError(f"case {number} already holds these {len(refs)} recordings")
            gone = gone_from_store(conn, Path(self.store_root), new)
            if gone:
                raise ArchiveError(
                    f"{gone[0].device} seq {gone[0].seq} {gone[0].file}"
                    + (f" and {len(gone) - 1} more" if len(gone) > 1 else "")
                    + " left the dock store under retention meanwhile: nothing attached"
                )
            now = self.now_utc()
            conn.execute(
                entries.insert(),
                [
                    {
                        "case_id": row["id"],
                        "kind": "recording",
                        "utc": now,
                        "by_user": session.name,
                        "after_close": late,
                        "reason": reason[:_TEXT],
                        "device": r.device,
                        "seq": r.seq,
                        "file": r.file,
                        "sha256": r.sha256,
                        "size": r.size,
                        "start_utc": r.start_utc,
                        "end_utc": r.end_utc,
                        "act": act,
                        "title": None,
                        "encrypted": False,
                    }
                    for r in new
                ],
            )
            self._audit(
                conn,
                "case",
                session,
                f"case {number}",
                how
                | {
                    "event": "attached",
                    "after_close": late,
                    "reason": reason,
                    "recordings": [[r.device, r.seq, r.sha256] for r in new],
                },
            )
        if needs_encryption(row["classification"]):
            self._seal_after(session, number)  # archive.sealing: after the commit
        return new

    def attach_range(
        self,
        session: Session,
        number: str,
        device: str,
        from_utc: str,
        to_utc: str,
        reason: str = "",
    ) -> list[RecordingRef]:
        """Attach the device's segments that overlap the time range."""
        _device_id(device)
        start, end = _utc(from_utc, "--from"), _utc(to_utc, "--to")
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
        self._changeable(session, row, reason)  # a refusal is audited outside the read
        if needs_encryption(row["classification"]):
            self.refuse_unsealable(session, row, "case_change")  # before the store is read
        refs = by_range(self.store_root, device, start, end)
        return self._attach_refs(
            session,
            number,
            refs,
            f"{device}:{start}/{end}",
            reason,
            {"device": device, "from_utc": start, "to_utc": end},
        )

    def attach_act(
        self, session: Session, number: str, device: str, start_seq: int, reason: str = ""
    ) -> list[RecordingRef]:
        """Attach an act (a recording session, as the compliance report finds them)."""
        _device_id(device)
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
        self._changeable(session, row, reason)  # a refusal is audited outside the read
        if needs_encryption(row["classification"]):
            self.refuse_unsealable(session, row, "case_change")  # before the store is read
        act, refs = by_act(self.store_root, device, start_seq, self.clock.time_ns())
        return self._attach_refs(
            session,
            number,
            refs,
            f"{device}:{start_seq}",
            reason,
            {"device": device, "act_start_seq": start_seq, "act_end_utc": act.end_utc or ""},
        )

    def attach_document(
        self, session: Session, number: str, path: str, title: str = "", reason: str = ""
    ) -> str:
        """Hash a written document into the archive and attach it; its SHA-256."""
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
        self._changeable(session, row, reason)  # a refusal is audited outside the read
        doc = self.store_document(path, encrypt=needs_encryption(row["classification"]))
        sha256, size = doc.sha256, doc.size
        title = (title or Path(path).name)[:_TEXT]
        with self.engine.begin() as conn:
            row = self._case_row(conn, number)
            late = self._late(row, reason)
            conn.execute(
                entries.insert().values(
                    case_id=row["id"],
                    kind="document",
                    utc=self.now_utc(),
                    by_user=session.name,
                    after_close=late,
                    reason=reason[:_TEXT],
                    sha256=sha256,
                    size=size,
                    title=title,
                    encrypted=doc.stored is not None,
                    stored=doc.stored,
                    wrapped_key=doc.wrapped_key,
                )
            )
            self._audit(
                conn,
                "case",
                session,
                f"case {number}",
                {
                    "event": "document",
                    "title": title,
                    "sha256": sha256,
                    "size": size,
                    "after_close": late,
                    "reason": reason,
                },
            )
        return sha256

    def close_case(self, session: Session, number: str) -> None:
        """Close a case: from now on it is immutable."""
        with self.engine.connect() as conn:  # the check (and its audit) before the write
            material = self.material_of(self._case_row(conn, number))
        self.require(session, "case_close", material)
        with self.engine.begin() as conn:
            row = self._case_row(conn, number)
            if row["status"] == "closed":
                raise ClosedCase(
                    f"case {number} was closed at {row['closed_utc']} by {row['closed_by']}"
                )
            now = self.now_utc()
            conn.execute(
                cases.update()
                .where(cases.c.id == row["id"], cases.c.status == "open")
                .values(status="closed", closed_utc=now, closed_by=session.name)
            )
            deadline = self.deadline_of(row, self._entries(conn, row["id"]))
            self._audit(
                conn,
                "case",
                session,
                f"case {number}",
                {
                    "event": "closed",
                    "deadline_utc": deadline or "",
                    "late": bool(deadline and now > deadline),
                },
            )

    def classify(self, session: Session, number: str, classification: str, reason: str) -> None:
        """Change a case's classification (allowed only to who may see both levels)."""
        try:
            rank(classification)
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None
        if not reason.strip():
            raise ArchiveError("a classification change must say why (--reason)")
        with self.engine.connect() as conn:  # the checks (and their audit) before the write
            before = self._case_row(conn, number)
            clear = self._in_clear(conn, before["id"]) if needs_encryption(classification) else 0
        old = self.material_of(before)
        self.require(session, "classify", old)
        self.require(
            session,
            "classify",
            Material(classification, old.officers, f"case {number} as {classification}"),
        )
        if clear:  # archive.sealing: never confidential in clear
            self.refuse_unsealable(session, before | {"classification": classification}, "classify")
        with self.engine.begin() as conn:
            row = self._case_row(conn, number)
            conn.execute(
                cases.update().where(cases.c.id == row["id"]).values(classification=classification)
            )
            if needs_encryption(classification) and not clear and self._in_clear(conn, row["id"]):
                if self.sealing_unavailable() is not None:
                    raise ArchiveError(f"case {number} gained recordings meanwhile: classify again")
            gone = self._seal_documents(conn, row["id"]) if needs_encryption(classification) else []
            self._audit(
                conn,
                "classification",
                session,
                f"case {number}",
                {"from": row["classification"], "to": classification, "reason": reason},
            )
        self._remove_plain(gone)  # only after the commit: the entries now name the sealed ones
        if needs_encryption(classification):
            self._seal_after(session, number)  # its recordings too (archive.sealing)

    # -- the 30-day rule --------------------------------------------------------------

    def deadline_report(self, session: Session, now_ns: int | None = None) -> dict[str, Any]:
        """Every case by its 30-day state: ``overdue``, ``due_soon`` (day 25 on), ``open``
        (or ``no_act`` when no act's end is known), ``closed`` / ``closed_late``."""
        self.require(session, "report")
        now_ns = self.clock.time_ns() if now_ns is None else now_ns
        now = format_utc(now_ns)
        with self.engine.connect() as conn:
            rows = [
                dict(r) for r in conn.execute(sa.select(cases).order_by(cases.c.number)).mappings()
            ]
            items: dict[int, list[dict[str, Any]]] = {}
            for e in conn.execute(sa.select(entries).order_by(entries.c.id)).mappings():
                items.setdefault(e["case_id"], []).append(dict(e))
        out = []
        for row in rows:
            deadline = self.deadline_of(row, items.get(row["id"], []))
            days_left = None
            if deadline is None:
                state = "no_act" if row["status"] == "open" else "closed"
            else:
                left_ns = parse_utc(deadline) - now_ns
                days_left = left_ns // _DAY_NS
                if row["status"] == "closed":
                    state = "closed_late" if row["closed_utc"] > deadline else "closed"
                elif left_ns <= 0:
                    state = "overdue"
                elif left_ns <= SOON_DAYS * _DAY_NS:
                    state = "due_soon"
                else:
                    state = "open"
            out.append(
                {
                    "number": row["number"],
                    "status": row["status"],
                    "state": state,
                    "deadline_utc": deadline,
                    "days_left": days_left,
                    "opened_utc": row["opened_utc"],
                    "closed_utc": row["closed_utc"],
                }
            )
        counts: dict[str, int] = {}
        for c in out:
            counts[c["state"]] = counts.get(c["state"], 0) + 1
        self.audit_now(
            "view", session, "report cases", {"what": "deadline report", "cases": len(out)}
        )
        return {
            "now_utc": now,
            "limit_days": LIMIT_DAYS,
            "soon_days": SOON_DAYS,
            "counts": counts,
            "cases": out,
        }


__all__ = ["LIMIT_DAYS", "SOON_DAYS", "CaseFiles"]
