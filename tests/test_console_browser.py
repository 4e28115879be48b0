"""The console's own pages in a real browser (Debian's headless Chromium through
chromedriver) against ``bodycam-archive serve`` over the store a simulated shift left:
each role logs in and sees its nav, a wrong password, the officer's day with its badges
(one opened) and a link into the player, the auditor's audit log and its check, and the
error pages (a wrong URL, an expired session). Each page's screenshot goes to the
artifact folder (``$BODYCAM_ARTIFACTS`` or ``tests/artifacts/``)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from consolekit import PEOPLE, PW, Browser, Console, World, build_world, need_chromium

pytestmark = pytest.mark.slow
ZONE = "Asia/Shanghai"

NAV = {  # the nav links each role must (True) or must not (False) see
    "officer": {"/day": True, "/audit": False},
    "archivist": {"/day": True, "/audit": False},
    "supervisor": {"/day": True, "/audit": False},
    "head": {"/day": True, "/audit": True},
    "auditor": {"/day": True, "/audit": True},
    "administrator": {"/day": False, "/audit": False},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    need_chromium()
    return build_world(tmp_path_factory.mktemp("pages") / "w", duration="5m")


@pytest.fixture(scope="module")
def console(world: World):
    with Console(world.archive, "--timezone", ZONE) as running:
        yield running


@pytest.fixture
def browser(console: Console):
    with Browser(console.base) as b:
        yield b


def shift_day(world: World) -> str:
    first = next(r for r in world.shift.records if r.kind == "segment").body["start_utc"]
    moment = dt.datetime.fromisoformat(first[:-1]).replace(tzinfo=dt.UTC)
    return moment.astimezone(ZoneInfo(ZONE)).date().isoformat()


def nav_links(browser: Browser) -> list[str]:
    return browser.js(
        "return Array.from(document.querySelectorAll('header nav a'))"
        ".map(a => a.getAttribute('href'))"
    )


def test_each_role_logs_in_and_sees_its_nav(console: Console) -> None:
    with Browser(console.base) as browser:  # one browser, its cookies cleared between users
        for name, role in PEOPLE.items():
            browser.login(name)
            assert browser.js("return location.pathname") == "/"
            links = nav_links(browser)
            for href, shown in NAV[role].items():
                assert (href in links) == shown, (role, links)
            who = browser.js("return document.querySelector('.who').textContent")
            assert name in who
            browser.shot(f"pages-home-{role}")
            browser.driver.delete_all_cookies()  # logged out: the next logs in afresh
        browser.get("/login")
        browser.shot("pages-login")
        from selenium.webdriver.common.by import By

        browser.driver.find_element(By.NAME, "name").send_keys("li")
        browser.driver.find_element(By.NAME, "password").send_keys("not the password")
        browser.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        browser.wait_js("return document.querySelector('p.error') !== null", what="the refusal")
        assert "登录失败" in browser.js("return document.querySelector('p.error').textContent")
        browser.shot("pages-login-failed")


def test_the_officers_day_with_its_badges(world: World, browser: Browser) -> None:
    browser.login("li")
    browser.get(f"/day?date={shift_day(world)}")
    rows = browser.js("return document.querySelectorAll('table.timeline tbody tr').length")
    badges = browser.js(
        "return Array.from(document.querySelectorAll('[data-badge]')).map(b => b.dataset.badge)"
    )
    segments = [r for r in world.shift.records if r.kind == "segment"]
    assert badges == ["verified"] * len(segments), badges
    assert rows > len(segments)  # with the starts, stops, moments and dockings
    kinds = browser.js(
        "return Array.from(document.querySelectorAll('table.timeline tbody tr'))"
        ".map(r => r.className)"
    )
    assert any("recording_started" in k for k in kinds)
    assert "UTC+08:00" in browser.js("return document.querySelector('thead').textContent")
    browser.shot("pages-day")
    # a badge opens to say what was checked
    browser.js("document.querySelector('details.check summary').click()")
    opened = browser.js("return document.querySelector('details.check').open")
    text = browser.js("return document.querySelector('details.check').textContent")
    assert opened and "Ed25519" in text and "链未断" in text
    browser.shot("pages-day-badge")
    # a key moment recorded during an act opens the player at it
    seek = browser.js(
        "var a = document.querySelector('tr.marker a.seek'); return a && a.getAttribute('href')"
    )
    marker = next(r for r in world.shift.records if r.kind == "marker")
    assert seek == f"/play/{world.device}/{marker.seq}", seek
    browser.get(seek)
    heading = browser.js("return (document.querySelector('h1') || {}).textContent || ''")
    assert not heading[:1].isdigit(), heading  # the player's page, not an error page
    browser.shot("pages-day-moment-in-player")
    browser.get(f"/day?date={shift_day(world)}")
    # the player's link of the first segment leads to its page
    href = browser.js("return document.querySelector('a.play').getAttribute('href')")
    assert href.startswith(f"/play/{world.device}/")
    browser.js("document.querySelector('a.play').click()")
    browser.wait_js(f"return location.pathname === '{href}'", what="the player's page")
    # checked again now, from the badge's page
    browser.get(href.replace("/play/", "/recordings/") + "/checks")
    browser.js("document.querySelector('form[action$=\"/check\"] button').click()")
    browser.wait_js(
        "return document.body.textContent.includes('重新计算文件 SHA-256')"
        " || document.body.textContent.includes('只保留加密文件')",
        what="the check",
    )
    browser.shot("pages-recording-checked")


def test_the_audit_log_and_its_check(browser: Browser) -> None:
    browser.login("qian")
    browser.get("/audit")
    entries = browser.js("return document.querySelectorAll('table.audit tbody tr').length")
    assert entries > 5
    browser.shot("pages-audit")
    browser.js("document.querySelector('a.verify').click()")
    browser.wait_js("return document.querySelector('[data-verdict]') !== null", what="the check")
    verdict = browser.js("return document.querySelector('[data-verdict]').dataset.verdict")
    assert verdict in ("untrusted", "problems", "intact")
    assert "bodycam-verify" in browser.js("return document.querySelector('code').textContent")
    browser.shot("pages-audit-verify")
    # an officer is refused, and the page says why
    with Browser(browser.base) as officer:
        officer.login("li")
        officer.get("/audit")
        heading = officer.js("return document.querySelector('h1').textContent")
        assert heading.startswith("403")
        officer.shot("pages-audit-refused")


def test_error_pages_in_the_browser(browser: Browser) -> None:
    browser.login("wang")
    browser.get("/no/such/page")
    assert browser.js("return document.querySelector('h1').textContent").startswith("404")
    assert "Not found" in browser.js("return document.body.textContent")
    browser.shot("pages-404")
    browser.driver.delete_cookie("bodycam_session")
    browser.driver.add_cookie({"name": "bodycam_session", "value": "not-a-session", "path": "/"})
    browser.get("/day")
    assert "会话已过期" in browser.js("return document.querySelector('h1').textContent")
    browser.shot("pages-expired")
    browser.get("/lang/en?next=/login")
    assert browser.js("return document.documentElement.lang") == "en"
    browser.shot("pages-login-en")
    assert PW  # the people's password is consolekit's
