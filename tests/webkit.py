"""Helpers for the web console's tests: a console over a real archive, driven through
fastapi's TestClient over HTTPS (so Secure cookies are sent as a browser sends them)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from archive.service import Archive
from archive.web.app import create_app

_TOKEN = re.compile(r'name="csrf" value="([^"]*)"')


def console(archive: Archive, **options) -> TestClient:
    """A client of a new console over ``archive`` (no redirects followed: tests see them)."""
    app = create_app(archive, **options)
    return TestClient(
        app, base_url="https://testserver", follow_redirects=False, raise_server_exceptions=False
    )


def another(client: TestClient) -> TestClient:
    """A second browser on the same console (its own cookies, the same client address)."""
    return TestClient(
        client.app,
        base_url="https://testserver",
        follow_redirects=False,
        raise_server_exceptions=False,
    )


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _TOKEN.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str, totp: str = "", next_url: str = "/"):
    """Log in through the login form, as a browser does; the POST's response."""
    form = client.get("/login", params={"next": next_url})
    assert form.status_code == 200, form.text[:500]
    return client.post(
        "/login",
        data={
            "name": name,
            "password": password,
            "totp": totp,
            "csrf": csrf_of(form.text),
            "next": next_url,
        },
    )


def logged_in(archive: Archive, name: str, password: str, **options) -> TestClient:
    """A client logged in as ``name``."""
    client = console(archive, **options)
    done = login(client, name, password)
    assert done.status_code == 303, done.text[:500]
    return client


def page_csrf(client: TestClient, path: str = "/") -> str:
    """The session's CSRF token, read from a page the user sees."""
    page = client.get(path)
    assert page.status_code == 200, page.text[:500]
    return csrf_of(page.text)
