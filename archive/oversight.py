"""What supervisors look at through the archive: the compliance report of the dock store
(Art. 38-39: not recording, or recording wrongly, is a fault they must be able to see),
and acknowledging a camera's alert from the web console's live page.

A mixin of :class:`archive.service.Archive`. The report is ``bodycam-dock report
compliance``'s own (:func:`dock.compliance_report.store_acts`, :func:`dock.compliance.report`),
read from the store the archive builds on, after the one access check (``report``) and
audited as a view, so that the console shows no other judgement than the dock's. An act
filed in a case the user may not see is withheld, as on the day page: only its camera
and first record are named, none of its times, findings or moments (one refusal audited
for them all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from evidence.clock import format_utc

from .exc import ArchiveError
from .policy import CLASSIFICATIONS, Material, decide
from .refs import _open_store
from .schema import cases, entries
from .session import Session
from .timeline import _RANK_CASE


def held_levels(conn: sa.Connection, devices: list[str]) -> dict[tuple[str, int], int]:
    """``(device, seq)`` -> the rank of the highest classification of a case holding that
    recording, for every recording of ``devices`` some case holds: one query."""
    if not devices:
        return {}
    query = (
        sa.select(entries.c.device, entries.c.seq, sa.func.max(_RANK_CASE).label("rank"))
        .select_from(entries.join(cases, entries.c.case_id == cases.c.id))
        .where(entries.c.device.in_(devices), entries.c.seq.is_not(None))
        .group_by(entries.c.device, entries.c.seq)
    )
    return {(r.device, int(r.seq)): int(r.rank) for r in conn.execute(query)}


class Oversight:
    """The compliance report and alert acknowledgements (mixed into the Archive)."""

    def compliance_report(
        self,
        session: Session,
        *,
        officer: str | None = None,
        day_from: str | None = None,
        day_to: str | None = None,
        now_ns: int | None = None,
    ) -> dict[str, Any]:
        """Per officer (and fixed camera): each act, its findings, a count per kind with
        its articles, as ``bodycam-dock report compliance --json`` prints it; an act held
        by a case above the user's clearance only in the slot's ``withheld`` (camera, first
        record, the case's classification), its findings counted nowhere."""
        from dock.compliance import report
        from dock.compliance_report import check_day, store_acts
        from dock.deadlines import LIMIT_H
        from evidence.procedures import load_procedures

        self.require(session, "report")
        try:
            day_from = check_day(day_from or None, "from")
            day_to = check_day(day_to or None, "to")
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None
        if day_from and day_to and day_from > day_to:
            raise ArchiveError(f"the days run backwards: from {day_from} to {day_to}")
        now_ns = self.clock.time_ns() if now_ns is None else now_ns
        store = _open_store(self.store_root)
        try:
            acts = store_acts(
                store,
                load_procedures(),
                now_ns,
                LIMIT_H,
                officer=officer or None,
                day_from=day_from,
                day_to=day_to,
            )
        finally:
            store.close()
        with self.engine.connect() as conn:
            held = held_levels(conn, sorted({a.device for a in acts}))
        shown, withheld = [], []
        for act in acts:
            top = max((held.get((act.device, s.seq), -1) for s in act.segments), default=-1)
            if top >= 0:
                level = CLASSIFICATIONS[min(top, len(CLASSIFICATIONS) - 1)]
                what = Material(level, frozenset({act.officer}), f"{act.device}:{act.start_seq}")
                if not decide(session.actor, "view", what).allowed:
                    withheld.append((act, level))
                    continue
            shown.append(act)
        data = report(shown)  # the counts per kind are of the acts shown only
        for slot in (*data["officers"].values(), *data["fixed_cameras"].values()):
            slot["withheld"] = []
        fixed = {a.device for a in acts if a.window is not None}
        for act, level in withheld:
            key, name = (
                ("fixed_cameras", act.device)
                if act.device in fixed
                else ("officers", act.officer or "(no officer)")
            )
            slot = data[key].setdefault(
                name,
                {"acts": [], "acts_with_findings": 0, "audio_unchecked": 0, "by_kind": {}},
            )
            slot.setdefault("withheld", []).append(
                {"device": act.device, "start_seq": act.start_seq, "classification": level}
            )
        for key in ("officers", "fixed_cameras"):
            data[key] = dict(sorted(data[key].items()))
        data["withheld"] = len(withheld)
        data["now_utc"] = format_utc(now_ns)
        if withheld:
            self.audit_now(
                "refusal",
                session,
                "report compliance",
                {
                    "action": "view",
                    "reason": f"{len(withheld)} acts of a case above the user's clearance",
                    "acts": [f"{a.device}:{a.start_seq} ({level})" for a, level in withheld],
                },
            )
        self.audit_now(
            "view",
            session,
            "report compliance",
            {
                "what": "compliance report",
                "officer": officer or "",
                "from": day_from or "",
                "to": day_to or "",
                "acts": len(shown),
                "withheld": len(withheld),
            },
        )
        return data

    def watch_live(self, session: Session) -> None:
        """The access check (``report``: no material, only devices' states and alerts) for
        the console's live page and its event stream; audited as a view."""
        self.require(session, "report")
        self.audit_now("view", session, "live status", {"what": "live status"})

    def acknowledge_alert(
        self, session: Session, device: str, seq: int, send: Callable[[], None]
    ) -> None:
        """Acknowledge alert ``seq`` of camera ``device``: the access check, the audit entry,
        then ``send`` (which publishes the acknowledgement; its error, if any, is raised)."""
        self.require(session, "acknowledge")
        self.audit_now(
            "acknowledge", session, f"alert {device}#{seq}", {"device": device, "seq": seq}
        )
        send()


__all__ = ["Oversight"]
