"""What the case-file, copy, compliance and live pages share: reading form values into
what the archive's methods take, links into the player, and which forms to offer.

Nothing here decides who may do what: a form is offered when the archive's one access
decision (:func:`archive.policy.decide`) would allow it, and the archive's method checks
again, audited, when the form is sent. An offered form is only a convenience.
"""

from __future__ import annotations

import datetime as dt
import re

from fastapi import Request
from starlette.routing import NoMatchFound

from ..exc import ArchiveError
from ..policy import ROLES, Material, decide
from ..session import Session

_LOCAL = re.compile(r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\Z")


def roles_that_may(action: str, material: Material | None = None) -> frozenset[str]:
    """The roles the policy lets take ``action`` (on ``material``): for the nav bar."""
    from ..policy import Actor

    return frozenset(r for r in ROLES if decide(Actor("nav", r, "nav"), action, material).allowed)


def may(session: Session, action: str, material: Material | None = None) -> bool:
    """Whether to offer a form: the one access decision, asked without acting."""
    return decide(session.actor, action, material).allowed


def utc_of(request: Request, value: str, what: str) -> str:
    """A time from a form as the archive takes it (UTC, ``...Z``).

    A browser's ``datetime-local`` value (``2026-11-18T09:30``) is a time in the console's
    zone, the one the pages show; a value ending in ``Z`` or a bare date is UTC already
    and goes to the archive as typed (it checks it)."""
    text = (value or "").strip()
    if not text:
        raise ArchiveError(f"{what}: say when (a date and time)")
    if text.endswith("Z") or len(text) == 10:
        return text
    if not _LOCAL.match(text):
        raise ArchiveError(f"{what} {text[:40]!r}: use a date and time, YYYY-MM-DD HH:MM")
    try:
        local = dt.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise ArchiveError(f"{what} {text[:40]!r}: not a real date and time") from None
    moment = local.replace(tzinfo=request.app.state.tz).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whole(value: str, what: str) -> int:
    """A non-negative whole number from a form (a sequence number, a request id)."""
    text = (value or "").strip()
    if not text.isdigit() or len(text) > 19:
        raise ArchiveError(f"{what} {text[:40]!r}: a whole number, please")
    return int(text)


def lines(value: str) -> list[str]:
    """One name a line (parties, officers): blank lines dropped."""
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def play_url(request: Request, device: str, seq: int, t: float | None = None) -> str:
    """The player at a recording (``/play/{device}/{seq}?t=SECONDS``), or "" while the
    console has no player route."""
    try:
        url = str(request.app.url_path_for("play_recording", device=device, seq=str(seq)))
    except NoMatchFound:
        return ""
    if t is not None:
        url += f"?t={max(0.0, t):.1f}"
    return url


def seconds_between(start_utc: str, utc: str) -> float:
    """Seconds from ``start_utc`` to ``utc`` (journal stamps); 0 if either is unreadable."""
    from evidence.clock import parse_utc

    try:
        return (parse_utc(utc) - parse_utc(start_utc)) / 1e9
    except (TypeError, ValueError):
        return 0.0
