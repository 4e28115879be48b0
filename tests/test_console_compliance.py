"""The console's compliance report over a real archive and dock store, on SQLite and on a
real PostgreSQL: the dock's own report (``bodycam-dock report compliance``) per officer,
per act and per article, each finding linked to its moment in the player; who may see it
as archive/policy.py says (each refusal audited); bad filters get an error page."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from corekit import DAY, PW, STAFF, World, build_world, copy_world, make_archive, staff
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import csrf_of, logged_in

from archive.service import Archive
from archive.web.compliance import arrange
from archive.web.forms import seconds_between
from simulator.clock import SimClock

ROLES = STAFF


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 3 * DAY))
    staff(archive, ROLES)
    yield archive
    archive.close()


def client(arch: Archive, name: str):
    return logged_in(arch, name, PW)


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


def test_the_report_three_ways_with_a_player_link_for_every_finding(
    arch: Archive, world: World
) -> None:
    report = arch.compliance_report(arch.login("sun", PW))
    acts = report["officers"]["A1024"]["acts"]
    findings = [(a, f) for a in acts for f in a["findings"]]
    assert findings, "the world's acts have findings (no procedure chosen, no announcement)"
    sun = client(arch, "sun")
    page = sun.get("/compliance")
    assert page.status_code == 200, page.text[:800]
    assert "执法全过程记录合规报告" in page.text and 'data-officer="A1024"' in page.text
    for kind in report["officers"]["A1024"]["by_kind"]:
        assert f'data-kind="{kind}"' in page.text
    links = [html.unescape(u) for u in re.findall(r'class="play" href="([^"]+)"', page.text)]
    assert len(links) == len(findings)
    for (act, finding), link in zip(findings, links, strict=True):
        url = urlsplit(link)
        assert url.path == f"/play/{act['device']}/{act['start_seq']}"
        t = float(parse_qs(url.query)["t"][0])
        assert t >= 0
        assert finding["article"] in (6, 38)
    opened = sun.get(links[-1])  # the player's own page, at that moment of the act
    assert opened.status_code == 200, opened.text[:600]
    per_act = sun.get("/compliance", params={"view": "act"})
    starts = re.findall(r'data-device="([^"]+)" data-start-seq="(\d+)"', per_act.text)
    assert starts == [(a["device"], str(a["start_seq"])) for a in acts]
    per_article = sun.get("/compliance", params={"view": "article"})
    articles = re.findall(r'data-article="(\d+)"', per_article.text)
    assert articles == sorted({str(f["article"]) for _, f in findings}, key=int)
    assert per_article.text.count('class="play"') == len(findings)
    english = sun.get("/lang/en", params={"next": "/compliance"})
    assert english.status_code == 303
    page = sun.get("/compliance")
    assert "compliance report" in page.text and "the recording was not announced" in page.text
    views = [r.body["detail"] for r in arch.audit.records() if r.kind == "view"]
    assert sum(1 for v in views if v.get("what") == "compliance report") == 1 + 4  # API, pages


def test_who_may_see_it_and_bad_filters(arch: Archive) -> None:
    for name in ("wang", "zhao", "qian", "sun"):
        assert client(arch, name).get("/compliance").status_code == 200, name
    for name in ("li", "admin"):
        before = len([r for r in arch.audit.records() if r.kind == "refusal"])
        page = logged_in(arch, name, PW).get("/compliance")
        assert page.status_code == 403 and "may not report" in page.text, name
        refusals = [r.body for r in arch.audit.records() if r.kind == "refusal"][before:]
        assert [(r["user"], r["detail"]["action"]) for r in refusals] == [(name, "report")]
    sun = client(arch, "sun")
    nobody = sun.get("/compliance", params={"officer": "B2048"})
    assert nobody.status_code == 200 and "没有执法记录" in nobody.text
    later = sun.get("/compliance", params={"day_from": "2027-01-01"})
    assert later.status_code == 200 and 'class="play"' not in later.text
    that_day = sun.get("/compliance", params={"day_from": "2026-11-18", "day_to": "2026-11-18"})
    assert that_day.text.count('class="play"') == 4
    for params, words in (
        ({"day_from": "18.11.2026"}, "not a day"),
        ({"day_to": "2026-02-30"}, "not a day"),
        ({"day_from": "2026-11-19", "day_to": "2026-11-18"}, "backwards"),
    ):
        bad = sun.get("/compliance", params=params)
        assert bad.status_code == 400 and words in bad.text, params
        no_trace(bad.text)


def test_a_finding_links_to_its_time_in_the_act() -> None:
    """Arranged from the report alone: the link names the act (its first record) and how
    far into it the finding lies, as the player's ``?t=`` takes it."""
    act = {
        "device": "cam-7",
        "start_seq": 12,
        "start_utc": "2026-11-18T09:00:00.000000Z",
        "findings": [
            {
                "kind": "stop_unexplained",
                "article": 5,
                "zh": "中止记录未说明原因",
                "en": "recording stopped without a stated reason",
                "seqs": [19],
                "utc": "2026-11-18T09:00:42.500000Z",
            }
        ],
    }
    data = {"officers": {"A1": {"acts": [act], "acts_with_findings": 1, "by_kind": {}}}}

    def link(act: dict, utc: str | None) -> str:
        t = seconds_between(act["start_utc"], utc) if utc else 0.0
        return f"/play/{act['device']}/{act['start_seq']}?t={t:.1f}"

    shown = arrange(data, link)
    (finding,) = shown["acts"][0]["findings"]
    assert finding["play"] == "/play/cam-7/12?t=42.5"
    assert shown["articles"] == [(5, [(shown["acts"][0], finding)])]
    assert finding["text_en"] == "recording stopped without a stated reason"


def test_an_act_of_the_report_is_attached_to_a_case_from_it(arch: Archive, world: World) -> None:
    number = arch.open_case(arch.login("wang", PW), "x", "inspection", [], ["A1024"], "internal")
    wang = client(arch, "wang")
    page = wang.get("/compliance", params={"view": "act"})
    forms = re.findall(
        r'action="/cases/attach-act".*?name="device" value="([^"]+)".*?name="act" value="(\d+)"',
        page.text,
        re.S,
    )
    assert forms == [(world.device, str(seq)) for seq, _ in world.acts]
    assert f"#{world.acts[1][0]}" in page.text  # the act's first record, as attaching asks
    token = csrf_of(page.text)
    device, seq = forms[1]
    done = wang.post(
        "/cases/attach-act", data={"csrf": token, "number": number, "device": device, "act": seq}
    )
    assert done.status_code == 303 and done.headers["location"].startswith(f"/cases/{number}")
    held = [e["file"] for e in arch.show_case(arch.login("zhao", PW), number)["entries"]]
    assert held == list(world.acts[1][1])
    missing = wang.post("/cases/attach-act", data={"csrf": token, "device": device, "act": seq})
    assert missing.status_code == 400 and "which case" in missing.text
    assert (
        'action="/cases/attach-act"'
        not in client(arch, "sun").get("/compliance", params={"view": "act"}).text
    )
    case_page = wang.get(f"/cases/{number}")
    assert "/compliance?view=act&amp;officer=A1024" in case_page.text


def test_an_act_of_a_case_above_the_viewers_clearance_is_withheld(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """As on the day page: a supervisor (cleared up to internal) sees an act filed in a
    personal-privacy case only as withheld, none of its times or findings, one refusal
    audited for the page; the archivist, cleared for it, sees it all; one query."""
    world = copy_world(world, tmp_path / "world")  # its case seals media in its own store
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 3 * DAY))
    admin = arch.login("admin", PW)
    for name in ("wang", "sun"):
        arch.add_user(admin, name, ROLES[name], PW)
    arch.sync_recordings()
    wang = arch.login("wang", PW)
    number = arch.open_case(wang, "x", "inspection", ["Zhang San"], ["A1024"], "personal_privacy")
    (first, _), (second, _) = world.acts
    arch.attach_act(wang, number, world.device, first)
    full = arch.compliance_report(wang)["officers"]["A1024"]
    assert [a["start_seq"] for a in full["acts"]] == [first, second] and not full["withheld"]
    hidden = full["acts"][0]
    assert hidden["findings"]
    statements: list[str] = []

    def note(*args) -> None:
        statements.append(args[2])

    sa.event.listen(arch.engine, "before_cursor_execute", note)
    report = arch.compliance_report(arch.login("sun", PW))
    sa.event.remove(arch.engine, "before_cursor_execute", note)
    assert sum("case_entries" in q for q in statements) == 1  # not one per act
    slot = report["officers"]["A1024"]
    assert [a["start_seq"] for a in slot["acts"]] == [second]
    assert slot["withheld"] == [
        {"device": world.device, "start_seq": first, "classification": "personal_privacy"}
    ]
    assert sum(c["count"] for c in slot["by_kind"].values()) == len(slot["acts"][0]["findings"])
    refusals = [r.body for r in arch.audit.records() if r.kind == "refusal"]
    assert len(refusals) == 1 and refusals[0]["user"] == "sun"
    assert refusals[0]["detail"]["acts"] == [f"{world.device}:{first} (personal_privacy)"]
    sun = client(arch, "sun")
    for view in ("officer", "act", "article"):
        page = sun.get("/compliance", params={"view": view})
        assert page.status_code == 200, page.text[:800]
        assert "1 次执法属于您无权查看的案件" in page.text and "个人隐私" in page.text
        assert f"/play/{world.device}/{first}" not in page.text
        assert f'data-start-seq="{first}"' not in page.text
        for utc in (hidden["start_utc"], *(f["utc"] for f in hidden["findings"])):
            assert utc[:19] not in page.text, (view, utc)  # no time of the withheld act
        assert f'data-withheld="{world.device}:{first}"' in page.text
    assert f"/play/{world.device}/{second}" in page.text
    refusals = [r.body for r in arch.audit.records() if r.kind == "refusal"]
    assert len(refusals) == 1 + 3  # one per page view
    english = sun.get("/lang/en", params={"next": "/compliance"})
    assert english.status_code == 303
    assert "withheld: held by a case classified" in sun.get("/compliance").text
    seen = client(arch, "wang").get("/compliance", params={"view": "act"})
    assert f'data-start-seq="{first}"' in seen.text and "data-withheld" not in seen.text
    arch.close()
