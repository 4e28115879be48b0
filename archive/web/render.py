"""Server-side pages: Jinja2 with autoescape, translations, local times and the nav bar.

:func:`render` is the one way a page is made: it gives every template ``t`` (translate
into the request's language), ``csrf_field()`` (the hidden token every POST form
carries), ``user`` (the logged-in :class:`archive.session.Session`, or None), ``nav`` (the
links the user's role has) and the ``localtime`` filter (a UTC stamp in the console's
time zone, the zone shown). Templates live in ``archive/web/templates``.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from starlette.routing import NoMatchFound

from . import i18n

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class NavItem:
    """A link in the nav bar: a route with no path parameters, shown to these roles."""

    route: str
    key: str  # its label's translation key
    roles: frozenset[str]


def local_zone(name: str | None) -> dt.tzinfo:
    """The console's time zone: an IANA name (``Asia/Shanghai``), or this machine's."""
    if name:
        return ZoneInfo(name)
    return dt.datetime.now().astimezone().tzinfo or dt.UTC


def to_datetime(value: Any) -> dt.datetime | None:
    """A journal UTC stamp (``2026-11-18T09:00:00.123456Z`` or shorter), ns, or datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int):
        return dt.datetime.fromtimestamp(value / 1e9, tz=dt.UTC)
    text = str(value)
    try:
        stamp = dt.datetime.fromisoformat(text[:-1] if text.endswith("Z") else text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def zone_label(moment: dt.datetime) -> str:
    """``CST (UTC+08:00)``, or ``UTC+08:00`` where the zone has no letters of its own."""
    offset = moment.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = moment.tzname() or ""
    return f"{name} ({offset})" if name.isalpha() and name != "UTC" else offset


@jinja2.pass_context
def localtime_filter(ctx: jinja2.runtime.Context, value: Any, part: str = "full") -> Markup:
    """A UTC time in the console's zone, in a ``<time>`` element that keeps the UTC.

    ``part``: ``full`` (date, time and zone), ``time`` (hh:mm:ss) and ``short`` (date and
    time), for rows under a heading that shows the zone, ``date``.
    """
    return local_time(value, ctx["tz"], part)


def local_time(value: Any, tz: dt.tzinfo, part: str = "full") -> Markup:
    """What the ``localtime`` filter writes, for code that builds rows itself."""
    moment = to_datetime(value)
    if moment is None:
        return Markup("") if value in (None, "") else Markup.escape(str(value))
    local = moment.astimezone(tz)
    if part == "time":
        text = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    elif part == "date":
        text = local.date().isoformat()
    elif part == "short":  # date and time, under a heading that shows the zone
        text = f"{local:%Y-%m-%d %H:%M:%S}"
    else:
        text = f"{local:%Y-%m-%d %H:%M:%S} {zone_label(local)}"
    utc = moment.astimezone(dt.UTC)
    stamp = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )
    # every part is made of digits and the zone's name here, escaped all the same
    return Markup(f'<time datetime="{stamp}">{escape(text)}</time>')


def filesize_filter(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["localtime"] = localtime_filter
    env.filters["filesize"] = filesize_filter
    return env


def request_lang(request: Request) -> str:
    return i18n.pick_lang(request.cookies.get(i18n.LANG_COOKIE))


def nav_for(request: Request, role: str | None) -> list[dict[str, Any]]:
    """The nav bar's links for a role: the registered items whose route exists."""
    if role is None:
        return []
    items = []
    for item in getattr(request.app.state, "nav", []):
        if role not in item.roles:
            continue
        try:
            url = request.app.url_path_for(item.route)
        except NoMatchFound:
            continue
        items.append({"url": url, "key": item.key, "active": request.url.path == url})
    return items


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """The page ``template`` for this request, in the user's language."""
    from .auth import csrf_field, peek_session

    lang = request_lang(request)
    web = peek_session(request)
    user = web.session if web is not None else None
    tz = request.app.state.tz
    now = dt.datetime.now(tz)
    context = {
        "request": request,
        "lang": lang,
        "t": functools.partial(_t, lang),
        "translate": i18n.translate,
        "csrf_field": functools.partial(csrf_field, request),
        "user": user,
        "nav": nav_for(request, user.role if user else None),
        "tz": tz,
        "tz_name": f"{getattr(tz, 'key', '') or now.tzname()} {zone_label(now)}".strip(),
        "url_for": request.app.url_path_for,
        **ctx,
    }
    html = environment().get_template(template).render(context)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _t(lang: str, key: str, **fmt: object) -> str:
    return i18n.translate(key, lang, **fmt)
