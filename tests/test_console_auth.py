"""The web console's logins, sessions, CSRF and error pages, over a real archive on
SQLite and on a real PostgreSQL 15 (through fastapi's TestClient, over HTTPS)."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from corekit import DAY, PW, STAFF, World, build_world, make_archive, staff
from dockkit import NS, START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import another, console, csrf_of, logged_in, login, page_csrf

from archive.service import Archive
from archive.users import TOTP_STEP_S
from simulator.clock import SimClock

ROLES = STAFF | {"admin": "administrator"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START + 2 * DAY)


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path, clock: SimClock):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, clock)
    staff(archive, ROLES)
    yield archive
    archive.close()


def audit_kinds(arch: Archive) -> list[tuple[str, dict]]:
    return [(r.kind, r.body) for r in arch.audit.records()]


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


def test_each_role_logs_in_and_sees_its_own_nav(arch: Archive) -> None:
    for name, role in ROLES.items():
        client = console(arch)
        first = client.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/login"
        done = login(client, name, PW)
        assert done.status_code == 303 and done.headers["location"] == "/"
        cookie = done.headers["set-cookie"]
        assert "bodycam_session=" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
        home = client.get("/")
        assert home.status_code == 200
        assert name in home.text and ("退出" in home.text)  # zh-CN first: 退出 = log out
        role_zh = {"archivist": "档案管理员", "officer": "执法人员", "head": "单位负责人"}
        if role in role_zh:
            assert role_zh[role] in home.text
        assert home.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    logins = [b for k, b in audit_kinds(arch) if k == "login"]
    assert {b["user"] for b in logins} >= set(ROLES)
    assert all(b["detail"].get("client") == "testclient" for b in logins[-len(ROLES) :])


def test_a_login_goes_back_where_the_user_was_going_and_never_off_site(arch: Archive) -> None:
    client = console(arch)
    away = client.get("/lang/en", params={"next": "/"})
    assert away.status_code == 303
    sent = client.get("/nowhere?x=1")
    assert sent.status_code == 404  # unknown pages are 404 even before logging in
    first = client.get("/")
    assert first.headers["location"] == "/login"
    done = login(client, "wang", PW, next_url="//evil.example/")
    assert done.headers["location"] == "/"
    client2 = console(arch)
    done = login(client2, "wang", PW, next_url="https://evil.example/")
    assert done.headers["location"] == "/"


def test_a_wrong_password_says_so_and_is_audited(arch: Archive) -> None:
    client = console(arch)
    done = login(client, "wang", "not the password")
    assert done.status_code == 401
    assert "登录失败" in done.text and "bodycam_session" not in done.headers.get("set-cookie", "")
    assert client.get("/").status_code == 303  # still not logged in
    kind, body = audit_kinds(arch)[-1]
    assert kind == "login_failed" and body["target"] == "wang"
    assert body["detail"] == {"reason": "wrong name or password", "client": "testclient"}
    # an unknown user gets the same words
    other = login(client, "nobody", PW)
    assert other.status_code == 401 and "登录失败" in other.text


def test_second_factor(arch: Archive, clock: SimClock) -> None:
    admin = arch.login("admin", PW)
    secret = arch.add_user(admin, "zhou", "supervisor", PW, totp=True)
    client = console(arch)
    assert login(client, "zhou", PW).status_code == 401  # no code
    code = pyotp.TOTP(secret).at(clock.time_ns() // NS)
    assert login(client, "zhou", "wrong password", code).status_code == 401
    assert login(client, "zhou", PW, code).status_code == 303
    again = console(arch)
    assert login(again, "zhou", PW, code).status_code == 401  # a code is good once
    clock.advance(TOTP_STEP_S * NS)
    assert login(again, "zhou", PW, pyotp.TOTP(secret).at(clock.time_ns() // NS)).status_code == 303


def test_failed_logins_are_rate_limited_per_user_and_per_client(
    arch: Archive, clock: SimClock
) -> None:
    client = console(arch)
    for _ in range(5):
        assert login(client, "wang", "wrong password!").status_code == 401
    limited = login(client, "wang", PW)  # the right password, but too late
    assert limited.status_code == 429 and "15 分钟" in limited.text
    kind, body = audit_kinds(arch)[-1]
    assert kind == "login_failed" and body["detail"]["reason"] == "rate limited"
    # another user from the same address is not stopped by wang's failures
    assert login(client, "zhao", PW).status_code == 303
    # per address: 20 failures of any names stop every name from that address
    other = another(client)
    for i in range(15):
        login(other, f"guess{i}", "wrong password!")
    assert login(other, "qian", PW).status_code == 429
    clock.advance(16 * 60 * NS)
    assert login(other, "qian", PW).status_code == 303
    assert login(another(client), "wang", PW).status_code == 303


def test_a_forged_form_is_refused_and_changes_nothing(arch: Archive) -> None:
    client = logged_in(arch, "wang", PW)
    token = page_csrf(client)
    before = len(arch.audit.records())
    forged = client.post("/logout", data={"csrf": "not-the-token"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    no_trace(forged.text)
    missing = client.post("/logout", data={})
    assert missing.status_code == 403
    assert client.get("/").status_code == 200  # still logged in
    # a login form posted from elsewhere (no login cookie) is refused before any check
    stranger = console(arch)
    forged_login = stranger.post(
        "/login", data={"name": "wang", "password": PW, "csrf": token, "next": "/"}
    )
    assert forged_login.status_code == 403 and "bodycam_session" not in forged_login.headers.get(
        "set-cookie", ""
    )
    assert len(arch.audit.records()) == before  # nothing happened
    assert client.post("/logout", headers={"X-CSRF-Token": token}).status_code == 200


def test_an_idle_session_expires_and_logout_ends_one(arch: Archive, clock: SimClock) -> None:
    client = logged_in(arch, "qian", PW, session_minutes=30)
    clock.advance(29 * 60 * NS)
    assert client.get("/").status_code == 200  # use restarts the idle time
    clock.advance(29 * 60 * NS)
    assert client.get("/").status_code == 200
    clock.advance(31 * 60 * NS)
    expired = client.get("/")
    assert expired.status_code == 401 and "会话已过期" in expired.text
    assert "Session expired" in expired.text  # with English beside it
    no_trace(expired.text)
    kind, body = audit_kinds(arch)[-1]
    assert kind == "logout" and body["user"] == "qian"
    assert body["detail"]["reason"] == "expired" and body["detail"]["idle_s"] == 31 * 60
    # logout
    client = logged_in(arch, "qian", PW)
    sid = client.cookies.get("bodycam_session")
    token = page_csrf(client)
    out = client.post("/logout", data={"csrf": token})
    assert out.status_code == 200 and "您已退出" in out.text
    kind, body = audit_kinds(arch)[-1]
    assert kind == "logout" and body["detail"]["reason"] == "logged out"
    assert client.get("/").status_code == 303  # the cookie is gone: to the login page
    replay = another(client).get("/", headers={"Cookie": f"bodycam_session={sid}"})
    assert replay.status_code == 401  # the old id is dead on the server too


def test_error_pages_say_what_went_wrong_in_both_languages(arch: Archive) -> None:
    client = logged_in(arch, "wang", PW)
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert "页面不存在" in missing.text and "Not found" in missing.text
    assert "/no/such/page" in missing.text
    no_trace(missing.text)
    assert client.post("/", data={}).status_code == 405
    english = client.get("/lang/en", params={"next": "/no/such/page"})
    assert english.headers["location"] == "/no/such/page"
    page = client.get("/no/such/page")
    assert re.search(r"<h1>404 Not found</h1>", page.text) and "页面不存在" in page.text
    assert '<html lang="en">' in page.text
    app = client.app

    def broken() -> None:
        raise RuntimeError("a bug with a secret path /etc/shadow in it")

    app.add_api_route("/broken", broken)
    crash = client.get("/broken")
    assert crash.status_code == 500
    assert "Internal error" in crash.text and "/etc/shadow" not in crash.text
    no_trace(crash.text)


def test_templates_escape_what_users_typed(arch: Archive) -> None:
    client = console(arch)
    done = login(client, "<script>alert(1)</script>", PW)
    assert done.status_code == 401
    assert "<script>alert(1)</script>" not in done.text
    assert "&lt;script&gt;" in done.text
    assert csrf_of(done.text)
