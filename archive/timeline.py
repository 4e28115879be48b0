"""An officer's day, and what the archive checked of each recording (the console's badge).

A mixin of :class:`archive.service.Archive`. ``bodycam-archive sync`` (``sync_recordings``)
indexes, beside the segments, the cameras' other records of a day (``device_events``:
recordings started and stopped, key moments, stoppages and resumptions, photos, dockings,
announcements) and checks each new segment (``recording_checks``):

- **signature**: the camera's Ed25519 signature of its ``segment`` record, under the key
  the store's unit-signed registry holds for the camera, valid at the record's time;
- **chain**: the record's ``prev`` is the SHA-256 of the journal line before it;
- **stored**: a dock's journal records storing the file with the size and SHA-256 the
  camera signed (the dock hashed it while it streamed in, before its receipt).

A user may have a recording checked again now (:meth:`check_recording`): the same two
record checks, and the file itself re-hashed against the signed SHA-256 (``media``).
These are the archive's own checks for finding trouble early, not a verdict: the
evidence is checked by ``bodycam-verify`` against the unit key a person names.

:meth:`officer_day` is the day page's one query: the officer's segments (with their
checks and the highest classification of a case that holds each) and events of a time
range, merged in time order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import sqlalchemy as sa

from evidence.exc import RecordError
from evidence.record import Record, media_path_error

from .exc import NotFound
from .policy import CLASSIFICATIONS, Material, decide
from .schema import cases, device_events, entries, recording_checks, recordings, removals
from .session import Session

EVENT_KINDS = (
    "recording_started",
    "recording_stopped",
    "announcement",
    "marker",
    "photo",
    "stoppage",
    "resumed",
    "docked",
)
"""The camera records the day page shows beside the segments."""
ZEROS = "0" * 64


_SEQ = re.compile(rb'"prev":"[0-9a-f]{64}","seq":([0-9]+)')


def journal_lines(
    data: bytes,
    kinds: tuple[str, ...],
    after: int = -1,
    also: frozenset[int] | set[int] = frozenset(),
    only: int | None = None,
) -> list[tuple[Record, bytes]]:
    """The records of ``kinds`` in a journal's bytes, each with the line before it (for
    the chain), in file order; only the lines that name a kind are parsed (canonical
    JSON writes ``"kind":"<kind>"`` exactly), and of those only the ones after seq
    ``after`` or in ``also``, or only seq ``only`` (the record's own ``seq`` follows its ``prev``; a body,
    which sorts first, may hold another), so a sync reads a year's journal at disk speed
    and parses only what is new."""
    found: dict[int, tuple[Record, bytes]] = {}
    for kind in kinds:
        marker = b'"kind":"%s"' % kind.encode()
        at = data.find(marker)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end < 0:
                break  # a torn last line is no record
            if after >= 0 or only is not None:
                seqs = _SEQ.findall(data, start, end)
                seq = int(seqs[-1]) if seqs else None
                if seq is not None and (
                    (only is not None and seq != only) or (seq <= after and seq not in also)
                ):
                    at = data.find(marker, end)
                    continue
            try:
                record = Record.from_bytes(data[start:end])
            except RecordError:
                record = None
            if record is not None and record.kind == kind:
                before = data.rfind(b"\n", 0, start - 1) + 1 if start else 0
                found[start] = (record, data[before : start - 1] if start else b"")
            at = data.find(marker, end)
    return [found[k] for k in sorted(found)]


class _Signer:
    """A camera's registry entry and its verify key, made once per sync."""

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        try:
            self.key = nacl.signing.VerifyKey(bytes.fromhex(entry.public_key))
        except (ValueError, TypeError, nacl.exceptions.CryptoError):
            self.key = None

    def check(self, record: Record) -> tuple[str, str]:
        """``(signature verdict, why)`` for one record."""
        if self.key is None:
            return "no_key", "the registry's key for the camera is not a key"
        problem = self.entry.problem_at(record.utc)
        try:
            self.key.verify(record.signing_bytes(), bytes.fromhex(record.sig))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return "bad", "the signature does not verify under the camera's key"
        if problem:
            return "key_invalid", f"signed while {problem}"
        return "ok", ""


def chain_verdict(record: Record, before: bytes) -> tuple[str, str]:
    expected = hashlib.sha256(before).hexdigest() if before else ZEROS
    if record.prev == expected:
        return "ok", ""
    return "broken", f"prev {record.prev[:16]}... is not the hash of the line before it"


def stored_verdict(ledger: Any, record: Record) -> tuple[str, str, str]:
    """``(verdict, dock, why)``: what the dock journals say of the segment's file."""
    file, size, digest = record.body["file"], record.body["size"], record.body["sha256"]
    if ledger is None:
        return "absent", "", "no dock journal records this camera"
    if file in ledger.removed:
        return "removed", "", f"removed from the store: {ledger.removed[file]}"
    stored = ledger.files.get(file)
    if stored is None:
        return "absent", "", "no dock journal records storing this file"
    if (stored.size, stored.sha256) != (size, digest):
        return "differs", stored.dock, "the dock recorded another size or SHA-256"
    if file in ledger.sealed:
        return "sealed", stored.dock, ""
    return "ok", stored.dock, ""


@dataclass
class DayView:
    """What the day page shows: the timeline's rows and what was withheld."""

    officer: str
    from_utc: str
    to_utc: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    withheld: int = 0
    segments: int = 0


def badge(row: dict[str, Any]) -> str:
    """A segment row's badge: ``verified``, ``problem``, ``unchecked``, or ``removed`` for
    one removed under retention (its file is gone by right: it is verified no more)."""
    if row.get("removed_utc") or row.get("stored") == "removed":
        return "removed"
    if row.get("signature") is None:
        return "unchecked"
    good = (
        row["signature"] == "ok"
        and row["chain"] == "ok"
        and row["stored"] in ("ok", "sealed")
        and row.get("media") in (None, "ok", "sealed")
    )
    return "verified" if good else "problem"


ACT_DETAILS = frozenset({"marker", "photo", "stoppage", "resumed", "announcement"})
"""A camera's records that tell what happened in an act (withheld with its segments)."""


def withhold_acts(rows: list[dict[str, Any]]) -> None:
    """Withhold, in place, the key moments, photos, stoppages and announcements of each
    act one of whose segments is withheld: they tell what the withheld video shows. An
    act runs from a ``recording_started`` to the next ``recording_stopped`` (the day's
    first from its start, its last to its end, one cut by a restart as one); its
    segments' records lie within."""
    inf = float("inf")
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["device"], rows[i]["seq"]))
    acts: list[tuple[str, float, float]] = []
    device, start = None, -inf
    for i in order:
        row = rows[i]
        if row["device"] != device:
            if device is not None and start is not None:
                acts.append((device, start, inf))
            device, start = row["device"], -inf
        if row["kind"] == "recording_started" and start is None:  # not a restart's
            start = row["seq"]
        elif row["kind"] == "recording_stopped" and start is not None:
            acts.append((device, start, row["seq"]))
            start = None
    if device is not None and start is not None:
        acts.append((device, start, inf))
    levels: dict[tuple[str, float, float], str] = {}
    for row in rows:
        if row["kind"] == "withheld":
            for act in acts:
                if act[0] == row["device"] and act[1] <= row["seq"] <= act[2]:
                    levels.setdefault(act, row["classification"])
    for i, row in enumerate(rows):
        if row["kind"] not in ACT_DETAILS:
            continue
        for act, level in levels.items():
            if act[0] == row["device"] and act[1] <= row["seq"] <= act[2]:
                rows[i] = {
                    "kind": "withheld",
                    "device": row["device"],
                    "seq": row["seq"],
                    "utc": row["utc"],
                    "end_utc": row["utc"],
                    "classification": level,
                }
                break


_RANK_CASE = sa.case(
    *((cases.c.classification == name, i) for i, name in enumerate(CLASSIFICATIONS)),
    else_=len(CLASSIFICATIONS),
)


def day_query(officer: str, start: str, end: str) -> sa.CompoundSelect:
    """The day page's one query: the officer's segments starting in ``[start, end)``
    with their checks, their removal under retention if any (``removals``, joined on its
    key), the highest classification of a case holding each (a
    correlated subquery on the case entries' device index), and the camera's other
    records in the range, in time order."""
    r, c, gone = recordings, recording_checks, removals
    top = (
        sa.select(sa.func.max(_RANK_CASE))
        .select_from(entries.join(cases, entries.c.case_id == cases.c.id))
        .where(entries.c.device == r.c.device, entries.c.seq == r.c.seq)
        .scalar_subquery()
    )
    nothing = sa.null()
    seg = (
        sa.select(
            sa.literal("segment").label("kind"),
            r.c.device,
            r.c.seq,
            r.c.start_utc.label("utc"),
            r.c.end_utc,
            r.c.file,
            r.c.sha256,
            r.c.size,
            nothing.label("detail"),
            c.c.signature,
            c.c.chain,
            c.c.stored,
            c.c.dock,
            c.c.checked_utc,
            c.c.detail.label("check_detail"),
            c.c.media,
            c.c.media_checked_utc,
            c.c.media_checked_by,
            top.label("rank"),
            gone.c.removed_utc,
            gone.c.by_user.label("removed_by"),
            gone.c.category.label("removed_category"),
        )
        .select_from(
            r.outerjoin(c, sa.and_(c.c.device == r.c.device, c.c.seq == r.c.seq)).outerjoin(
                gone, sa.and_(gone.c.device == r.c.device, gone.c.seq == r.c.seq)
            )
        )
        .where(r.c.officer == officer, r.c.start_utc >= start, r.c.start_utc < end)
    )
    ev = device_events
    evs = sa.select(
        ev.c.kind,
        ev.c.device,
        ev.c.seq,
        ev.c.utc,
        *(nothing for _ in range(4)),
        ev.c.detail,
        *(nothing for _ in range(13)),
    ).where(ev.c.officer == officer, ev.c.utc >= start, ev.c.utc < end)
    query = sa.union_all(seg, evs).order_by("utc", "device", "seq")
    return query


class Timeline:
    """The day page's data and the recordings' checks (mixed into Archive)."""

    def _index_timeline(
        self,
        conn: sa.Connection,
        unit: str,
        device: str,
        journal: Path,
        officer: str,
        signer: _Signer | None,
        last_segment: int,
        last_event: int,
        unchecked: set[int],
        now: str,
    ) -> tuple[list[dict[str, Any]], int]:
        """Index a device journal's new segments, events and checks; returns the new
        segment rows (for ``recordings``) and how many events were added."""
        from dock.store import store_ledger

        data = journal.read_bytes()
        ledger = store_ledger(self.store_root, device)
        segments, events, checks = [], [], []
        lines = journal_lines(
            data, ("segment", *EVENT_KINDS), min(last_segment, last_event), unchecked
        )
        for record, before in lines:
            if record.device != device:
                continue
            if record.kind == "segment":
                if record.seq > last_segment:
                    b = record.body
                    segments.append(
                        {
                            "device": device,
                            "seq": record.seq,
                            "unit": unit,
                            "officer": officer,
                            "file": b["file"],
                            "sha256": b["sha256"],
                            "size": b["size"],
                            "start_utc": b["start_utc"],
                            "end_utc": b["end_utc"],
                        }
                    )
                if record.seq > last_segment or record.seq in unchecked:
                    checks.append(self._check_row(record, before, signer, ledger, now))
            elif record.seq > last_event:
                body = dict(record.body)
                if record.kind == "marker":
                    body["_hash"] = record.hash  # to match the dock's relabellings of it
                events.append(
                    {
                        "device": device,
                        "seq": record.seq,
                        "unit": unit,
                        "officer": officer,
                        "utc": record.utc,
                        "kind": record.kind,
                        "detail": json.dumps(body, sort_keys=True, ensure_ascii=False),
                    }
                )
        for i in range(0, len(events), 5000):
            conn.execute(device_events.insert(), events[i : i + 5000])
        if checks:
            again = sorted({c["seq"] for c in checks} & unchecked)
            for i in range(0, len(again), 500):
                conn.execute(
                    recording_checks.delete().where(
                        recording_checks.c.device == device,
                        recording_checks.c.seq.in_(again[i : i + 500]),
                    )
                )
            for i in range(0, len(checks), 5000):
                conn.execute(recording_checks.insert(), checks[i : i + 5000])
        return segments, len(events)

    def _apply_relabels(self, relabels: dict[tuple[str, int], list[Any]]) -> int:
        """Note on each indexed key moment the dock's latest relabelling of it (whose
        record hash matches the marker's), as the compliance report reads it; the
        camera's record is never changed. How many markers changed."""
        if not relabels:
            return 0
        changed = 0
        with self.engine.begin() as conn:
            for (device, seq), made in relabels.items():
                row = conn.execute(
                    sa.select(device_events.c.detail).where(
                        device_events.c.device == device,
                        device_events.c.seq == seq,
                        device_events.c.kind == "marker",
                    )
                ).scalar()
                if row is None:
                    continue
                body = json.loads(row)
                valid = [r for r in made if r.record_hash == body.get("_hash")]
                if not valid:
                    continue
                last = valid[-1]
                note = {
                    "moment": last.moment,
                    "was": valid[0].was,
                    "by": last.by,
                    "why": last.why,
                    "dock": last.dock,
                    "utc": last.utc,
                }
                if body.get("relabelled") == note:
                    continue
                body["relabelled"] = note
                conn.execute(
                    device_events.update()
                    .where(device_events.c.device == device, device_events.c.seq == seq)
                    .values(detail=json.dumps(body, sort_keys=True, ensure_ascii=False))
                )
                changed += 1
        return changed

    @staticmethod
    def _check_row(record: Record, before: bytes, signer, ledger, now: str) -> dict[str, Any]:
        why = []
        if signer is None:
            signature, reason = "no_key", "the registry names no such camera"
        else:
            signature, reason = signer.check(record)
        why.append(reason)
        chain, reason = chain_verdict(record, before)
        why.append(reason)
        stored, dock, reason = stored_verdict(ledger, record)
        why.append(reason)
        return {
            "device": record.device,
            "seq": record.seq,
            "signature": signature,
            "chain": chain,
            "stored": stored,
            "dock": dock,
            "checked_utc": now,
            "detail": "; ".join(w for w in why if w),
            "media": None,
            "media_checked_utc": None,
            "media_checked_by": None,
        }

    # -- the day page ----------------------------------------------------------------

    def officer_day(self, session: Session, officer: str, from_utc: str, to_utc: str) -> DayView:
        """The officer's segments and events in ``[from_utc, to_utc)``, in time order, in
        one query; segments of a case the user may not see are withheld (one refusal
        audited for them all), the page itself checked and audited as a view."""
        from .cases import _utc

        start, end = _utc(from_utc, "--from"), _utc(to_utc, "--to")
        label = f"the day of officer {officer}"
        self.require(session, "view", Material("internal", frozenset({officer}), label))
        query = day_query(officer, start, end)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        view = DayView(officer, start, end)
        withheld: list[str] = []
        for row in rows:
            item = dict(row)
            if item["kind"] == "segment":
                rank = item["rank"]
                level = (
                    CLASSIFICATIONS[min(rank, len(CLASSIFICATIONS) - 1)]
                    if rank is not None
                    else "internal"
                )
                what = Material(level, frozenset({officer}), f"{item['device']}:{item['seq']}")
                if not decide(session.actor, "view", what).allowed:
                    withheld.append(f"{item['device']}:{item['seq']} ({level})")
                    item = {
                        "kind": "withheld",
                        "device": item["device"],
                        "seq": item["seq"],
                        "utc": item["utc"],
                        "end_utc": item["end_utc"],
                        "classification": level,
                    }
                else:
                    item["classification"] = level
                    item["badge"] = badge(item)
                    view.segments += 1
            else:
                try:
                    item["body"] = json.loads(item.pop("detail") or "{}")
                except ValueError:
                    item["body"] = {}
            view.rows.append(item)
        view.withheld = len(withheld)
        if withheld:
            withhold_acts(view.rows)
            self.audit_now(
                "refusal",
                session,
                label,
                {
                    "action": "view",
                    "reason": f"{len(withheld)} recordings of a case above the user's clearance",
                    "recordings": withheld,
                },
            )
        self.audit_now(
            "view",
            session,
            label,
            {
                "what": "day",
                "from": start,
                "to": end,
                "shown": view.segments,
                "events": len(rows) - view.segments - len(withheld),
                "withheld": len(withheld),
            },
        )
        return view

    def known_officers(self, session: Session) -> list[str]:
        """The badges the index knows, for choosing whose day to see: a report (badge
        numbers only), so the administrator, who sees no material, is refused."""
        self.require(session, "report")
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(recordings.c.officer).distinct().order_by(recordings.c.officer)
            ).scalars()
            return [o for o in found if o]

    def photo_file(self, session: Session, device: str, seq: int) -> tuple[Path, dict[str, Any]]:
        """Where a journaled photo lies in the store, after the access check (a view of
        the officer's material, internal; audited)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(device_events).where(
                        device_events.c.device == device,
                        device_events.c.seq == seq,
                        device_events.c.kind == "photo",
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no photo {device}:{seq} in the index (bodycam-archive sync)")
        label = f"photo {device}:{seq}"
        level = self.act_classification(device, seq)
        self.require(session, "view", Material(level, frozenset({row["officer"]}), label))
        body = json.loads(row["detail"])
        if media_path_error("photo", body.get("file")) is not None:
            raise NotFound(f"the record of {label} names no photo file")
        self.audit_now("view", session, label, {"what": "photo", "file": body.get("file", "")})
        return self.store_root / row["unit"] / device / str(body.get("file", "")), body

    def act_classification(self, device: str, seq: int) -> str:
        """The classification record ``seq`` takes from the act it was made in (a photo
        of a sealed act is as confidential as its video): the highest of any case that
        holds a segment between the act's ``recording_started`` and ``recording_stopped``;
        internal in no case, or outside any recording."""
        ev, e = device_events, entries
        mine = (ev.c.device == device,)
        with self.engine.connect() as conn:
            start = conn.execute(
                sa.select(sa.func.max(ev.c.seq)).where(
                    *mine, ev.c.kind == "recording_started", ev.c.seq <= seq
                )
            ).scalar()
            if start is None:
                return "internal"
            stops = sa.select(sa.func.min(ev.c.seq)).where(*mine, ev.c.kind == "recording_stopped")
            if conn.execute(stops.where(ev.c.seq >= start, ev.c.seq < seq)).scalar() is not None:
                return "internal"  # the recording had stopped: made between acts
            stop = conn.execute(stops.where(ev.c.seq >= seq)).scalar()
            held = sa.and_(e.c.device == device, e.c.kind == "recording", e.c.seq >= start)
            if stop is not None:
                held = sa.and_(held, e.c.seq <= stop)
            top = conn.execute(
                sa.select(sa.func.max(_RANK_CASE))
                .select_from(e.join(cases, e.c.case_id == cases.c.id))
                .where(held)
            ).scalar()
        return CLASSIFICATIONS[min(top, 4)] if top is not None else "internal"

    # -- one recording, checked again -------------------------------------------------

    def recording_material(self, device: str, seq: int) -> tuple[dict[str, Any], Material]:
        """An indexed segment and what it is for the access check (its officer, and the
        highest classification of a case that holds it; internal in none)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(recordings).where(
                        recordings.c.device == device, recordings.c.seq == seq
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no recording {device}:{seq} in the index (bodycam-archive sync)")
            top = conn.execute(
                sa.select(sa.func.max(_RANK_CASE))
                .select_from(entries.join(cases, entries.c.case_id == cases.c.id))
                .where(entries.c.device == device, entries.c.seq == seq)
            ).scalar()
        level = CLASSIFICATIONS[min(top, 4)] if top is not None else "internal"
        material = Material(level, frozenset({row["officer"]}), f"recording {device}:{seq}")
        return dict(row), material

    def recording_checks_of(self, session: Session, device: str, seq: int) -> dict[str, Any]:
        """What was checked of one recording, for its badge (a view, audited)."""
        row, material = self.recording_material(device, seq)
        self.require(session, "view", material)
        with self.engine.connect() as conn:
            check = (
                conn.execute(
                    sa.select(recording_checks).where(
                        recording_checks.c.device == device, recording_checks.c.seq == seq
                    )
                )
                .mappings()
                .first()
            )
        self.audit_now("view", session, material.label, {"what": "checks"})
        result = {**row, "classification": material.classification}
        result.update(dict(check) if check else {"signature": None})
        result["check_detail"] = result.get("detail", "")
        result["badge"] = badge(result)
        return result

    def check_recording(self, session: Session, device: str, seq: int) -> dict[str, Any]:
        """Check one recording again now: the camera's signature and the chain link of
        its record, and the file re-hashed against the signed SHA-256. Recorded for the
        badge and audited (a view: nothing of the evidence changes)."""
        from dock.store import store_ledger
        from evidence.journal import JOURNAL_NAME

        from .refs import _open_store

        row, material = self.recording_material(device, seq)
        self.require(session, "view", material)
        store = _open_store(self.store_root)
        try:
            entry = next((e for e in store.registry() if e.device_id == device), None)
        finally:
            store.close()
        folder = self.store_root / row["unit"] / device
        data = (folder / JOURNAL_NAME).read_bytes() if (folder / JOURNAL_NAME).exists() else b""
        found = [(r, b) for r, b in journal_lines(data, ("segment",), only=seq) if r.seq == seq]
        now = self.now_utc()
        if not found:
            check = {
                "device": device,
                "seq": seq,
                "signature": "bad",
                "chain": "broken",
                "stored": "absent",
                "dock": "",
                "checked_utc": now,
                "detail": "the camera's journal in the store no longer holds this record",
            }
            media = "missing"
        else:
            record, before = found[0]
            signer = _Signer(entry) if entry is not None else None
            check = self._check_row(
                record, before, signer, store_ledger(self.store_root, device), now
            )
            if (record.body["sha256"], record.body["size"]) != (row["sha256"], row["size"]):
                check["signature"] = "bad"
                check["detail"] += "; the journal's record is not the one indexed"
            media = _hash_verdict(folder / record.body["file"], record.body)
            if media == "missing" and check["stored"] == "sealed":
                media = "sealed"  # only the sealed form is kept; the dock hashed that
        check.update(media=media, media_checked_utc=now, media_checked_by=session.name)
        with self.engine.begin() as conn:
            conn.execute(
                recording_checks.delete().where(
                    recording_checks.c.device == device, recording_checks.c.seq == seq
                )
            )
            conn.execute(recording_checks.insert().values(**check))
            self._audit(
                conn,
                "view",
                session,
                material.label,
                {
                    "what": "check",
                    "signature": check["signature"],
                    "chain": check["chain"],
                    "stored": check["stored"],
                    "media": media,
                },
            )
        result = {**row, **check, "classification": material.classification}
        result["check_detail"] = check["detail"]
        result["badge"] = badge(result)
        return result


def _hash_verdict(path: Path, body: dict[str, Any]) -> str:
    """``ok``, ``changed`` or ``missing``: the file against the camera's signed size and hash
    (read only if a regular file of that size, never through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return "missing"
    try:
        info = os.fstat(fd)
        import stat

        if not stat.S_ISREG(info.st_mode):
            return "missing"
        if info.st_size != body["size"]:
            return "changed"
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return "ok" if digest.hexdigest() == body["sha256"] else "changed"
