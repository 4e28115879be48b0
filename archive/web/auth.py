"""Logins, server-side sessions, CSRF tokens and failed-login rate limits.

- A session is a random id (32 bytes, ``secrets``) in a cookie that is HttpOnly,
  SameSite=Strict and, unless the console runs on plain HTTP on loopback, Secure. The
  server keeps what it stands for (the archive's :class:`Session`, its CSRF token, when it
  was last used) in memory: a restart logs everyone out, and nothing about a user is in
  the cookie. A session ends after ``session_minutes`` without use, and after 12 hours in
  any case; its cookie then gets the "session expired" page. A logout, and an expired
  session when its cookie comes back, are audited (``logout``); one never used again is
  dropped at a later login without an entry.
- Every POST carries the session's CSRF token (``csrf_field`` in the form, or the
  ``X-CSRF-Token`` header for scripts); :func:`check_csrf` refuses any other with a 403
  page before the route runs, so a forged form changes nothing. The login form carries a
  token of its own, bound to a short-lived cookie.
- Failed logins are limited per user name and per client address over a sliding window;
  a login attempt while limited does no password work and is audited by the archive as a
  failed login (reason ``rate limited``), as every other failure is.
"""

from __future__ import annotations

import collections
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from ..exc import LoginFailed
from ..policy import Actor
from ..schema import users
from ..session import Session
from .render import NavItem, render

_log = logging.getLogger(__name__)

SESSION_COOKIE = "bodycam_session"
LOGIN_COOKIE = "bodycam_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_SESSION_S = 12 * 3600
LOGIN_FORM_S = 30 * 60
NS = 1_000_000_000

router = APIRouter()
NAV: list[NavItem] = []


class LoginRequired(Exception):
    """No session cookie: the user is sent to the login page (then back)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class SessionExpired(Exception):
    """A session cookie the server no longer knows (expired, logged out, restarted)."""


class CsrfFailed(Exception):
    """A POST whose CSRF token is missing or not the session's: refused, nothing done."""


@dataclass
class WebSession:
    id: str
    session: Session
    csrf: str
    created_ns: int
    last_ns: int
    account: tuple = ()  # the user's row as it was at login (see account_of)


class SessionStore:
    """The console's sessions, in memory, by id; idle and absolute expiry."""

    def __init__(self, clock, idle_s: float, max_s: float = MAX_SESSION_S) -> None:
        self.clock = clock
        self.idle_ns = int(idle_s * NS)
        self.max_ns = int(max_s * NS)
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def create(self, session: Session, account: tuple = ()) -> WebSession:
        now = self.clock.time_ns()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        web = WebSession(token, session, csrf, now, now, account)
        with self._lock:
            self._expire(now)
            self._sessions[web.id] = web
        return web

    def _expire(self, now: int) -> None:
        for sid in [s.id for s in self._sessions.values() if not self._alive(s, now)]:
            del self._sessions[sid]

    def _alive(self, web: WebSession, now: int) -> bool:
        return now - web.last_ns <= self.idle_ns and now - web.created_ns <= self.max_ns

    def get(self, sid: str | None, *, touch: bool = True) -> WebSession | None:
        """The live session of this id (its idle time restarted), or None."""
        return self.lookup(sid, touch=touch)[0]

    def lookup(
        self, sid: str | None, *, touch: bool = True
    ) -> tuple[WebSession | None, WebSession | None]:
        """``(live session, None)``, or ``(None, the session that just expired)`` the
        first time an expired one is presented (for its audit entry), or ``(None, None)``."""
        if not sid:
            return None, None
        now = self.clock.time_ns()
        with self._lock:
            web = self._sessions.get(sid)
            if web is None:
                return None, None
            if not self._alive(web, now):
                del self._sessions[sid]
                return None, web
            if touch:
                web.last_ns = now
            return web, None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    """Failed logins per user name and per client address, over a sliding window."""

    def __init__(
        self, clock, *, per_user: int = 5, per_client: int = 20, window_s: float = 15 * 60
    ) -> None:
        self.clock = clock
        self.limits = {"user": per_user, "client": per_client}
        self.window_ns = int(window_s * NS)
        self._failures: dict[tuple[str, str], collections.deque[int]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: int) -> collections.deque[int]:
        """The failures of ``key`` in the window (an empty key is forgotten, so names
        tried once do not pile up in memory)."""
        times = self._failures.get(key)
        if times is None:
            return collections.deque()
        while times and now - times[0] > self.window_ns:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked_s(self, user: str, client: str) -> float:
        """Seconds until this user or client may try again (0: now)."""
        now = self.clock.time_ns()
        wait = 0
        with self._lock:
            for kind, value in (("user", user), ("client", client)):
                times = self._recent((kind, value), now)
                if len(times) >= self.limits[kind]:
                    wait = max(wait, times[0] + self.window_ns - now)
        return wait / NS

    def failed(self, user: str, client: str) -> None:
        now = self.clock.time_ns()
        with self._lock:
            for key in (("user", user), ("client", client)):
                self._recent(key, now)
                self._failures.setdefault(key, collections.deque()).append(now)
            if len(self._failures) > 100_000:  # a flood of names: drop what has expired
                for key in list(self._failures):
                    self._recent(key, now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user), None)


# -- what routes use ---------------------------------------------------------------------


def peek_session(request: Request) -> WebSession | None:
    """This request's live session, if any, without requiring one (for any page)."""
    if hasattr(request.state, "web_session"):
        return request.state.web_session
    web = request.app.state.sessions.get(request.cookies.get(SESSION_COOKIE), touch=False)
    return web


def account_of(archive: Any, name: str) -> tuple | None:
    """What a session was granted on: the user's role, badge and password hash, while the
    user is active (None once deactivated or gone)."""
    q = sa.select(users.c.role, users.c.officer, users.c.password_hash, users.c.active)
    with archive.engine.connect() as conn:
        row = conn.execute(q.where(users.c.name == name)).first()
    return tuple(row) if row is not None and row.active else None


def web_session(request: Request) -> WebSession:
    """The request's live session; :class:`LoginRequired` or :class:`SessionExpired`.
    A session ends as soon as its user is deactivated, or their role, badge or password
    changes (an administrator acting on a leaver or a stolen password)."""
    sid = request.cookies.get(SESSION_COOKIE)
    web, expired = request.app.state.sessions.lookup(sid)
    archive = request.app.state.archive
    if web is not None and account_of(archive, web.session.name) != web.account:
        _log.warning("session of %s ended: the user's account changed", web.session.name)
        request.app.state.sessions.drop(sid)
        archive.audit_now(
            "logout",
            web.session,
            web.session.name,
            {"reason": "account changed", "client": client_address(request)},
        )
        web = None
    if web is None:
        request.state.web_session = None
        if expired is not None:
            archive.audit_now(
                "logout",
                expired.session,
                expired.session.name,
                {
                    "reason": "expired",
                    "idle_s": (archive.clock.time_ns() - expired.last_ns) // NS,
                    "client": client_address(request),
                },
            )
        if sid:
            raise SessionExpired()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.web_session = web
    return web


def current_session(request: Request) -> Session:
    """The logged-in user, as the archive's methods take it (a FastAPI dependency)."""
    return web_session(request).session


async def check_csrf(request: Request) -> None:
    """Refuse a POST without this session's CSRF token (a FastAPI dependency)."""
    web = web_session(request)
    token = request.headers.get(CSRF_HEADER, "")
    if not token:
        form = await request.form()
        value = form.get(CSRF_FIELD, "")
        token = value if isinstance(value, str) else ""
    if not hmac.compare_digest(token.encode(), web.csrf.encode()):
        _log.warning("CSRF token refused for %s on %s", web.session.name, request.url.path)
        raise CsrfFailed()


CurrentSession = Annotated[Session, Depends(current_session)]
"""A route's logged-in user: ``def page(request: Request, session: CurrentSession)``."""
CSRF = Depends(check_csrf)
"""For every POST route: ``@router.post(..., dependencies=[CSRF])``."""


def csrf_token(request: Request) -> str:
    web = peek_session(request)
    return web.csrf if web is not None else ""


def csrf_field(request: Request) -> Markup:
    """The hidden input every POST form of a logged-in page carries."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, csrf_token(request)
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in (never another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target:
        return "/"
    return target


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int):
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.app.state.secure_cookies,
    )


def login_redirect(next_url: str) -> RedirectResponse:
    target = "/login" if next_url in ("", "/") else f"/login?next={quote(next_url, safe='')}"
    return RedirectResponse(target, status_code=303)


# -- the login page ----------------------------------------------------------------------


def _login_page(
    request: Request, next_url: str, message: str = "", name: str = "", status: int = 200
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        status_code=status,
        next_url=safe_next(next_url),
        message=message,
        name=name,
        login_token=token,
    )
    set_cookie(request, response, LOGIN_COOKIE, token, LOGIN_FORM_S)
    return response


@router.get("/login", name="login")
def login_form(request: Request, next: str = "/") -> Response:
    if peek_session(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next)


@router.post("/login", name="login_post")
def login_post(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    totp: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    archive = request.app.state.archive
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        raise CsrfFailed()
    name = name.strip()[:64]
    client = client_address(request)
    limiter: LoginLimiter = request.app.state.limiter
    wait = limiter.blocked_s(name, client)
    if wait > 0:
        archive.audit_now(
            "login_failed",
            Session(Actor(name, "unknown")),
            name,
            {"reason": "rate limited", "client": client},
        )
        minutes = max(1, int(wait // 60 + (1 if wait % 60 else 0)))
        message = ("login.limited", {"minutes": minutes})
        return _login_page(request, next, message, name, 429)
    try:
        session = archive.login(name, password, totp.strip() or None, client=client)
    except LoginFailed:
        limiter.failed(name, client)
        return _login_page(request, next, ("login.failed", {}), name, 401)
    limiter.succeeded(name)
    store: SessionStore = request.app.state.sessions
    store.drop(request.cookies.get(SESSION_COOKIE))  # a new id at each login
    web = store.create(session, account_of(archive, session.name) or ())
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, web.id, MAX_SESSION_S)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout", name="logout", dependencies=[CSRF])
def logout(request: Request) -> Response:
    web = request.state.web_session
    request.app.state.archive.audit_now(
        "logout",
        web.session,
        web.session.name,
        {"reason": "logged out", "client": client_address(request)},
    )
    request.app.state.sessions.drop(request.cookies.get(SESSION_COOKIE))
    request.state.web_session = None
    response = render(request, "logged_out.html")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def message_text(t: Any, message: Any) -> str:
    """A ``(key, fmt)`` message translated (templates call it through ``t``)."""
    if not message:
        return ""
    key, fmt = message
    return t(key, **fmt)
