"""The console's FastAPI application: routers, error pages, security headers.

:func:`create_app` takes an open :class:`archive.service.Archive` and includes the router
of every module in :data:`ROUTER_MODULES` (each exposes ``router: fastapi.APIRouter`` and
may expose ``NAV``: :class:`archive.web.render.NavItem` links for the nav bar). Every
error, whatever raised it, becomes a page in zh-CN with English that says what went
wrong, never a stack trace (500s are logged with theirs).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..exc import ArchiveError, NotFound, Refused
from ..service import Archive
from .auth import (
    CsrfFailed,
    LoginLimiter,
    LoginRequired,
    SessionExpired,
    SessionStore,
    login_redirect,
)
from .render import local_zone, render

_log = logging.getLogger(__name__)

ROUTER_MODULES = [
    "archive.web.auth",
    "archive.web.pages",
    "archive.web.day",
    "archive.web.auditlog",
    "archive.web.cases",
    "archive.web.copies",
    "archive.web.compliance",
    "archive.web.live",
    "archive.web.player",
]
"""Modules whose ``router`` the console includes, in order (add yours here)."""

STATIC = Path(__file__).with_name("static")
CSS = Path(__file__).with_name("console.css")

PUBLIC_ASSETS = ("/static/", "/console.css", "/pages.css", "/live/live.js")
"""The console's own files, the same for everyone: the only responses a cache may keep."""

SECURITY_HEADERS = {
    # Scripts only from this console's own files (no inline script); media from MSE blobs.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


MAX_BODY = (512 + 1) << 20
"""The largest request body: a document upload (``archive.web.cases.MAX_UPLOAD``) and its
form. Any other body (a form, a login) may be at most :data:`MAX_FORM`."""
MAX_FORM = 1 << 20


class BodyLimit:
    """Refuse a request body past its limit before it is read (HTTP 413): told by
    Content-Length at once, or, sent chunked, as soon as it passes. Without this the form
    parser would spool any upload to a temporary file, and hold any urlencoded form in
    memory, before a route (or the CSRF check, which reads the form) could refuse it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        limit = scope["app"].state.max_body if multipart else MAX_FORM
        length = headers.get(b"content-length", b"0").strip()
        if not length.isdigit() or int(length) > limit:
            request = Request(scope)
            detail = f"the request is larger than {limit >> 20} MiB; nothing was stored"
            response = error_page(request, 413, "error.title", detail)
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise StarletteHTTPException(
                    413, f"the request is larger than {limit >> 20} MiB; nothing was stored"
                )
            return message

        await self.app(scope, limited, send)


def create_app(
    archive: Archive,
    *,
    secure_cookies: bool = True,
    session_minutes: int = 30,
    timezone: str | None = None,
    unit_keys: frozenset[str] = frozenset(),
) -> FastAPI:
    """The console over ``archive`` (which the caller opens and closes). ``unit_keys``:
    fingerprints of the unit keys whose signed registry the audit log's check trusts."""
    app = FastAPI(
        title="bodycam-archive console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.archive = archive
    app.state.secure_cookies = secure_cookies
    app.state.sessions = SessionStore(archive.clock, session_minutes * 60)
    app.state.limiter = LoginLimiter(archive.clock)
    app.state.tz = local_zone(timezone)
    app.state.unit_keys = frozenset(unit_keys)
    app.state.nav = []
    for name in ROUTER_MODULES:
        module = importlib.import_module(name)
        app.include_router(module.router)
        app.state.nav.extend(getattr(module, "NAV", []))
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/console.css", name="console_css", include_in_schema=False)
    def console_css() -> Response:
        return FileResponse(CSS, media_type="text/css")

    app.state.max_body = MAX_BODY
    app.add_middleware(BodyLimit)  # inside security_headers: its 413 gets the headers too

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if not request.url.path.startswith(PUBLIC_ASSETS):
            # Material (media, documents, copies, redirects, errors): kept in no cache.
            response.headers["Cache-Control"] = "no-store"
        return response

    _error_pages(app)
    return app


def error_page(request: Request, status: int, title_key: str, detail: str = "") -> Response:
    return render(
        request, "error.html", status_code=status, status=status, title_key=title_key, detail=detail
    )


def _error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method != "GET":
            return error_page(request, 401, "error.expired", "error.expired.detail")
        return login_redirect(exc.next_url)

    @app.exception_handler(SessionExpired)
    async def expired(request: Request, exc: SessionExpired) -> Response:
        response = error_page(request, 401, "error.expired", "error.expired.detail")
        response.delete_cookie("bodycam_session", path="/")
        return response

    @app.exception_handler(CsrfFailed)
    async def csrf(request: Request, exc: CsrfFailed) -> Response:
        return error_page(request, 403, "error.403", "error.403.csrf")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return error_page(request, 403, "error.403", str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error_page(request, 404, "error.404", str(exc))

    @app.exception_handler(ArchiveError)
    async def bad(request: Request, exc: ArchiveError) -> Response:
        return error_page(request, 400, "error.400", str(exc))

    @app.exception_handler(OverflowError)
    @app.exception_handler(sa.exc.DataError)
    async def out_of_range(request: Request, exc: Exception) -> Response:
        # A number past what a date or a database column holds (a seq of 2**63, the year
        # 10000), or text the database cannot store: the request's fault, not a crash.
        _log.warning("bad value on %s %s: %s", request.method, request.url.path, exc)
        return error_page(request, 400, "error.400", "error.400.range")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = ", ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_page(request, 400, "error.400", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "error.404", "error.404.detail")
        key = f"error.{exc.status_code}"
        from .i18n import CATALOG

        title = key if key in CATALOG else "error.title"
        detail = "" if exc.detail in (None, "") else str(exc.detail)
        response = error_page(request, exc.status_code, title, detail)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        _log.error("error on %s %s", request.method, request.url.path, exc_info=exc)
        try:
            return error_page(request, 500, "error.500", "error.500.detail")
        except Exception:  # the error page itself failed: a plain line, still no trace
            _log.exception("the error page failed too")
            return Response("500 内部错误 Internal error", status_code=500)
