"""The start page and the language toggle."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from .auth import CurrentSession, safe_next
from .i18n import LANG_COOKIE, LANGS
from .render import render

router = APIRouter()


@router.get("/", name="home")
def home(request: Request, session: CurrentSession) -> Response:
    return render(request, "home.html")


@router.get("/lang/{lang}", name="set_lang")
def set_lang(request: Request, lang: str, next: str = "/") -> Response:
    """Switch the language (a cookie for a year; it holds nothing about the user)."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in LANGS:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            path="/",
            samesite="strict",
            secure=request.app.state.secure_cookies,
        )
    return response
