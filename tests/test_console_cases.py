"""The console's case-file pages over a real archive and dock store, on SQLite and on a
real PostgreSQL: opening a case, attaching an act, a time range and an uploaded document,
closing it and adding afterwards with a reason; the list's deadlines; each role allowed or
refused as archive/policy.py says (every refusal audited); forged forms and bad input
change nothing and get an error page."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from corekit import DAY, PW, STAFF, World, build_world, make_archive, staff
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import csrf_of, logged_in, page_csrf

from archive.service import Archive
from evidence.clock import parse_utc
from simulator.clock import SimClock

TZ = "Asia/Shanghai"
ROLES = STAFF


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


def client(arch: Archive, name: str):
    return logged_in(arch, name, PW, timezone=TZ)


def local(utc: str, shift_s: float = 0) -> str:
    """A journal stamp as a browser's datetime-local value in the console's zone."""
    moment = dt.datetime.fromtimestamp(parse_utc(utc) / 1e9 + shift_s, dt.UTC)
    return moment.astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%dT%H:%M:%S")


def refusals(arch: Archive) -> list[dict]:
    return [r.body for r in arch.audit.records() if r.kind == "refusal"]


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


def open_case(c, classification: str = "internal", officers: str = "A1024") -> str:
    token = page_csrf(c, "/cases/new")
    done = c.post(
        "/cases/new",
        data={
            "csrf": token,
            "kind_of_act": "检查 inspection",
            "procedure": "inspection",
            "parties": "张三\nZhang San Ltd.",
            "officers": officers,
            "classification": classification,
        },
    )
    assert done.status_code == 303, done.text[:800]
    number = done.headers["location"].rsplit("/", 1)[1]
    assert re.fullmatch(r"\d{4}-\d{4}", number)
    return number


def test_open_attach_upload_close_and_add_later_with_a_reason(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    wang = client(arch, "wang")
    number = open_case(wang)
    page = wang.get(f"/cases/{number}")
    assert page.status_code == 200
    assert "张三" in page.text and "Zhang San Ltd." in page.text and "办理中" in page.text
    token = csrf_of(page.text)
    # By act: the first act's segments, as the compliance report names the act.
    first_seq, first_files = world.acts[0]
    done = wang.post(
        f"/cases/{number}/attach-act",
        data={"csrf": token, "device": world.device, "act": str(first_seq)},
    )
    assert done.status_code == 303, done.text[:800]
    # By device and time range, typed in the console's zone (Asia/Shanghai): the second act.
    second = [f for f in world.acts[1][1]]
    done = wang.post(
        f"/cases/{number}/attach-range",
        data={
            "csrf": token,
            "device": world.device,
            "start": local(world.act_ends[0], 60),
            "end": local(world.act_ends[1], 60),
        },
    )
    assert done.status_code == 303, done.text[:800]
    # A document, uploaded with the SHA-256 its sender gave.
    content = "询问笔录\nrecord of the interview\n".encode() * 100
    digest = hashlib.sha256(content).hexdigest()
    done = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token, "title": "询问笔录", "sha256": digest},
        files={"document": ("interview.txt", content, "text/plain")},
    )
    assert done.status_code == 303, done.text[:800]
    shown = arch.show_case(arch.login("zhao", PW), number)
    recordings = [e for e in shown["entries"] if e["kind"] == "recording"]
    assert [e["file"] for e in recordings] == list(first_files) + second
    documents = [e for e in shown["entries"] if e["kind"] == "document"]
    assert [(d["title"], d["sha256"], d["size"]) for d in documents] == [
        ("询问笔录", digest, len(content))
    ]
    assert (arch.folder / "documents" / digest).read_bytes() == content  # hashed in, as the CLI
    page = wang.get(f"/cases/{number}")
    assert page.text.count('class="recording') == len(recordings)
    assert "询问笔录" in page.text and digest in page.text
    back = wang.get(f"/cases/{number}/documents/{digest}")
    assert back.status_code == 200 and back.content == content
    # Close it; a later addition without a reason is refused and changes nothing.
    done = wang.post(f"/cases/{number}/close", data={"csrf": token})
    assert done.status_code == 303
    page = wang.get(f"/cases/{number}")
    assert "已结案" in page.text and 'class="closed-by"' in page.text and "wang" in page.text
    assert f'action="/cases/{number}/close"' not in page.text
    before = len(arch.show_case(arch.login("zhao", PW), number)["entries"])
    late = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token},
        files={"document": ("late.txt", b"a later statement", "text/plain")},
    )
    assert late.status_code == 400 and "closed and immutable" in late.text
    no_trace(late.text)
    assert len(arch.show_case(arch.login("zhao", PW), number)["entries"]) == before
    late = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token, "reason": "当事人补交的陈述 the party's statement, sent late"},
        files={"document": ("late.txt", b"a later statement", "text/plain")},
    )
    assert late.status_code == 303
    page = wang.get(f"/cases/{number}")
    assert page.text.count('class="document after-close"') == 1
    assert "结案后补充" in page.text and "the party&#39;s statement, sent late" in page.text


def test_the_list_shows_deadlines_to_who_may_see_them(
    arch: Archive, world: World, clock: SimClock
) -> None:
    wang = client(arch, "wang")
    mine = open_case(wang)
    other = open_case(wang, officers="B2048")
    token = page_csrf(wang, f"/cases/{mine}")
    for number in (mine, other):
        wang.post(
            f"/cases/{number}/attach-act",
            data={"csrf": token, "device": world.device, "act": str(world.acts[0][0])},
        )
    empty = open_case(wang)  # no act yet: no deadline
    deadline = parse_utc(world.act_ends[0]) + 30 * DAY

    def states(c) -> dict[str, str]:
        page = c.get("/cases")
        assert page.status_code == 200, page.text[:500]
        return dict(re.findall(r'data-case="([^"]+)" data-state="([^"]*)"', page.text))

    assert states(wang) == {mine: "open", other: "open", empty: "no_act"}
    # (The console's sessions run on the archive's clock: days later, a new login.)
    clock.advance(deadline - 3 * DAY - clock.time_ns())
    wang = client(arch, "wang")
    assert states(wang) == {mine: "due_soon", other: "due_soon", empty: "no_act"}
    clock.advance(deadline + DAY - clock.time_ns())
    wang = client(arch, "wang")
    page = wang.get("/cases")
    assert "已逾期" in page.text and "30 日内" in page.text
    assert states(wang)[mine] == "overdue"
    only_overdue = wang.get("/cases", params={"state": "overdue"})
    assert set(re.findall(r'data-case="([^"]+)"', only_overdue.text)) == {mine, other}
    # The officer has no list of cases (the policy refuses it: the list names others'),
    # and no deadline report; the case naming their badge they may open, another not.
    li = client(arch, "li")
    page = li.get("/cases")
    assert page.status_code == 403 and "may see only their own" in page.text
    assert refusals(arch)[-1]["user"] == "li"
    assert li.get(f"/cases/{mine}").status_code == 200
    assert li.get(f"/cases/{other}").status_code == 403
    assert 'href="/cases"' not in li.get("/").text
    assert not any(r["detail"]["action"] == "report" for r in refusals(arch))


def test_each_role_as_the_policy_says_and_every_refusal_audited(
    arch: Archive, world: World
) -> None:
    wang = client(arch, "wang")
    number = open_case(wang, classification="personal_privacy")
    for name in ("li", "qian", "sun"):
        c = client(arch, name)
        token = page_csrf(c)
        before = len(refusals(arch))
        done = c.post(
            "/cases/new",
            data={
                "csrf": token,
                "kind_of_act": "x",
                "procedure": "inspection",
                "classification": "public",
            },
        )
        assert done.status_code == 403 and "may not case open" in done.text, name
        no_trace(done.text)
        attach = c.post(
            f"/cases/{number}/attach-act",
            data={"csrf": token, "device": world.device, "act": str(world.acts[0][0])},
        )
        assert attach.status_code == 403, name
        close = c.post(f"/cases/{number}/close", data={"csrf": token})
        assert close.status_code == 403, name
        got = refusals(arch)[before:]
        assert [r["user"] for r in got] == [name] * len(got) and len(got) == 3, got
    # The auditor's and the supervisor's clearance stops at internal: the case itself.
    page = client(arch, "qian").get(f"/cases/{number}")
    assert page.status_code == 403 and "personal_privacy" in page.text
    assert refusals(arch)[-1]["detail"]["action"] == "view"
    # The head of unit may change and close it.
    zhao = client(arch, "zhao")
    token = page_csrf(zhao, f"/cases/{number}")
    done = zhao.post(
        f"/cases/{number}/attach-act",
        data={"csrf": token, "device": world.device, "act": str(world.acts[1][0])},
    )
    assert done.status_code == 303
    assert zhao.post(f"/cases/{number}/close", data={"csrf": token}).status_code == 303
    assert arch.show_case(arch.login("wang", PW), number)["status"] == "closed"
    # The administrator sees no material at all.
    admin = logged_in(arch, "admin", PW)
    assert admin.get("/cases").status_code == 403


def test_forged_forms_change_nothing(arch: Archive, world: World) -> None:
    wang = client(arch, "wang")
    number = open_case(wang)
    head = arch.audit_head()
    docs = sorted(p.name for p in (arch.folder / "documents").glob("*"))
    for token in (None, "forged-token"):
        data = {} if token is None else {"csrf": token}
        forms = [
            ("/cases/new", {"kind_of_act": "x", "procedure": "inspection"}, None),
            (
                f"/cases/{number}/attach-act",
                {"device": world.device, "act": str(world.acts[0][0])},
                None,
            ),
            (f"/cases/{number}/documents", {}, {"document": ("x.txt", b"x", "text/plain")}),
            (
                "/cases/attach-act",
                {"number": number, "device": world.device, "act": str(world.acts[0][0])},
                None,
            ),
            (f"/cases/{number}/close", {}, None),
        ]
        for path, fields, files in forms:
            done = wang.post(path, data=data | fields, files=files)
            assert done.status_code == 403 and "CSRF" in done.text, path
            no_trace(done.text)
    shown = arch.show_case(arch.login("zhao", PW), number)
    assert shown["status"] == "open" and shown["entries"] == []
    assert len(arch.list_cases(arch.login("zhao", PW))) == 1
    assert sorted(p.name for p in (arch.folder / "documents").glob("*")) == docs
    kinds = [r.kind for r in arch.audit.records() if r.seq > head[0]]
    assert "case" not in kinds


def test_bad_input_gets_a_page_that_says_what_went_wrong(arch: Archive, world: World) -> None:
    wang = client(arch, "wang")
    number = open_case(wang)
    token = page_csrf(wang, f"/cases/{number}")
    unknown = wang.get("/cases/2026-9999")
    assert unknown.status_code == 404 and "2026-9999" in unknown.text
    cases = [
        (
            f"/cases/{number}/attach-range",
            {"device": world.device, "start": "2026-11-20T10:00", "end": "2026-11-20T09:00"},
            400,
            "before it starts",
        ),
        (
            f"/cases/{number}/attach-range",
            {"device": world.device, "start": "yesterday", "end": "2026-11-20T09:00"},
            400,
            "date and time",
        ),
        (
            f"/cases/{number}/attach-range",
            {"device": world.device, "start": "2026-02-30T10:00", "end": "2026-03-01T09:00"},
            400,
            "not a real date",
        ),
        (
            f"/cases/{number}/attach-range",
            {"device": "cam-404", "start": "2026-11-18T10:00", "end": "2026-11-18T12:00"},
            404,
            "cam-404",
        ),
        (f"/cases/{number}/attach-act", {"device": world.device, "act": "abc"}, 400, "abc"),
        (f"/cases/{number}/attach-act", {"device": world.device, "act": "99999"}, 404, "99999"),
        ("/cases/2026-9999/close", {}, 404, "2026-9999"),
        (
            "/cases/new",
            {"kind_of_act": "x", "procedure": "inspection", "classification": "top"},
            400,
            "unknown classification",
        ),
    ]
    for path, fields, status, words in cases:
        done = wang.post(path, data={"csrf": token} | fields)
        assert done.status_code == status and words in done.text, (path, fields, done.text[:600])
        no_trace(done.text)
    content = b"the signed statement of the party\n" * 50
    damaged = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token, "sha256": hashlib.sha256(content).hexdigest()},
        files={"document": ("statement.txt", content[:-7], "text/plain")},  # cut short
    )
    assert damaged.status_code == 400 and "the upload is damaged" in damaged.text
    no_file = wang.post(f"/cases/{number}/documents", data={"csrf": token})
    assert no_file.status_code == 400 and "document" in no_file.text
    empty = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token},
        files={"document": ("empty.txt", b"", "text/plain")},
    )
    assert empty.status_code == 400 and "empty" in empty.text
    for page in (damaged, no_file, empty):
        no_trace(page.text)
    assert arch.show_case(arch.login("zhao", PW), number)["entries"] == []
    assert not [p for p in (arch.folder / "documents").glob("*") if not p.name.startswith(".")]


def test_the_classification_changes_with_a_reason_as_the_policy_says(
    arch: Archive, world: World
) -> None:
    wang = client(arch, "wang")
    number = open_case(wang, classification="public")
    token = page_csrf(wang, f"/cases/{number}")
    silent = wang.post(
        f"/cases/{number}/classify", data={"csrf": token, "classification": "internal"}
    )
    assert silent.status_code == 400 and "must say why" in silent.text
    done = wang.post(
        f"/cases/{number}/classify",
        data={"csrf": token, "classification": "internal", "reason": "names a witness"},
    )
    assert done.status_code == 303
    assert arch.show_case(arch.login("zhao", PW), number)["classification"] == "internal"
    # The archivist may not raise it to a level they cannot see; the refusal is audited.
    up = wang.post(
        f"/cases/{number}/classify",
        data={"csrf": token, "classification": "state_secret", "reason": "x"},
    )
    assert up.status_code == 403 and "state_secret" in up.text
    assert refusals(arch)[-1]["detail"]["action"] == "classify"
    sun = client(arch, "sun")
    page = sun.get(f"/cases/{number}")
    assert page.status_code == 200 and f'action="/cases/{number}/classify"' not in page.text
    refused = sun.post(
        f"/cases/{number}/classify",
        data={"csrf": csrf_of(page.text), "classification": "public", "reason": "x"},
    )
    assert refused.status_code == 403 and "may not classify" in refused.text
    forged = wang.post(
        f"/cases/{number}/classify",
        data={"csrf": "forged", "classification": "public", "reason": "x"},
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert arch.show_case(arch.login("zhao", PW), number)["classification"] == "internal"
    wrong = wang.post(
        f"/cases/{number}/classify",
        data={"csrf": token, "classification": "secret-ish", "reason": "x"},
    )
    assert wrong.status_code == 400 and "unknown classification" in wrong.text
    no_trace(wrong.text)
