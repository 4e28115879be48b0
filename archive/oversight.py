"""What supervisors look at through the archive: the compliance report of the dock store
(Art. 38-39: not recording, or recording wrongly, is a fault they must be able to see),
and acknowledging a camera's alert from the web console's live page.

A mixin of :class:`archive.service.Archive`. The report is ``bodycam-dock report
compliance``'s own (:func:`dock.compliance_report.store_acts`, :func:`dock.compliance.report`),
read from the store the archive builds on, after the one access check (``report``) and
audited as a view, so that the console shows no other judgement than the dock's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evidence.clock import format_utc

from .exc import ArchiveError
from .refs import _open_store
from .session import Session


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
        its articles, as ``bodycam-dock report compliance --json`` prints it."""
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
        data = report(acts)
        data["now_utc"] = format_utc(now_ns)
        self.audit_now(
            "view",
            session,
            "report compliance",
            {
                "what": "compliance report",
                "officer": officer or "",
                "from": day_from or "",
                "to": day_to or "",
                "acts": len(acts),
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
