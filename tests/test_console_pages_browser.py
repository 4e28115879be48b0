"""The case-file, copy, compliance and live pages in a real browser: Debian's headless
Chromium (chromedriver, Selenium) against ``bodycam-archive serve`` as a real process over
the store a simulated shift left.

An archivist opens a case and attaches an act through the forms, enters a party's request;
the head of unit approves it; the archivist exports it, downloads the court bundle in the
browser and ``bodycam-verify`` passes it; an officer is refused the list of cases, the
refusal audited; a compliance finding's link opens the player; and with ``--mqtt`` a
running simulated shift's stoppage alerts reach the live page as they happen, verified,
and one is acknowledged from it. Each page's screenshot goes to the artifact folder
(``$BODYCAM_ARTIFACTS`` or ``tests/artifacts/``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import Broker
from consolekit import Browser, Console, World, acts, build_world, need_chromium
from dockkit import store_trust

from archive.service import Archive
from evidence.unitkey import show_fingerprint

pytestmark = pytest.mark.slow
VERIFIED = '#alerts tr.alert[data-verdict="verified"]'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    need_chromium()
    return build_world(tmp_path_factory.mktemp("pages") / "w", duration="5m", sealed_act=None)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def console(world: World, broker: Broker):
    fp = show_fingerprint(sorted(store_trust(world.shift.root))[0])
    live = ["--mqtt", f"{broker.host}:{broker.port}", "--mqtt-insecure", "--unit-key", fp]
    with Console(world.archive, *live) as running:
        yield running


def by(name: str):
    from selenium.webdriver.common.by import By

    return getattr(By, name)


def fill(b: Browser, form: str, **values: str) -> None:
    """Type into the named fields of the form matched by CSS ``form``."""
    element = b.driver.find_element(by("CSS_SELECTOR"), form)
    for name, value in values.items():
        field = element.find_element(by("NAME"), name)
        if field.tag_name == "select":
            from selenium.webdriver.support.ui import Select

            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(value)


def submit(b: Browser, form: str, button: str = "button[type=submit]") -> None:
    old = b.js("return location.href + '#' + performance.timeOrigin")
    b.driver.find_element(by("CSS_SELECTOR"), f"{form} {button}").click()
    b.wait_js(f"return location.href + '#' + performance.timeOrigin != {old!r}", what=form)


def audit(world: World, kind: str) -> list[dict]:
    with Archive.open(world.archive) as arch:
        return [r.body for r in arch.audit.records() if r.kind == kind]


def test_open_a_case_approve_a_copy_download_the_bundle_and_verify_it(
    world: World, console: Console, tmp_path: Path
) -> None:
    act = acts(world.shift)[0]
    with Browser(console.base) as wang:
        wang.login("wang")
        wang.get("/cases/new")
        fill(
            wang,
            "form.grid",
            kind_of_act="检查 inspection",
            procedure="inspection",
            parties="张三",
            officers=world.officer,
            classification="internal",
        )
        submit(wang, "form.grid")
        number = wang.js("return location.pathname").rsplit("/", 1)[1]
        fill(wang, 'form[action$="/attach-act"]', device=world.device, act=str(act.start_seq))
        submit(wang, 'form[action$="/attach-act"]')
        rows = wang.js("return document.querySelectorAll('table.entries tr.recording').length")
        assert rows == len(act.segments) and rows > 0
        wang.shot("case-page")
        fill(wang, 'form[action$="/copies"]', requester="张三", kind="bundle", purpose="复议")
        submit(wang, 'form[action$="/copies"]')
        request_path = wang.js("return location.pathname")
        assert wang.js("return document.querySelector('h1 .badge').dataset.status") == "pending"
        wang.get("/cases")
        assert wang.js(f"return !!document.querySelector('tr[data-case=\"{number}\"]')")
        wang.shot("cases-list")
    with Browser(console.base) as zhao:
        zhao.login("zhao")
        zhao.get(request_path)
        fill(zhao, "form.decide", reason="供复议使用 for the appeal")
        submit(zhao, "form.decide", 'button[value="approve"]')
        assert zhao.js("return document.querySelector('h1 .badge').dataset.status") == "approved"
        zhao.shot("copy-approved")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with Browser(console.base) as wang:
        wang.driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        wang.login("wang")
        wang.get(request_path)
        submit(wang, "form.export")
        steps = wang.js(
            "return [...document.querySelectorAll('table.steps tr[data-step]')]"
            ".map(r => r.dataset.step + ':' + r.querySelector('.by').textContent)"
        )
        assert steps == ["requested:wang", "approved:zhao", "exported:wang"]
        wang.shot("copy-exported")
        wang.driver.find_element(by("CSS_SELECTOR"), "p.downloads a.button").click()
        deadline = time.monotonic() + 120
        while not [p for p in downloads.glob("*.zip")] or list(downloads.glob("*.crdownload")):
            assert time.monotonic() < deadline, "the download did not finish"
            time.sleep(0.1)  # Chromium writes the file; there is no event to wait on here
    (archive_zip,) = downloads.glob("*.zip")
    with zipfile.ZipFile(archive_zip) as zf:
        zf.extractall(tmp_path / "bundle")
    (bundle,) = [p.parent for p in (tmp_path / "bundle").rglob("manifest.json")]
    with Archive.open(world.archive) as arch:
        from evidence.unitkey import fingerprint

        archive_fp = show_fingerprint(fingerprint(arch.identity.public_key_hex))
    unit_fp = show_fingerprint(sorted(store_trust(world.shift.root))[0])
    verified = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(bundle)]
        + ["--unit-key", unit_fp, "--archive-key", archive_fp],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]


def test_an_officer_is_refused_the_list_of_cases_and_the_refusal_is_audited(
    world: World, console: Console
) -> None:
    with Browser(console.base) as li:
        li.login("li")
        li.get("/cases")
        assert li.js("return document.querySelector('.error-page').dataset.status") == "403"
        li.shot("cases-refused-officer")
    assert [r["detail"]["action"] for r in audit(world, "refusal") if r["user"] == "li"][-1] == (
        "view"
    )


def test_a_compliance_finding_opens_the_player(world: World, console: Console) -> None:
    with Browser(console.base) as sun:
        sun.login("sun")
        for view in ("officer", "act", "article"):
            sun.get(f"/compliance?view={view}")
            sun.shot(f"compliance-{view}")
        links = sun.js("return [...document.querySelectorAll('a.play')].map(a => a.href)")
        assert links, "the shift's acts have findings"
        sun.driver.find_element(by("CSS_SELECTOR"), "a.play").click()
        sun.wait_js("return location.pathname.startsWith('/play/')", what="the player")
        sun.shot("compliance-finding-in-player")


def test_a_running_shift_s_alerts_arrive_live_and_are_acknowledged(
    world: World, console: Console, broker: Broker
) -> None:
    with Browser(console.base) as sun:
        sun.login("sun")
        sun.get("/live")
        sun.wait_js(
            "return document.getElementById('live-state').textContent.trim() == '已连接'",
            what="the event stream",
        )
        shift = subprocess.Popen(
            [sys.executable, "-m", "simulator", "shift", "--out", str(world.shift.root), "-q"]
            + ["--dock", "--duration", "5m", "--mqtt", f"{broker.host}:{broker.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            sun.wait_js(
                f"return document.querySelector({json.dumps(VERIFIED + ' form.ack')})",
                timeout=240,
                what="a verified alert from the running shift",
            )
            sun.shot("live-alert")
            assert sun.js("return document.querySelector('#devices tr[data-online]') != null")
        finally:
            _, err = shift.communicate(timeout=300)
        assert shift.returncode == 0, err[-2000:]
        seq = sun.js(f"return document.querySelector({json.dumps(VERIFIED)}).dataset.seq")
        row = f'{VERIFIED}[data-seq="{seq}"]'
        submit(sun, f"{row} form.ack")
        sun.wait_js(
            f"return document.querySelector({json.dumps(row + ' .ack-cell')})"
            ".textContent.includes('sun')",
            what="the acknowledgement",
        )
        sun.shot("live-acknowledged")
    acked = audit(world, "acknowledge")
    assert [(a["user"], a["detail"]["seq"]) for a in acked] == [("sun", int(seq))]
