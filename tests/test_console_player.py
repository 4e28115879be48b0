"""The player's routes over a real simulated shift's store, on SQLite and on a real
PostgreSQL (fastapi's TestClient, no browser): the page, the playlist and every segment
for whom the policy clears; the sealed act decrypted in memory and nothing written to the
store; page, playlist and segment refused to whom it does not, each refusal audited."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from consolekit import PW, acts, build_archive, copy_shift
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import logged_in

from archive.service import Archive
from archive.web import hls
from evidence.dockjournal import sealed_name
from evidence.journal import JOURNAL_NAME, readable_records


@pytest.fixture(scope="module")
def shift_once(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="10m")


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_who_may_play_what_on_both_backends(
    shift_once: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    shift = copy_shift(shift_once, tmp_path / "shift")
    world = build_archive(shift, tmp_path / "archive", sealed_act=1, database=db_url)
    sealed = hls.playback_of(shift.records, acts(shift)[1])
    clear = hls.playback_of(shift.records, acts(shift)[-1])
    assert all(not (shift.folder / p.file).exists() for p in sealed.pieces)  # sealed at rest
    assert all((shift.folder / sealed_name(p.file)).is_file() for p in sealed.pieces)
    before = tree(shift.store)
    with Archive.open(world.archive) as arch:
        wang = logged_in(arch, "wang", PW)
        for play in (sealed, clear):
            page = wang.get(f"/play/{shift.device}/{play.start_seq}")
            assert page.status_code == 200, page.text[-500:]
            data = json.loads(
                re.search(r'id="player-data">(.*?)</script>', page.text, re.S).group(1)
            )
            assert [p["seq"] for p in data["pieces"]] == [p.seq for p in play.pieces]
            listed = wang.get(data["playlist"])
            assert listed.status_code == 200 and listed.text.count("#EXTINF") == len(play.pieces)
            for piece in play.pieces:
                got = wang.get(f"/play/{shift.device}/{play.start_seq}/media/{piece.seq}.ts")
                assert got.status_code == 200, got.text[-300:]
                holes = hls.scan(got.content)
                assert holes is None  # what the browser gets has sound all along
                if hashlib.sha256(got.content).hexdigest() != piece.sha256:
                    assert len(got.content) > piece.size  # the rendition: silence added
        assert 'class="note sealed"' in wang.get(f"/play/{shift.device}/{sealed.start_seq}").text
        assert 'class="note sealed"' not in page.text  # the clear act, shown last
        for name in ("sun", "qian"):  # supervisor, auditor: up to internal
            who = logged_in(arch, name, PW)
            base = f"/play/{shift.device}/{sealed.start_seq}"
            for url in (base, base + "/index.m3u8", f"{base}/media/{sealed.pieces[0].seq}.ts"):
                got = who.get(url)
                assert got.status_code == 403 and "personal_privacy" in got.text, url
            assert who.get(f"/play/{shift.device}/{clear.start_seq}").status_code == 200
        for bad in ("nan", "inf", "-inf", "1e400", "x"):
            got = wang.get(f"/play/{shift.device}/{clear.start_seq}?t={bad}")
            assert got.status_code == 400 and "Traceback" not in got.text, bad
        assert wang.get(f"/play/{shift.device}/{clear.start_seq}?t=-5").status_code == 200
        assert wang.get(f"/play/{shift.device}/{clear.start_seq}?t=1e9").status_code == 200
        admin = logged_in(arch, "admin", PW)
        assert admin.get(f"/play/{shift.device}/{clear.start_seq}").status_code == 403
        li = logged_in(arch, "li", PW)  # the camera's officer: their own, and in the case
        assert li.get(f"/play/{shift.device}/{clear.start_seq}").status_code == 200
        assert li.get(f"/play/{shift.device}/{sealed.start_seq}").status_code == 200
    audit = readable_records(world.archive / "audit" / JOURNAL_NAME)
    refused = [r for r in audit if r.kind == "refusal" and r.body["user"] in ("sun", "qian")]
    assert len(refused) == 6 and {r.body["detail"]["action"] for r in refused} == {"view"}
    plays = [r for r in audit if r.kind == "view" and r.body["detail"].get("what") == "play"]
    assert {r.body["user"] for r in plays} >= {"wang", "sun", "qian", "li"}
    assert tree(shift.store) == before  # nothing written: no plaintext, no cache, no change
