"""The console attacked, as an outsider, as a logged-in officer and as each other role,
over a real archive and the store a simulated shift left (one act of it sealed in a
``personal_privacy`` case): access control and IDOR (pages, HLS playlist, segments with
Range, photos, documents, copies, the audit log, live status), path traversal, CSRF on
every state-changing route, stored XSS through every field a person or a hostile device
fills, open redirects, session fixation and cookie flags, the login rate limit, error
pages for malformed input, header injection and cache headers on confidential responses.
Each refusal must be audited and leave the store and the database as they were."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from consolekit import PW, World, acts, build_world
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import another, console, csrf_of, logged_in, login, page_csrf

from archive.service import Archive

XSS = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>' onfocus=alert(3) '"
"""What a hostile person or device types into every field that is shown again."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    built = build_world(tmp_path_factory.mktemp("hostile"), duration="4m")
    # Acts 0 (in no case) and 1 (sealed, personal privacy) are attacked; 2 to 4 are filed
    # in cases of the tests' own.
    assert len(acts(built.shift)) >= 5, acts(built.shift)
    with Archive.open(built.archive) as arch:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "ma", "officer", PW, officer="B2048")  # another officer
    return built


@pytest.fixture
def arch(world: World) -> Iterator[Archive]:
    archive = Archive.open(world.archive)
    yield archive
    archive.close()


# -- what an attack must not change ------------------------------------------------------

TABLES = ("users", "cases", "case_entries", "copy_requests", "recordings", "holds")
TABLES += ("removals", "device_events", "recording_checks")


def state(arch: Archive, world: World) -> tuple[dict, dict]:
    """Every file of the store and the archive's folder (but the audit log), and every
    row of the database's tables (but the audit head): what a refused attack leaves."""
    files = {}
    for root in (world.shift.store, world.archive):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "audit" not in path.relative_to(root).parts[:1]:
                if path.suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm"):
                    continue
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, state_of(arch)


def state_of(arch: Archive) -> dict:
    """Every row of the database's tables but the audit head."""
    rows = {}
    with arch.engine.connect() as conn:
        for name in TABLES:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            rows[name] = sorted(map(repr, conn.execute(sa.select(table)).all()))
    return rows


def refusals(arch: Archive) -> list[tuple[str, str, dict]]:
    return [(r.body["user"], r.body["target"], r.body) for r in _kinds(arch, "refusal")]


def _kinds(arch: Archive, kind: str) -> list:
    return [r for r in arch.audit.records() if r.kind == kind]


def audited(arch: Archive, kind: str = "refusal") -> int:
    return len(_kinds(arch, kind))


def said(response) -> str:
    """What an error page says (its detail lines), for assertion messages."""
    found = re.findall(r'<p class="detail[^"]*"[^>]*>(.*?)</p>', response.text, re.S)
    return f"{response.status_code}: {' | '.join(found) or response.text[:300]}"


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "/work/" not in text, text[:2000]
    assert "site-packages" not in text, text[:2000]


def sealed_act(world: World):
    return acts(world.shift)[world.sealed_act]


def open_act(world: World):
    """An act in no case (internal, naming the camera's officer)."""
    return acts(world.shift)[0]


def users(arch: Archive, *names: str):
    return {n: logged_in(arch, n, PW) for n in names}


# -- access control and IDOR --------------------------------------------------------------


def material_routes(world: World) -> list[str]:
    """Every GET that hands out something of the camera's recordings."""
    dev, act = world.device, open_act(world)
    start, seg = act.start_seq, act.segments[0].seq
    sealed = sealed_act(world)
    return [
        f"/play/{dev}/{start}",
        f"/play/{dev}/{start}?t=1",
        f"/play/{dev}/{start}/index.m3u8",
        f"/play/{dev}/{start}/media/{seg}.ts",
        f"/play/{dev}/{seg}/media/{seg}.ts",
        f"/play/{dev}/{sealed.start_seq}",
        f"/play/{dev}/{sealed.start_seq}/index.m3u8",
        f"/play/{dev}/{sealed.start_seq}/media/{sealed.segments[0].seq}.ts",
        f"/recordings/{dev}/{seg}/checks",
        f"/recordings/{dev}/{sealed.segments[0].seq}/checks",
        f"/day?officer={world.officer}",
        f"/cases/{world.case}",
    ]


def test_another_officer_gets_nothing_of_a_colleagues_recordings(
    arch: Archive, world: World
) -> None:
    ma = logged_in(arch, "ma", PW)  # officer B2048; the camera is A1024's
    before = state(arch, world)
    for path in material_routes(world):
        n = audited(arch)
        got = ma.get(path, headers={"Range": "bytes=0-1000"})
        assert got.status_code == 403, (path, got.status_code, got.text[:300])
        assert got.headers["content-type"].startswith("text/html"), path
        assert b"G@" not in got.content[:4]  # no MPEG-TS packet
        no_trace(got.text)
        assert audited(arch) == n + 1, path  # the refusal is in the audit log
        assert refusals(arch)[-1][0] == "ma"
    # The badge's "check again now" with ma's own valid CSRF token: refused, nothing kept.
    token = page_csrf(ma, "/")
    seg = open_act(world).segments[0].seq
    got = ma.post(f"/recordings/{world.device}/{seg}/check", data={"csrf": token})
    assert got.status_code == 403
    assert state(arch, world) == before


def test_a_role_below_the_cases_classification_gets_no_sealed_byte(
    arch: Archive, world: World
) -> None:
    sealed, free = sealed_act(world), open_act(world)
    dev = world.device
    for name in ("sun", "qian"):  # supervisor, auditor: up to internal
        c = logged_in(arch, name, PW)
        got = c.get(f"/play/{dev}/{free.segments[0].seq}/media/{free.segments[0].seq}.ts")
        assert got.status_code == 200 and got.content[:1] == b"G"  # what they may see
        for seq in [sealed.start_seq] + [s.seq for s in sealed.segments]:
            for path in (f"/play/{dev}/{seq}", f"/play/{dev}/{seq}/index.m3u8"):
                got = c.get(path)
                assert got.status_code == 403, (name, path)
            n = audited(arch)
            got = c.get(f"/play/{dev}/{seq}/media/{seq}.ts", headers={"Range": "bytes=0-"})
            assert got.status_code in (403, 404), (name, seq, got.status_code)
            assert not got.content.startswith(b"G")
            assert audited(arch) >= n + (got.status_code == 403)
            # A sealed segment asked for through an act the user may see: not in that act.
            got = c.get(f"/play/{dev}/{free.start_seq}/media/{seq}.ts")
            assert got.status_code == 404 and not got.content.startswith(b"G")
        day = c.get(f"/day?officer={world.officer}&date={sealed.start_utc[:10]}")
        assert day.status_code == 200
        for s in sealed.segments:
            assert f'/play/{dev}/{s.seq}"' not in day.text


def test_the_administrator_sees_no_material_and_no_one_else_reads_the_audit_log(
    arch: Archive, world: World
) -> None:
    admin = logged_in(arch, "admin", PW)
    for path in material_routes(world) + ["/cases", "/copies", "/compliance", "/live"]:
        got = admin.get(path)
        assert got.status_code == 403, (path, got.status_code)
        no_trace(got.text)
    for name in ("li", "wang", "sun", "admin"):
        c = logged_in(arch, name, PW)
        for path in ("/audit", "/audit/verify", "/audit?before=5&kind=login"):
            n = audited(arch)
            got = c.get(path)
            assert got.status_code == 403, (name, path)
            assert audited(arch) == n + 1
    assert logged_in(arch, "qian", PW).get("/audit").status_code == 200


def test_an_officer_has_no_live_status_compliance_or_copies(arch: Archive, world: World) -> None:
    li = logged_in(arch, "li", PW)
    for path in ("/live", "/live/events", "/live/events?after=0", "/compliance", "/copies"):
        n = audited(arch)
        got = li.get(path, headers={"Last-Event-ID": "0"})
        assert got.status_code == 403, (path, got.status_code)
        assert audited(arch) == n + 1


def test_documents_and_copies_of_a_case_are_for_those_cleared_for_it(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    """A state-secret case's document and exported copy: only the head reads the document;
    no one downloads the copy but an archivist cleared for it (and none is)."""
    zhao, wang = logged_in(arch, "zhao", PW), logged_in(arch, "wang", PW)
    token = page_csrf(zhao, "/cases/new")
    done = zhao.post(
        "/cases/new",
        data={
            "csrf": token,
            "kind_of_act": "secret",
            "procedure": "inspection",
            "parties": "x",
            "officers": world.officer,
            "classification": "state_secret",
        },
    )
    assert done.status_code == 303, said(done)
    secret = done.headers["location"].rsplit("/", 1)[1]
    doc = b"a state secret\n"
    done = zhao.post(
        f"/cases/{secret}/documents",
        data={"csrf": token, "title": "s.txt"},
        files={"document": ("s.txt", doc)},
    )
    assert done.status_code == 303, said(done)
    sha = hashlib.sha256(doc).hexdigest()
    assert zhao.get(f"/cases/{secret}/documents/{sha}").content == doc
    # Everyone else, by its own case number and by another case's number (IDOR).
    for name in ("wang", "li", "sun", "qian", "ma", "admin"):
        c = wang if name == "wang" else logged_in(arch, name, PW)
        for path in (f"/cases/{secret}/documents/{sha}", f"/cases/{world.case}/documents/{sha}"):
            got = c.get(path)
            assert got.status_code in (403, 404), (name, path, got.status_code)
            assert doc not in got.content
    act = acts(world.shift)[3]  # an act no other attack uses, sealed by this
    done = zhao.post(
        f"/cases/{secret}/attach-act",
        data={"csrf": token, "device": world.device, "act": str(act.start_seq)},
    )
    assert done.status_code == 303, said(done)
    # A copy request of it: entered by the head, approved; the archivist may not export
    # (the clearance), and no one downloads what was never exported.
    done = zhao.post(
        f"/cases/{secret}/copies",
        data={"csrf": token, "requester": "court", "kind": "bundle", "purpose": "trial"},
    )
    assert done.status_code == 303, said(done)
    rid = done.headers["location"].rsplit("/", 1)[1]
    got = zhao.post(f"/copies/{rid}/decide", data={"csrf": token, "decision": "approve"})
    assert got.status_code == 303, said(got)
    before = state(arch, world)
    wtoken = page_csrf(wang, "/")
    got = wang.post(f"/copies/{rid}/export", data={"csrf": wtoken})
    assert got.status_code in (403, 404), said(got)
    for c in (zhao, wang):
        for path in (f"/copies/{rid}/copy.zip", f"/copies/{rid}/files/x.mp4", f"/copies/{rid}"):
            got = c.get(path)
            assert got.status_code in (200, 403, 404), (path, got.status_code)
            assert not got.content.startswith(b"PK"), path
    assert state(arch, world) == before


# -- CSRF -------------------------------------------------------------------------------


def test_every_state_changing_route_checks_csrf(arch: Archive) -> None:
    """Structurally: each route that is not a GET carries the CSRF dependency (but the
    login form, which has its own token), and no GET route takes a form."""
    import importlib

    from fastapi.routing import APIRoute

    from archive.web.app import ROUTER_MODULES
    from archive.web.auth import check_csrf

    console(arch)  # every module imported and included
    posts = 0
    routes = [r for m in ROUTER_MODULES for r in importlib.import_module(m).router.routes]
    for route in routes:
        assert isinstance(route, APIRoute), route
        deps = [d.call for d in route.dependant.dependencies]
        if route.methods - {"GET", "HEAD"}:
            posts += 1
            if route.path != "/login":
                assert check_csrf in deps, f"{route.methods} {route.path} has no CSRF check"
        else:
            assert not route.dependant.body_params, f"GET {route.path} reads a form"
    assert posts >= 12


def post_routes(world: World, number: str) -> list[tuple[str, dict]]:
    dev, seg = world.device, open_act(world).segments[0].seq
    return [
        ("/logout", {}),
        (f"/recordings/{dev}/{seg}/check", {}),
        ("/cases/new", {"kind_of_act": "x", "procedure": "inspection", "parties": "p"}),
        (f"/cases/{number}/attach-range", {"device": dev, "start": "2026-01-01", "end": "2027"}),
        (f"/cases/{number}/attach-act", {"device": dev, "act": "1"}),
        (f"/cases/{number}/close", {}),
        (f"/cases/{number}/copies", {"requester": "r", "kind": "bundle", "purpose": "p"}),
        ("/copies/1/decide", {"decision": "approve"}),
        ("/copies/1/export", {}),
        ("/live/ack", {"device": dev, "seq": "1"}),
    ]


@pytest.mark.parametrize("token", ["", "forged", "login-token"])
def test_a_forged_form_on_every_post_route_changes_nothing(
    arch: Archive, world: World, token: str
) -> None:
    zhao = logged_in(arch, "zhao", PW)
    if token == "login-token":  # the login form's token is no session's token
        token = csrf_of(another(zhao).get("/login").text)
    before = state(arch, world)
    for path, form in post_routes(world, world.case):
        for how in ("form", "header", "json"):
            if how == "form":
                got = zhao.post(path, data=form | {"csrf": token})
            elif how == "header":
                got = zhao.post(path, data=form, headers={"X-CSRF-Token": token})
            else:
                got = zhao.post(path, json=form | {"csrf": token})
            assert got.status_code == 403, (path, how, said(got))
            no_trace(got.text)
    got = zhao.post(
        f"/cases/{world.case}/documents",
        data={"csrf": token},
        files={"document": ("x.txt", b"forged upload")},
    )
    assert got.status_code == 403
    assert state(arch, world) == before
    assert zhao.get("/").status_code == 200  # the forged logout did not log out


def test_a_cross_site_request_without_the_cookie_changes_nothing(
    arch: Archive, world: World
) -> None:
    """SameSite=Strict keeps the cookie off a cross-site POST: the route sees no session."""
    stranger = console(arch)
    before = state(arch, world)
    for path, form in post_routes(world, world.case):
        got = stranger.post(path, data=form | {"csrf": "x"})
        assert got.status_code == 401, (path, said(got))
    assert state(arch, world) == before


# -- caches, cookies, sessions, redirects -------------------------------------------------


def test_nothing_confidential_is_kept_in_a_browser_or_proxy_cache(
    arch: Archive, world: World
) -> None:
    """Every response that carries material (pages, playlists, segments in clear and
    decrypted, photos, documents, copies, errors) says ``Cache-Control: no-store``: a
    shared office PC keeps nothing after logout."""
    li = logged_in(arch, "li", PW)  # the camera's officer, named in the sealed case
    dev, free, sealed = world.device, open_act(world), sealed_act(world)
    wang = logged_in(arch, "wang", PW)
    token = page_csrf(wang, f"/cases/{world.case}")
    doc = b"the officer's statement\n"
    got = wang.post(
        f"/cases/{world.case}/documents",
        data={"csrf": token, "title": "statement.txt"},
        files={"document": ("statement.txt", doc)},
    )
    assert got.status_code == 303, said(got)
    paths = [
        (li, f"/play/{dev}/{free.start_seq}"),
        (li, f"/play/{dev}/{free.start_seq}/index.m3u8"),
        (li, f"/play/{dev}/{free.start_seq}/media/{free.segments[0].seq}.ts"),
        (li, f"/play/{dev}/{sealed.start_seq}/media/{sealed.segments[0].seq}.ts"),
        (li, f"/day?officer={world.officer}&date={free.start_utc[:10]}"),
        (li, f"/recordings/{dev}/{free.segments[0].seq}/checks"),
        (li, f"/cases/{world.case}"),
        (wang, f"/cases/{world.case}/documents/{hashlib.sha256(doc).hexdigest()}"),
        (li, "/no/such/page"),
        (li, f"/play/{dev}/99999"),
    ]
    for client, path in paths:
        for headers in ({}, {"Range": "bytes=0-99"}):
            got = client.get(path, headers=headers)
            assert got.status_code < 500, (path, said(got))
            cache = got.headers.get("cache-control", "")
            assert "no-store" in cache, (path, got.status_code, cache)


OFF_SITE = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    " //evil.example/",
    "\x00//evil.example/",
    "/%2F/evil.example/",
    "/%5Cevil.example/",
    "/\u3000/evil.example/",
    "evil.example",
    "/login?next=//evil.example/",
]


def lands_on_site(location: str) -> bool:
    """Whether a browser following ``Location`` stays on this console: it drops tabs and
    newlines, trims C0 controls and spaces, and treats a backslash as a slash."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00\x01\x02\x03\x04\x05\x06 ")
    cleaned = cleaned.replace("\\", "/")
    return cleaned.startswith("/") and not cleaned.startswith("//")


@pytest.mark.parametrize("target", OFF_SITE)
def test_no_redirect_leaves_the_console(arch: Archive, target: str) -> None:
    c = console(arch)
    got = login(c, "li", PW, next_url=target)
    assert got.status_code == 303, said(got)
    assert lands_on_site(got.headers["location"]), got.headers["location"]
    for path in ("/login", "/lang/en", "/lang/zh-CN", "/lang/xx"):
        got = c.get(path, params={"next": target})
        assert got.status_code == 303
        assert lands_on_site(got.headers["location"]), (path, got.headers["location"])
    stranger = console(arch)  # not logged in: the login link keeps next= on site too
    got = stranger.get("/login", params={"next": target})
    hidden = re.search(r'name="next" value="([^"]*)"', got.text).group(1)
    assert lands_on_site(hidden.replace("&amp;", "&")), hidden


def test_a_planted_session_id_is_never_adopted_and_cookies_are_locked_down(
    arch: Archive,
) -> None:
    c = console(arch)
    c.cookies.set("bodycam_session", "planted-by-attacker")
    got = login(c, "li", PW)
    assert got.status_code == 303
    cookies = got.headers.get_list("set-cookie")
    session = next(h for h in cookies if h.startswith("bodycam_session="))
    sid = session.split(";")[0].split("=", 1)[1]
    assert sid != "planted-by-attacker" and len(sid) >= 40
    low = session.lower()
    assert "httponly" in low and "samesite=strict" in low and "secure" in low and "path=/" in low
    form_cookie = console(arch).get("/login").headers["set-cookie"].lower()
    assert (
        "httponly" in form_cookie and "samesite=strict" in form_cookie and "secure" in form_cookie
    )
    # The planted id is nothing on the server; neither is a session id after logout.
    planted = another(c)
    planted.cookies.set("bodycam_session", "planted-by-attacker")
    assert planted.get("/cases").status_code == 401
    token = page_csrf(c, "/")
    assert c.post("/logout", data={"csrf": token}).status_code == 200
    replay = another(c)
    replay.cookies.set("bodycam_session", sid)
    assert replay.get("/").status_code == 401


def test_a_deactivated_user_is_logged_out_at_the_next_request(arch: Archive, world: World) -> None:
    """Deactivating someone (they left the unit) ends their open sessions: the next page
    is refused, not served for up to 12 more hours."""
    admin = arch.login("admin", PW)
    arch.add_user(admin, "leaver", "archivist", PW)
    c = logged_in(arch, "leaver", PW)
    assert c.get(f"/cases/{world.case}").status_code == 200
    kept = c.cookies.get("bodycam_session")
    arch.set_active(admin, "leaver", False)
    got = c.get(f"/cases/{world.case}")
    assert got.status_code == 401, said(got)  # the "session expired" page
    for path in ("/", f"/play/{world.device}/{open_act(world).start_seq}"):
        replay = another(c)
        replay.cookies.set("bodycam_session", kept)
        assert replay.get(path).status_code == 401, path
    # A password an administrator reset (stolen) ends the sessions opened with the old one.
    arch.set_active(admin, "leaver", True)
    c = logged_in(arch, "leaver", PW)
    arch.set_password(admin, "leaver", PW + " new")
    assert c.get("/").status_code == 401
    assert logged_in(arch, "leaver", PW + " new").get("/").status_code == 200


# -- stored and reflected XSS -------------------------------------------------------------


def assert_escaped(got, where: str) -> None:
    text = got.text
    assert "<script>alert" not in text and "<img src=x" not in text, (where, said(got))
    assert 'alert(1)"' not in text and "' onfocus=" not in text, where  # no attribute left


def test_what_people_type_is_shown_as_text_everywhere(arch: Archive, world: World) -> None:
    wang, zhao, qian = (logged_in(arch, n, PW) for n in ("wang", "zhao", "qian"))
    token = page_csrf(wang, "/cases/new")
    done = wang.post(
        "/cases/new",
        data={
            "csrf": token,
            "kind_of_act": XSS,
            "procedure": "inspection",
            "parties": f"{XSS}\n张三",
            "officers": f"{world.officer}",
            "classification": "internal",
        },
    )
    assert done.status_code == 303, said(done)
    number = done.headers["location"].rsplit("/", 1)[1]
    act = acts(world.shift)[4]
    for start in (act.start_seq, acts(world.shift)[2].start_seq):
        done = wang.post(
            f"/cases/{number}/attach-act",
            data={"csrf": token, "device": world.device, "act": str(start), "reason": XSS},
        )
        assert done.status_code == 303, said(done)
    done = wang.post(
        f"/cases/{number}/documents",
        data={"csrf": token, "title": "", "reason": XSS},
        files={"document": (f"{XSS}.pdf", b"%PDF-1.4 not really\n")},
    )
    assert done.status_code == 303, said(done)
    done = wang.post(
        f"/cases/{number}/copies",
        data={"csrf": token, "requester": XSS, "kind": "party", "purpose": XSS},
    )
    assert done.status_code == 303, said(done)
    rid = done.headers["location"].rsplit("/", 1)[1]
    ztoken = page_csrf(zhao, f"/copies/{rid}")
    seg = act.segments[0].seq
    done = zhao.post(
        f"/copies/{rid}/decide",
        data={
            "csrf": ztoken,
            "decision": "approve",
            "reason": XSS,
            "omit_lines": f"{world.device}:{seg}={XSS}",
        },
    )
    assert done.status_code == 303, said(done)
    token = page_csrf(wang, f"/cases/{number}")
    done = wang.post(f"/cases/{number}/close", data={"csrf": token})
    assert done.status_code == 303, said(done)
    done = wang.post(
        f"/cases/{number}/attach-act",
        data={"csrf": token, "device": world.device, "act": str(act.start_seq), "reason": XSS},
    )
    assert done.status_code in (303, 400), said(done)
    pages = [
        (wang, "/cases"),
        (wang, f"/cases/{number}"),
        (wang, "/copies"),
        (wang, f"/copies/{rid}"),
        (zhao, f"/copies/{rid}"),
        (qian, "/audit"),
        (qian, f"/audit?user={XSS}&kind={XSS}"),
        (zhao, "/audit"),
        (wang, f"/compliance?officer={XSS}"),
        (wang, f"/compliance?day_from={XSS}"),
        (wang, f"/compliance?view={XSS}"),
        (wang, f"/day?officer={XSS}"),
        (wang, f"/day?date={XSS}"),
        (wang, f"/cases/{XSS}"),
        (wang, f"/cases?state={XSS}"),
        (wang, f"/copies/{XSS}"),
        (wang, f"/play/{XSS}/1"),
        (wang, f"/recordings/{XSS}/1/checks"),
        (wang, f"/no/{XSS}"),
        (wang, f"/lang/{XSS}?next=/{XSS}"),
    ]
    for client, path in pages:
        got = client.get(path)
        assert got.status_code < 500, (path, said(got))
        assert_escaped(got, path)
        no_trace(got.text)
    got = console(arch).get("/login", params={"next": f"/{XSS}"})
    assert_escaped(got, "login next")
    form = console(arch)
    page = form.get("/login")
    got = form.post(
        "/login",
        data={"name": XSS, "password": "x", "csrf": csrf_of(page.text), "next": f"/{XSS}"},
    )
    assert got.status_code == 401
    assert_escaped(got, "login name")
    for lang in ("en", "zh-CN", XSS):
        c = another(wang)
        c.cookies.set("bodycam_session", wang.cookies.get("bodycam_session"))
        c.cookies.set("lang", lang)
        got = c.get(f"/cases/{number}")
        assert_escaped(got, f"lang {lang}")
        assert '<html lang="' + ("en" if lang == "en" else "zh-CN") + '"' in got.text


# -- malformed input: an error page that says what went wrong, never a trace ---------------

HUGE = "9" * 30
BIG = str(2**63)  # one past a 64-bit integer column


def bad_paths(world: World) -> list[str]:
    dev, act = world.device, open_act(world)
    start, seg = act.start_seq, act.segments[0].seq
    return [
        f"/play/{dev}/{HUGE}",
        f"/play/{dev}/{BIG}",
        f"/play/{dev}/-1",
        f"/play/{dev}/1e3",
        f"/play/{dev}/{start}?t=nan",
        f"/play/{dev}/{start}?t=inf",
        f"/play/{dev}/{start}?t=-inf",
        f"/play/{dev}/{start}?t=1e308",
        f"/play/{dev}/{start}?t=-5",
        f"/play/{dev}/{start}/index.m3u8?x=%ff",
        f"/play/{dev}/{start}/media/{HUGE}.ts",
        f"/play/{dev}/{start}/media/{BIG}.ts",
        f"/play/{dev}/{start}/media/-1.ts",
        f"/play/..%2F..%2Fetc/{start}",
        f"/play/{dev}%00/{start}",
        f"/play/%ff%fe/{start}",
        f"/recordings/{dev}/{HUGE}/checks",
        f"/recordings/{dev}/{BIG}/checks",
        f"/recordings/{dev}/-{BIG}/checks",
        f"/recordings/%ff/{seg}/checks",
        f"/recordings/{dev}%00/{seg}/checks",
        f"/photos/{dev}/{BIG}",
        f"/photos/..%2F..%2F/{seg}",
        f"/day?officer={world.officer}&date=2026-13-45",
        f"/day?officer={world.officer}&date=%ff",
        f"/day?officer={world.officer}&date=9999-12-31",
        f"/day?officer={world.officer}&date=0001-01-01",
        "/day?officer=%00&date=2026-11-18",
        "/day?officer=%ff%fe",
        f"/cases/{world.case}/documents/..%2F..%2Farchive.toml",
        f"/cases/{world.case}/documents/{'0' * 64}",
        f"/cases/{world.case}/documents/%00",
        "/cases/%ff",
        "/cases/..%2F..%2F",
        "/cases/%00",
        f"/cases?state={HUGE}",
        f"/copies/{BIG}",
        f"/copies/{'9' * 19}",
        "/copies/-1",
        f"/copies/{BIG}/copy.zip",
        "/copies/1/files/..%2F..%2Farchive.toml",
        "/copies/1/files/%00",
        f"/audit?before={BIG}",
        f"/audit?before={HUGE}",
        "/audit?before=-1",
        "/audit?kind=%00&user=%00",
        "/compliance?day_from=2026-02-30",
        "/compliance?day_from=2026-12-01&day_to=2026-01-01",
        f"/compliance?officer=%00&day_from={HUGE}",
        "/live/events?after=" + HUGE,
        "/static/../archive.toml",
        "/static/%2e%2e/%2e%2e/archive.toml",
        "/static/vendor/hls.js/../../../app.py",
    ]


def test_malformed_paths_and_parameters_get_an_error_page(arch: Archive, world: World) -> None:
    zhao, li = logged_in(arch, "zhao", PW), logged_in(arch, "li", PW)
    before = state(arch, world)
    crashed = []
    for path in bad_paths(world):
        for client in (zhao, li):
            got = client.get(path)
            if got.status_code >= 500:
                crashed.append((path, said(got)))
            no_trace(got.text)
            assert "dock_config" not in got.text and "import " not in got.text, path
    assert not crashed, "\n".join(map(str, crashed))
    assert state(arch, world) == before


RANGES = [
    "bytes=abc",
    "bytes=5-1",
    "bytes=99999999999-",
    "bytes=-0",
    "bytes=--1",
    "bytes=0-0,5-6",
    "bytes=0-1,1-2,2-3,3-4,4-5,5-6,6-7,7-8,8-9,9-10,10-11,11-12,12-13",
    "items=0-1",
    "bytes=" + "9" * 40 + "-",
    "bytes=0-" + "9" * 40,
    "bytes=-" + "9" * 40,
    "bytes=\xff-1",
    "bytes= 1 - 2 ",
    "bytes=",
    "=",
    "bytes=1-2-3",
]


@pytest.mark.parametrize("header", RANGES)
def test_a_malformed_range_gets_a_refusal_or_the_whole_segment(
    arch: Archive, world: World, header: str
) -> None:
    li = logged_in(arch, "li", PW)
    dev = world.device
    clear, sealed = open_act(world).segments[0], sealed_act(world).segments[0]
    for act_start, seg in (
        (open_act(world).start_seq, clear),
        (sealed_act(world).start_seq, sealed),
    ):
        path = f"/play/{dev}/{act_start}/media/{seg.seq}.ts"
        whole = li.get(path)
        assert whole.status_code == 200
        got = li.get(path, headers={"Range": header.encode("latin-1")})
        assert got.status_code in (200, 206, 400, 416), (header, said(got))
        no_trace(got.text)
        if got.status_code == 206:
            assert got.content in whole.content
        if got.status_code == 200:
            assert got.content == whole.content


def test_malformed_forms_and_uploads_get_an_error_page_and_store_nothing(
    arch: Archive, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive.web import cases as case_pages

    wang = logged_in(arch, "wang", PW)
    token = page_csrf(wang, f"/cases/{world.case}")
    before = state(arch, world)
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    raw = [
        ("/cases/new", b"csrf=" + token.encode() + b"&kind_of_act=%ff%fe&procedure=\xff\xfe"),
        ("/cases/new", b"csrf=" + token.encode() + b"&kind_of_act=x&classification=%00"),
        ("/cases/new", b"csrf=" + token.encode() + b"&act_end=9999-12-31T23:59&kind_of_act=x"),
        (f"/cases/{world.case}/attach-act", b"csrf=" + token.encode() + b"&act=" + BIG.encode()),
        (f"/cases/{world.case}/attach-act", b"csrf=" + token.encode() + b"&act=1&device=%00"),
        (
            f"/cases/{world.case}/attach-range",
            b"csrf=" + token.encode() + b"&device=x&start=0001-01-01T00:00&end=9999-12-31T23:59",
        ),
        (f"/cases/{world.case}/copies", b"csrf=" + token.encode() + b"&kind=%00&requester=\xff"),
        (f"/copies/{BIG}/export", b"csrf=" + token.encode()),
        (f"/copies/{'9' * 19}/export", b"csrf=" + token.encode()),
        ("/live/ack", b"csrf=" + token.encode() + b"&device=x&seq=" + HUGE.encode()),
    ]
    for path, body in raw:
        got = wang.post(path, content=body, headers=urlencoded)
        assert 400 <= got.status_code < 500, (path, body, said(got))
        no_trace(got.text)
    multipart = [
        {"Content-Type": "multipart/form-data"},  # no boundary
        {"Content-Type": "multipart/form-data; boundary=x"},  # a body that is not one
        {"Content-Type": "multipart/form-data; boundary=" + "x" * 300},
    ]
    for headers in multipart:
        got = wang.post(f"/cases/{world.case}/documents", content=b"--y\r\n\r\n", headers=headers)
        assert 400 <= got.status_code < 500, (headers, said(got))
        no_trace(got.text)
    doc = f"/cases/{world.case}/documents"
    for files, data in (
        ({"document": ("empty.txt", b"")}, {}),  # an empty file
        ({"other": ("x.txt", b"x")}, {}),  # no document field
        ({"document": ("x.txt", b"x")}, {"sha256": "zz"}),
        ({"document": ("x.txt", b"x")}, {"sha256": "0" * 64}),  # damaged in transit
        ({"document": ("", b"no name")}, {"sha256": "1" * 63}),
    ):
        got = wang.post(doc, data={"csrf": token} | data, files=files)
        assert got.status_code == 400, (files, data, said(got))
        no_trace(got.text)
    got = wang.post(doc, data={"csrf": token})  # no multipart at all
    assert got.status_code == 400, said(got)
    monkeypatch.setattr(case_pages, "MAX_UPLOAD", 4096)  # the limit, made small to test
    got = wang.post(doc, data={"csrf": token}, files={"document": ("big.bin", b"x" * 10_000)})
    assert got.status_code in (400, 413), said(got)
    no_trace(got.text)
    assert state(arch, world) == before


# -- the login: rate limits, enumeration, sizes -------------------------------------------


def test_the_rate_limit_holds_against_spoofed_addresses_and_spelled_variants(
    arch: Archive,
) -> None:
    c = console(arch)
    variants = ["wang", " wang", "wang ", "\twang\n", "wang\u200b", "WANG", "Wang", "wang\x00"]
    for _ in range(5):
        got = login(c, "wang", "wrong password!")
        assert got.status_code == 401
    for i, name in enumerate(variants):
        spoof = {"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.0.1.{i}"}
        form = c.get("/login")
        got = c.post(
            "/login",
            data={"name": name, "password": PW, "csrf": csrf_of(form.text), "next": "/"},
            headers=spoof | {"Forwarded": f"for=10.0.2.{i}"},
        )
        assert got.status_code in (401, 429), (repr(name), got.status_code)  # never in
        if name.strip() == "wang":
            assert got.status_code == 429, repr(name)
        no_trace(got.text)
    # The address limit: spoofed headers do not make a new client of the same address.
    other = another(c)
    for i in range(20):
        login(other, f"guess{i}", "wrong password!")
    form = other.get("/login")
    got = other.post(
        "/login",
        data={"name": "qian", "password": PW, "csrf": csrf_of(form.text), "next": "/"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert got.status_code == 429


def test_a_login_does_not_tell_who_exists(arch: Archive) -> None:
    """The same page, status and password work for a user who does not exist, one who
    exists with a wrong password and one who is deactivated: the hash of the unknown
    name is checked against a dummy of the same argon2 cost."""
    from argon2 import extract_parameters

    from archive import users as pw

    admin = arch.login("admin", PW)
    arch.add_user(admin, "gone", "officer", PW, officer="C3072")
    arch.set_active(admin, "gone", False)
    with arch.engine.connect() as conn:
        stored = conn.execute(sa.text("select password_hash from users where name='li'")).scalar()
    assert extract_parameters(pw._DUMMY) == extract_parameters(stored)
    pages = {}
    for name, password in (("nobody", "whatever pw"), ("li", "wrong password"), ("gone", PW)):
        got = login(console(arch), name, password)
        assert got.status_code == 401
        pages[name] = re.sub(r'value="[^"]*"', "", got.text)
    assert pages["nobody"] == pages["li"] == pages["gone"]


def test_oversized_bodies_are_refused_before_they_are_read(arch: Archive) -> None:
    """A login form of megabytes (no session needed), told by Content-Length or sent
    chunked: refused with a page once a field passes a megabyte, nothing kept."""
    c = console(arch)
    form = c.get("/login")
    token = csrf_of(form.text)
    body = b"csrf=" + token.encode() + b"&name=li&password=" + b"x" * (2 << 20)
    got = c.post(
        "/login", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert got.status_code in (400, 413), said(got)
    no_trace(got.text)

    def chunks():
        yield b"csrf=" + token.encode() + b"&name=li&password="
        for _ in range(3):
            yield b"x" * (1 << 20)

    got = c.post(
        "/login", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert got.status_code in (400, 413), said(got)
    # Many fields of under a megabyte each: no field too large, the body far too large.
    many = b"&".join(b"f%d=" % i + b"x" * (1 << 19) for i in range(8))
    got = c.post(
        "/login", content=many, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert got.status_code == 413, said(got)
    no_trace(got.text)


def test_an_upload_past_the_limit_is_refused_before_it_is_spooled(
    arch: Archive, world: World
) -> None:
    """Any logged-in user's multipart body (even one with a forged token: the CSRF check
    reads the form) past the upload limit: a 413 page, told by Content-Length or chunked."""
    li = logged_in(arch, "li", PW)
    li.app.state.max_body = 64 << 10  # the limit (512 MiB and a form), made small to test
    before = state(arch, world)
    boundary = "hostile"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="document"; filename="x"\r\n\r\n'
    body = head.encode() + b"x" * (256 << 10) + f"\r\n--{boundary}--\r\n".encode()
    ctype = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    got = li.post(f"/cases/{world.case}/documents", content=body, headers=ctype)
    assert got.status_code == 413, said(got)
    assert "nosniff" in got.headers["x-content-type-options"]
    no_trace(got.text)

    def chunked():
        yield head.encode()
        for _ in range(8):
            yield b"x" * (64 << 10)

    got = li.post(f"/cases/{world.case}/documents", content=chunked(), headers=ctype)
    assert got.status_code == 413, said(got)
    got = li.post(
        "/cases/new", content=b"x=" + b"y" * (2 << 20), headers={"Content-Type": "text/plain"}
    )
    assert got.status_code == 413, said(got)
    assert state(arch, world) == before


# -- live status: a hostile camera's alert text, the event stream, acknowledgements --------


def test_a_hostile_cameras_alert_is_text_on_the_page_and_one_event_in_the_stream(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    """A registered camera that was taken over signs alerts whose text is markup and SSE
    framing; a forger sends others under its name; garbage arrives on its topic. Each is
    delivered to the console's watcher as paho's network thread delivers it (the broker
    is the only part left out): shown as text, one event each, none acknowledgeable but
    the genuine one, and the acknowledgement needs the form's token and the role."""
    from paho.mqtt.client import MQTTMessage

    from alerting.watch import BrokerSettings
    from archive.web.live import LiveFeed
    from evidence.identity import DeviceIdentity
    from evidence.journal import Journal
    from evidence.registry import Registry
    from wire.topics import alert_topic

    registry = Registry.load(world.shift.store / "registry.json")
    feed = LiveFeed(
        BrokerSettings(host="127.0.0.1", port=9, insecure=True),
        registry,
        client_id="hostile-test",
        state_path=tmp_path / "live-state.json",
    )
    sun = logged_in(arch, "sun", PW)
    sun.app.state.live = feed
    unit = registry.get(world.device).unit

    def deliver(topic: str, payload: bytes) -> None:
        message = MQTTMessage(topic=topic.encode())
        message.payload = payload
        feed.watcher._on_message(None, None, message)

    framing = '\n\nevent: ack\ndata: {"device": "x"}\n\nid: 999\n'
    taken = Journal(
        tmp_path / "cam" / "journal.jsonl",
        DeviceIdentity.load(world.shift.root / "device-key" / "device.key"),
    )
    genuine = taken.append("stoppage", {"reason": XSS, "detail": XSS + framing, "text": XSS})
    deliver(alert_topic(unit, world.device), genuine.to_bytes())
    forger = Journal(tmp_path / "forger" / "journal.jsonl", DeviceIdentity.generate(world.device))
    forged = forger.append("stoppage", {"reason": XSS, "detail": framing})
    deliver(alert_topic(unit, world.device), forged.to_bytes())
    deliver(alert_topic(unit, world.device), XSS.encode() + b"\xff\xfe")
    deliver(f"bodycam/{unit}/{XSS}/alert", b"{}")
    alerts = feed.alerts()
    assert len(alerts) >= 3, alerts
    assert [a["genuine"] for a in alerts].count(True) == 1
    page = sun.get("/live")
    assert page.status_code == 200, said(page)
    assert_escaped(page, "/live")
    no_trace(page.text)
    feed.stopped = True  # the stream sends what it has and ends
    with sun.stream("GET", "/live/events", params={"after": 0}) as stream:
        assert stream.status_code == 200
        assert "no-store" in stream.headers["cache-control"]
        text = "".join(stream.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("id:")]
    assert len(events) == len(feed.recent()), text
    for block in events:
        lines = block.split("\n")
        assert [line.split(":", 1)[0] for line in lines] == ["id", "event", "data"], block
        assert lines[1] == "event: alert"
        json.loads(lines[2][len("data: ") :])
    # Acknowledging: no token, another role, an alert never shown as genuine: nothing done.
    token = page_csrf(sun, "/")
    n = audited(arch, "acknowledge")
    got = sun.post("/live/ack", data={"device": world.device, "seq": str(genuine.seq)})
    assert got.status_code == 403
    li = logged_in(arch, "li", PW)
    li.app.state.live = feed
    got = li.post(
        "/live/ack",
        data={"csrf": page_csrf(li, "/"), "device": world.device, "seq": str(genuine.seq)},
    )
    assert got.status_code == 403, said(got)
    for device, seq in ((world.device, forged.seq + 100), (XSS, 1), ("../../x", 1)):
        got = sun.post("/live/ack", data={"csrf": token, "device": device, "seq": str(seq)})
        assert got.status_code == 400, said(got)
        assert_escaped(got, "ack")
    assert audited(arch, "acknowledge") == n
    assert not feed.acked


# -- headers, methods, and GETs that must not change anything -----------------------------


def test_a_document_title_cannot_inject_headers(arch: Archive, world: World) -> None:
    wang = logged_in(arch, "wang", PW)
    token = page_csrf(wang, f"/cases/{world.case}")
    titles = {
        "crlf": "a\r\nSet-Cookie: bodycam_session=planted\r\nX-Evil: 1",
        "quote": 'x"; filename="evil.html',
        "unicode": "询问笔录 第1页.pdf",
        "dots": "..",
        "slashes": "../../../../etc/passwd",
        "backslashes": "..\\..\\boot.ini",
    }
    for key, title in titles.items():
        content = f"document {key}\n".encode()
        got = wang.post(
            f"/cases/{world.case}/documents",
            data={"csrf": token, "title": title},
            files={"document": (title, content)},
        )
        if got.status_code == 400:  # refused as a title: fine, and said so
            no_trace(got.text)
            continue
        assert got.status_code == 303, (key, said(got))
        sha = hashlib.sha256(content).hexdigest()
        got = wang.get(f"/cases/{world.case}/documents/{sha}")
        assert got.status_code == 200 and got.content == content, key
        names = [k.lower() for k in got.headers.keys()]
        assert "x-evil" not in names and "set-cookie" not in names, (key, got.headers)
        disposition = got.headers["content-disposition"]
        assert "\r" not in disposition and "\n" not in disposition
        assert disposition.count('"') in (0, 2), disposition
        assert "/" not in disposition.split("filename", 1)[1].replace("utf-8''", ""), disposition
        assert got.headers["content-type"] == "application/octet-stream"


def test_other_methods_get_a_page_and_no_trace(arch: Archive, world: World) -> None:
    zhao = logged_in(arch, "zhao", PW)
    for method in ("PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "PROPFIND"):
        for path in ("/", f"/cases/{world.case}", "/logout", "/live/ack", "/login"):
            got = zhao.request(method, path)
            assert got.status_code in (401, 403, 404, 405), (method, path, got.status_code)
            no_trace(got.text)
    got = zhao.head(f"/play/{world.device}/{open_act(world).start_seq}/index.m3u8")
    assert got.status_code in (200, 405)


def test_looking_changes_nothing_but_the_audit_log(arch: Archive, world: World) -> None:
    """Every GET a person with the widest clearance can make: the store and the database
    are as they were (each view only adds to the audit log)."""
    zhao = logged_in(arch, "zhao", PW)
    dev, act = world.device, open_act(world)
    before = state(arch, world)
    paths = [
        "/",
        "/day",
        f"/day?officer={world.officer}&date={act.start_utc[:10]}",
        "/cases",
        "/cases/new",
        f"/cases/{world.case}",
        "/copies",
        "/compliance",
        "/compliance?view=act",
        "/compliance?view=article",
        "/audit",
        "/audit/verify",
        "/live",
        f"/recordings/{dev}/{act.segments[0].seq}/checks",
        f"/play/{dev}/{act.start_seq}",
        f"/play/{dev}/{act.start_seq}/index.m3u8",
        f"/play/{dev}/{act.start_seq}/media/{act.segments[0].seq}.ts",
        "/lang/en?next=/cases",
        "/login",
    ]
    for path in paths:
        got = zhao.get(path)
        assert got.status_code < 500, (path, said(got))
    assert state(arch, world) == before


def test_a_photo_of_a_confidential_act_is_as_confidential_as_its_video(
    world: World, tmp_path: Path
) -> None:
    """A photo the camera took during an act filed in a personal-privacy case: refused
    (and audited) to a supervisor as the act's segments are; the officer named sees it."""
    from consolekit import copy_world

    own = copy_world(world, tmp_path)
    arch = Archive.open(own.archive)
    try:
        with arch.engine.connect() as conn:
            photos = conn.execute(
                sa.text("select seq from device_events where kind = 'photo' order by seq")
            ).all()
        inside = [
            (a, p.seq)
            for p in photos
            for a in acts(own.shift)
            if a.start_seq <= p.seq <= max(s.seq for s in a.segments)
        ]
        if not inside:
            pytest.skip("this simulated shift took no photo during a recording")
        act, seq = inside[0]
        wang = arch.login("wang", PW)
        number = arch.open_case(
            wang, "inspection", "inspection", ["x"], [own.officer], "personal_privacy"
        )
        if act.start_seq != sealed_act(own).start_seq:
            arch.attach_act(wang, number, own.device, act.start_seq)
        sun, li = logged_in(arch, "sun", PW), logged_in(arch, "li", PW)
        n = audited(arch)
        got = sun.get(f"/photos/{own.device}/{seq}")
        assert got.status_code == 403, said(got)
        assert not got.content.startswith(b"\xff\xd8")
        assert audited(arch) == n + 1
        got = li.get(f"/photos/{own.device}/{seq}")
        assert got.status_code == 200 and got.content.startswith(b"\xff\xd8"), said(got)
    finally:
        arch.close()


# -- on PostgreSQL too: what one backend refuses that the other stores ---------------------


def test_nul_bytes_and_huge_numbers_on_each_backend(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """PostgreSQL refuses a NUL in text and a number past 64 bits where SQLite's driver
    raises otherwise: either way a 400 page, nothing stored, a login not let in."""
    from consolekit import PEOPLE

    arch = Archive.create(
        tmp_path / "a", world.shift.store, "archive-1", "admin", PW, database=db_url
    )
    try:
        admin = arch.login("admin", PW)
        for name, role in PEOPLE.items():
            if role != "administrator":
                badge = world.officer if role == "officer" else ""
                arch.add_user(admin, name, role, PW, officer=badge)
        arch.sync_recordings()
        form = console(arch)
        page = form.get("/login")
        got = form.post(
            "/login",
            data={"name": "wang\x00", "password": PW, "csrf": csrf_of(page.text), "next": "/"},
        )
        assert got.status_code in (400, 401), said(got)
        assert "bodycam_session" not in got.headers.get("set-cookie", "")
        wang, zhao = logged_in(arch, "wang", PW), logged_in(arch, "zhao", PW)
        before = state_of(arch)
        for client, path in (
            (zhao, "/day?officer=A%00&date=2026-11-18"),
            (zhao, "/audit?user=%00&kind=%00"),
            (zhao, f"/audit?before={BIG}"),
            (zhao, f"/recordings/{world.device}/{BIG}/checks"),
            (zhao, f"/recordings/x%00/{1}/checks"),
            (zhao, f"/photos/{world.device}/{BIG}"),
            (zhao, "/cases/2026-%00"),
            (zhao, "/compliance?officer=%00"),
            (wang, f"/copies/{'9' * 19}"),
        ):
            got = client.get(path)
            assert got.status_code < 500, (path, said(got))
            no_trace(got.text)
        token = page_csrf(wang, "/cases/new")
        for data in (
            {"kind_of_act": "x\x00", "procedure": "inspection", "parties": "p"},
            {"kind_of_act": "x", "procedure": "inspection", "parties": "p\x00q"},
            {"kind_of_act": "x", "procedure": "inspection\x00", "parties": "p"},
        ):
            got = wang.post("/cases/new", data={"csrf": token, "classification": "internal"} | data)
            assert 400 <= got.status_code < 500, (data, said(got))
        assert state_of(arch) == before
    finally:
        arch.close()


def test_an_exported_bundle_is_downloaded_only_by_whom_may_export_it(
    world: World, tmp_path: Path
) -> None:
    """The court bundle of an internal case, exported by the archivist: every other role
    (and the head who approved it) refused the zip, audited; the archivist's download is
    not cached and names a file of its own; a file name that walks out of the copy is
    nothing."""
    from consolekit import copy_world

    own = copy_world(world, tmp_path)
    arch = Archive.open(own.archive)
    try:
        wang, zhao = logged_in(arch, "wang", PW), logged_in(arch, "zhao", PW)
        w = arch.login("wang", PW)
        number = arch.open_case(w, "inspection", "inspection", ["x"], [own.officer], "internal")
        arch.attach_act(w, number, own.device, open_act(own).start_seq)
        rid = arch.request_copy(w, number, "court", "bundle", "trial")
        arch.decide_copy(arch.login("zhao", PW), rid, True, "", {})
        got = wang.post(f"/copies/{rid}/export", data={"csrf": page_csrf(wang, f"/copies/{rid}")})
        assert got.status_code == 303, said(got)
        got = wang.get(f"/copies/{rid}/copy.zip")
        assert got.status_code == 200 and got.content.startswith(b"PK")
        assert "no-store" in got.headers["cache-control"]
        assert re.fullmatch(
            r'attachment; filename="bundle-\d{4}-\d{4}-request-\d+\.zip"',
            got.headers["content-disposition"],
        )
        before = state(arch, own)
        for name in ("zhao", "li", "ma", "sun", "qian", "admin"):
            c = zhao if name == "zhao" else logged_in(arch, name, PW)
            for path in (f"/copies/{rid}/copy.zip", f"/copies/{rid}/files/copy-{number}-1.mp4"):
                n = audited(arch)
                got = c.get(path)
                assert got.status_code == 403, (name, path, said(got))
                assert not got.content.startswith(b"PK")
                assert audited(arch) == n + 1
        for name in ("..%2F..%2Farchive.toml", "%2e%2e", "manifest.json", "x%00"):
            got = wang.get(f"/copies/{rid}/files/{name}")
            assert got.status_code == 404, (name, said(got))
            assert "dock_config" not in got.text
        assert state(arch, own) == before
    finally:
        arch.close()


def test_the_day_withholds_what_a_withheld_act_recorded_not_only_its_video(
    arch: Archive, world: World
) -> None:
    """A supervisor's view of the officer's day: the key moments, stoppages, photos and
    announcements of the sealed act are withheld with its segments; the officer named in
    the case sees them."""
    sealed = sealed_act(world)
    stop = next(
        r.seq
        for r in world.shift.records
        if r.kind == "recording_stopped" and r.seq > sealed.start_seq
    )
    details = [
        r.seq
        for r in world.shift.records
        if sealed.start_seq < r.seq < stop
        and r.kind in ("marker", "photo", "stoppage", "resumed", "announcement")
    ]
    assert details, "the sealed act recorded nothing but video"
    date = sealed.start_utc[:10]
    sun, li = logged_in(arch, "sun", PW), logged_in(arch, "li", PW)
    for client, hidden in ((sun, True), (li, False)):
        page = client.get("/day", params={"officer": world.officer, "date": date})
        assert page.status_code == 200, said(page)
        rows = re.findall(r"<tr class=\"([^\"]*)\".*?#(\d+)</td>", page.text, re.S)
        shown = {int(seq): cls for cls, seq in rows}
        for seq in details:
            assert (shown.get(seq) == "withheld") is hidden, (seq, shown.get(seq), hidden)
        if hidden:
            photos = re.findall(r'href="/photos/[^/"]+/(\d+)"', page.text)
            assert not set(map(int, photos)) & set(details), photos


def test_an_open_event_stream_ends_when_its_user_is_deactivated(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    """A supervisor's live page left open: once an administrator deactivates them, the
    next alert is not sent to their stream; the stream ends."""
    import threading

    from alerting.judge import Verdict
    from alerting.watch import BrokerSettings
    from archive.web.live import LiveFeed
    from evidence.registry import Registry

    registry = Registry.load(world.shift.store / "registry.json")
    feed = LiveFeed(
        BrokerSettings(host="127.0.0.1", port=9, insecure=True),
        registry,
        client_id="hostile-stream",
        state_path=tmp_path / "live-state.json",
    )
    admin = arch.login("admin", PW)
    arch.add_user(admin, "watcher", "supervisor", PW)
    c = logged_in(arch, "watcher", PW)
    c.app.state.live = feed
    got: list[str] = []
    opened, done = threading.Event(), threading.Event()

    def read() -> None:
        with c.stream("GET", "/live/events") as stream:
            for line in stream.iter_lines():
                got.append(line)
                if line.startswith("retry"):
                    opened.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert opened.wait(20), got
        arch.set_active(admin, "watcher", False)
        feed._on_verdict(Verdict("forged", "bad signature", "bodycam/unit-1/x/alert", seq=7))
        assert done.wait(20), "the stream went on after the user was deactivated"
        assert not any(line.startswith("event: alert") for line in got), got
    finally:
        feed.stopped = True
        feed._publish(None)
        reader.join(10)


def test_no_one_files_material_above_their_clearance_into_a_case_they_may_see(
    world: World, tmp_path: Path
) -> None:
    """An archivist (up to personal privacy) attaches, by act and by time range, the
    recordings of a state-secret case into an internal case of their own, where its
    list would name them to everyone cleared for internal."""
    from consolekit import copy_world

    own = copy_world(world, tmp_path)
    arch = Archive.open(own.archive)
    try:
        zhao = arch.login("zhao", PW)
        secret_act = acts(own.shift)[2]
        secret = arch.open_case(zhao, "secret", "inspection", ["x"], [own.officer], "state_secret")
        arch.attach_act(zhao, secret, own.device, secret_act.start_seq)
        wang = logged_in(arch, "wang", PW)
        token = page_csrf(wang, "/cases/new")
        done = wang.post(
            "/cases/new",
            data={
                "csrf": token,
                "kind_of_act": "mine",
                "procedure": "inspection",
                "parties": "p",
                "officers": own.officer,
                "classification": "internal",
            },
        )
        assert done.status_code == 303, said(done)
        mine = done.headers["location"].rsplit("/", 1)[1]
        before = state(arch, own)
        n = audited(arch)
        got = wang.post(
            f"/cases/{mine}/attach-act",
            data={"csrf": token, "device": own.device, "act": str(secret_act.start_seq)},
        )
        assert got.status_code == 403, said(got)
        seg = secret_act.segments[0]
        got = wang.post(
            f"/cases/{mine}/attach-range",
            data={
                "csrf": token,
                "device": own.device,
                "start": seg.start_utc if hasattr(seg, "start_utc") else seg.utc,
                "end": secret_act.segments[-1].utc,
            },
        )
        assert got.status_code in (400, 403), said(got)
        assert audited(arch) >= n + 1
        assert state(arch, own) == before
        page = wang.get(f"/cases/{mine}")
        assert all(s.body["file"] not in page.text for s in secret_act.segments)
    finally:
        arch.close()


def test_every_response_carries_the_security_headers_and_no_host_is_trusted(
    arch: Archive, world: World
) -> None:
    li = logged_in(arch, "li", PW)
    stranger = console(arch)
    act = open_act(world)
    checks = [
        (stranger, "/"),  # a redirect to the login
        (stranger, "/login"),
        (stranger, "/static/player.js"),
        (stranger, "/console.css"),
        (stranger, "/no/such/page"),
        (li, f"/play/{world.device}/{act.start_seq}/media/{act.segments[0].seq}.ts"),
        (li, f"/play/{world.device}/{act.start_seq}/index.m3u8"),
        (li, "/cases"),  # refused to an officer
        (li, f"/play/{world.device}/{act.start_seq}?t=nan"),
    ]
    for client, path in checks:
        got = client.get(path, headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
        assert got.headers["x-content-type-options"] == "nosniff", path
        assert got.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in got.headers["content-security-policy"], path
        assert "evil.example" not in got.headers.get("location", ""), path
    # A `next` that carries a header of its own is a path with it percent-encoded.
    c = console(arch)
    got = login(c, "li", PW, next_url="/day\r\nSet-Cookie: planted=1")
    assert got.status_code == 303
    assert "\r" not in got.headers["location"] and "\n" not in got.headers["location"]
    assert not any("planted" in h for h in got.headers.get_list("set-cookie"))


def test_a_copy_decision_withholds_only_the_cases_own_recordings(
    world: World, tmp_path: Path
) -> None:
    from consolekit import copy_world

    own = copy_world(world, tmp_path)
    arch = Archive.open(own.archive)
    try:
        w = arch.login("wang", PW)
        number = arch.open_case(w, "inspection", "inspection", ["x"], [own.officer], "internal")
        arch.attach_act(w, number, own.device, acts(own.shift)[2].start_seq)
        rid = arch.request_copy(w, number, "party", "bundle", "complaint")
        zhao = logged_in(arch, "zhao", PW)
        token = page_csrf(zhao, f"/copies/{rid}")
        before = state(arch, own)
        other = open_act(own).segments[0].seq  # in no case, or in another
        for form in (
            {"omit_lines": f"{own.device}:{other}=not this case's"},
            {"omit_lines": "cam-x:1=no such camera"},
            {"omit_lines": f"{own.device}:{BIG}=huge"},
            {"omit_lines": "no equals sign"},
            {"withhold": f"{own.device}:{other}", f"why:{own.device}:{other}": "x"},
            {"withhold": "../../etc:1"},
        ):
            got = zhao.post(
                f"/copies/{rid}/decide", data={"csrf": token, "decision": "approve"} | form
            )
            assert got.status_code == 400, (form, said(got))
            no_trace(got.text)
        got = zhao.post(f"/copies/{rid}/decide", data={"csrf": token, "decision": "maybe"})
        assert got.status_code == 400
        assert state(arch, own) == before
    finally:
        arch.close()


def test_a_camera_handed_to_another_officer_does_not_hand_them_its_past(
    world: World, tmp_path: Path
) -> None:
    """The unit re-registers the camera to officer B2048 (a pooled camera, next shift):
    B2048 is refused every recording A1024 made with it, on the player, its playlist and
    segments as on the day page; A1024 still sees their own."""
    import dataclasses
    import time

    from consolekit import copy_world

    from evidence.clock import format_utc
    from evidence.registry import Registry
    from simulator.unit import unit_key

    own = copy_world(world, tmp_path)
    path = own.shift.store / "registry.json"
    registry = Registry.load(path)
    entry = registry.get(own.device)
    registry.add(dataclasses.replace(entry, officer="B2048"), replace=True)
    registry.save_signed(path, unit_key(own.shift.root), format_utc(time.time_ns()))
    arch = Archive.open(own.archive)
    try:
        arch.refresh_registry()
        ma, li = logged_in(arch, "ma", PW), logged_in(arch, "li", PW)
        act = open_act(own)
        seg = act.segments[0].seq
        for path in (
            f"/play/{own.device}/{act.start_seq}",
            f"/play/{own.device}/{act.start_seq}/index.m3u8",
            f"/play/{own.device}/{act.start_seq}/media/{seg}.ts",
            f"/recordings/{own.device}/{seg}/checks",
        ):
            n = audited(arch)
            got = ma.get(path)
            assert got.status_code == 403, (path, said(got))
            assert audited(arch) == n + 1
            assert li.get(path).status_code == 200, path
    finally:
        arch.close()


def test_classifying_and_filing_by_number_keep_to_the_clearance(
    world: World, tmp_path: Path
) -> None:
    """The reclassify form and the compliance page's attach-by-number form: an archivist
    may neither lift a case above their clearance nor touch a state-secret one; an
    officer classifies nothing; a classification that is no classification is a 400."""
    from consolekit import copy_world

    own = copy_world(world, tmp_path)
    arch = Archive.open(own.archive)
    try:
        zhao = arch.login("zhao", PW)
        secret = arch.open_case(zhao, "secret", "inspection", ["x"], [own.officer], "state_secret")
        w = arch.login("wang", PW)
        mine = arch.open_case(w, "mine", "inspection", ["x"], [own.officer], "internal")
        wang, li = logged_in(arch, "wang", PW), logged_in(arch, "li", PW)
        token, ltoken = page_csrf(wang, "/"), page_csrf(li, "/")
        before = state(arch, own)
        act = str(acts(own.shift)[2].start_seq)
        for client, tok, path, form, codes in (
            (wang, token, f"/cases/{secret}/classify", {"classification": "internal"}, (403,)),
            (wang, token, f"/cases/{mine}/classify", {"classification": "state_secret"}, (403,)),
            (li, ltoken, f"/cases/{mine}/classify", {"classification": "public"}, (403,)),
            (wang, token, f"/cases/{mine}/classify", {"classification": "bogus"}, (400,)),
            (wang, token, f"/cases/{mine}/classify", {"classification": "public\x00"}, (400,)),
            (
                wang,
                token,
                "/cases/attach-act",
                {"number": secret, "device": own.device},
                (400, 403),
            ),
            (
                wang,
                token,
                "/cases/attach-act",
                {"number": secret, "device": own.device, "act": act},
                (403,),
            ),
            (
                li,
                ltoken,
                "/cases/attach-act",
                {"number": mine, "device": own.device, "act": act},
                (403,),
            ),
            (
                wang,
                token,
                "/cases/attach-act",
                {"number": "../../x", "device": own.device, "act": act},
                (400, 404),
            ),
        ):
            n = audited(arch)
            got = client.post(path, data={"csrf": tok, "reason": "r"} | form)
            assert got.status_code in codes, (path, form, said(got))
            no_trace(got.text)
            if got.status_code == 403:
                assert audited(arch) == n + 1, (path, form)
        assert state(arch, own) == before
    finally:
        arch.close()
