"""Recordings removed under retention, as the console shows them, on SQLite and on a real
PostgreSQL 15: a real purge through the dock (``retentionkit``'s aged store, real
journals), then the recordings index, the officer's day and the player.

The day page marks each removed segment with when, by whom and under what category, in
the same one query (no query per row); the player answers an act retention removed with
a 410 page that says so, and a removed segment's media with a 410 too, never a missing
file's 404."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from consolekit import Browser, Console, need_chromium
from corekit import PW
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from retentionkit import DAY, Aged, archive_over, build_aged, copy_aged
from webkit import logged_in

from archive.schema import recordings
from archive.web.i18n import LANG_COOKIE
from evidence.clock import format_utc
from evidence.journal import JOURNAL_NAME, readable_records
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Aged:
    return build_aged(tmp_path_factory.mktemp("aged"))


@pytest.fixture
def world(template: Aged, tmp_path: Path) -> Aged:
    return copy_aged(template, tmp_path / "w")


def segments(world: Aged) -> list[tuple[int, str]]:
    """The camera's segment records (seq, file), from its journal in the store."""
    journal = world.store / "unit-1" / "cam-001" / JOURNAL_NAME
    return [(r.seq, r.body["file"]) for r in readable_records(journal) if r.kind == "segment"]


def count_queries(engine: sa.Engine) -> list[str]:
    """The SQL statements the engine runs from now on (appended as they run)."""
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_removed_recordings_show_as_removed_with_when_and_by_whom(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock)
    try:
        zhao = arch.login("zhao", PW)
        result = arch.retention_purge(zhao)
        gone = [r["file"] for r in result["removed"]]
        assert gone == world.acts[0]  # the first act, past six months; the others kept
        removed_at = format_utc(clock.time_ns())
        by_file = dict((f, s) for s, f in segments(world))
        wang = arch.login("wang", PW)
        # the recordings index: each removed one with its removal, the kept ones without
        refs = arch.list_recordings(
            wang, "A1024", format_utc(START - DAY), format_utc(START + 100 * DAY)
        )
        assert len(refs) == 5
        for ref in refs:
            if ref.file in gone:
                assert ref.removed is not None
                assert (ref.removed.removed_utc, ref.removed.by_user) == (removed_at, "zhao")
                assert ref.removed.category == "routine"
            else:
                assert ref.removed is None
        web = logged_in(arch, "wang", PW)
        date = format_utc(START)[:10]  # 11:06Z: the same day in Asia/Shanghai
        queries = count_queries(arch.engine)
        page = web.get("/day", params={"officer": "A1024", "date": date})
        assert page.status_code == 200, page.text[-500:]
        on_day = list(queries)
        joined = [q for q in on_day if "removals" in q]
        assert len(joined) == 1 and "device_events" in joined[0], joined  # the one query
        shown = re.findall(r'<span class="removed" data-removed="([^"]+)">(.*?)</span>', page.text)
        assert len(shown) == 2 and all(utc == removed_at for utc, _ in shown), [
            x[:700] for x in re.findall(r"<tr class=\"segment.*", page.text)
        ]
        assert all("zhao" in text and "routine" in text for _, text in shown)
        assert page.text.count('class="play"') == 0  # nothing of that day left to play
        assert all("按保存期限删除" in text for _, text in shown)  # zh-CN first
        # its badge says removed, not verified: the file is gone by right
        badges = re.findall(r'data-badge="(\w+)">([^<]+)</span>', page.text)
        assert badges == [("removed", "已删除")] * 2, badges
        web.cookies.set(LANG_COOKIE, "en")
        english = web.get("/day", params={"officer": "A1024", "date": date})
        assert english.text.count("Removed under retention on") == 2
        assert (
            re.findall(r'data-badge="(\w+)">([^<]+)</span>', english.text)
            == [("removed", "removed")] * 2
        )
        web.cookies.delete(LANG_COOKIE)
        before = len(queries)
        later = web.get(
            "/day", params={"officer": "A1024", "date": format_utc(START + 30 * DAY)[:10]}
        )
        assert 'class="removed"' not in later.text and 'class="play"' in later.text
        assert "removed" not in re.findall(r'data-badge="(\w+)"', later.text)
        # no query per row: the page with two removed segments runs as many as one with none
        assert len(queries) - before == len(on_day), queries
        # the player: the removed act is a 410 that says when, by whom, under what category
        first = by_file[gone[0]]
        for url in (f"/play/cam-001/{first}", f"/play/cam-001/{first}/index.m3u8"):
            got = web.get(url)
            assert got.status_code == 410, (url, got.status_code, got.text[-300:])
            assert "zhao" in got.text and "routine" in got.text and "Traceback" not in got.text
            assert 'class="detail"' in got.text and "&lt;time" not in got.text
        media = web.get(f"/play/cam-001/{first}/media/{by_file[gone[1]]}.ts")
        assert media.status_code == 410 and "zhao" in media.text
        kept = by_file[world.acts[1][0]]
        assert web.get(f"/play/cam-001/{kept}").status_code == 200
        # who may not see the officer's material learns nothing of the removal either
        other = logged_in(arch, "admin", PW)
        assert other.get(f"/play/cam-001/{first}").status_code == 403
        with arch.engine.connect() as conn:  # the index keeps its rows: only marked
            assert conn.execute(sa.select(sa.func.count()).select_from(recordings)).scalar() == 5
    finally:
        arch.close()


def test_an_act_partly_removed_plays_the_rest_and_says_which_were_removed(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    arch = archive_over(world, db_url, SimClock(START + 200 * DAY))
    try:
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        number = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
        kept, gone = world.acts[0]  # the case holds the first segment of the act
        assert [r["file"] for r in arch.retention_purge(zhao)["removed"]] == [gone]
        by_file = {f: s for s, f in segments(world)}
        web = logged_in(arch, "wang", PW)
        page = web.get(f"/play/cam-001/{by_file[kept]}")
        assert page.status_code == 200, page.text[-500:]
        note = re.search(r'<p class="note removed">([^<]+)</p>', page.text)
        assert note and Path(gone).name in note.group(1), page.text[-2000:]
        assert 'class="error missing"' not in page.text  # removed, not missing
        media = web.get(f"/play/cam-001/{by_file[kept]}/media/{by_file[gone]}.ts")
        assert media.status_code == 410 and "zhao" in media.text
        listed = web.get(f"/play/cam-001/{by_file[kept]}/index.m3u8")
        assert listed.status_code == 200 and listed.text.count("#EXT-X-GAP") == 1
    finally:
        arch.close()


@pytest.mark.slow
def test_the_removed_day_and_player_page_in_a_browser(world: Aged) -> None:
    """Screenshots of what a person sees: the day with its removed act, the 410 page."""
    need_chromium()
    arch = archive_over(world, "", SimClock(START + 200 * DAY))
    try:
        assert arch.retention_purge(arch.login("zhao", PW))["removed"]
    finally:
        arch.close()
    first = dict((f, s) for s, f in segments(world))[world.acts[0][0]]
    with Console(world.tmp / "archive") as running, Browser(running.base) as browser:
        browser.login("wang", PW)
        browser.get(f"/day?officer=A1024&date={format_utc(START)[:10]}")
        shown = browser.js("return [...document.querySelectorAll('span.removed')].length")
        assert shown == 2
        browser.shot("day-removed")
        browser.get(f"/play/cam-001/{first}")
        text = browser.js("return document.body.innerText")
        assert "410" in text and "zhao" in text and "Traceback" not in text, text
        assert "<time" not in text and "UTC" in text, text  # the date as text, zone shown
        browser.shot("player-removed")
