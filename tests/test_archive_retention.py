"""Retention and legal holds through the archive, on both backends: a real dock store
(real journals, one docking over a pty pair) with recordings of three ages; due lists
exactly the right files as cases, holds and time change; a purge removes them through the
dock store with the dock's key, the dock journal's ``removed`` records carry the authority,
and ``bodycam-verify`` passes; roles allowed and refused for holds and purges."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from corekit import PW
from dockkit import START, store_trust
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from retentionkit import DAY, Aged, archive_over, build_aged, copy_aged, dock_journal

from archive.exc import ArchiveError, Refused
from archive.schema import recordings, removals
from archive.service import Archive
from evidence.clock import format_utc, parse_utc
from evidence.journal import records_of_kind
from evidence.verify import verify_path
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Aged:
    return build_aged(tmp_path_factory.mktemp("aged"))


@pytest.fixture
def world(template: Aged, tmp_path: Path) -> Aged:
    """A copy of the aged store per test (purges change it)."""
    return copy_aged(template, tmp_path / "w")


def files(rows: list[dict]) -> list[str]:
    return [r["file"] for r in rows]


def test_due_follows_cases_holds_and_time(world: Aged, db_url: str) -> None:  # noqa: F811
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock)
    try:
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        a, b, c = world.acts
        due = arch.retention_due(wang)
        assert files(due) == a  # only the first act has run out (183 days)
        first = due[0]
        until = format_utc(parse_utc(world.ends[0][0]) + 183 * DAY)
        assert first["category"] == "routine" and first["kept_until_utc"] == until
        assert first["why"] == f"routine: ended {world.ends[0][0]}, kept 183 days until {until}"
        # a recording in a case is kept, open or closed
        number = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
        assert files(arch.retention_due(wang)) == a[1:]
        arch.close_case(wang, number)
        assert files(arch.retention_due(wang)) == a[1:]
        # a hold on the camera's time range keeps what it overlaps, until released
        hold = arch.place_hold(
            wang,
            "the party complained",
            device="cam-001",
            from_utc=world.starts[0][1],
            to_utc=world.ends[0][1],
        )
        assert arch.retention_due(wang) == []
        assert [h["id"] for h in arch.list_holds(zhao)] == [hold]
        arch.release_hold(zhao, hold, "the complaint was withdrawn")
        assert files(arch.retention_due(wang)) == a[1:]
        assert arch.list_holds(wang) == [] and len(arch.list_holds(wang, released=True)) == 1
        # later, the second act runs out too; --device, --before filter
        later = START + 230 * DAY  # the second act's until is day 213, the third's 243
        assert files(arch.retention_due(wang, now_ns=later)) == a[1:] + b
        assert files(arch.retention_due(wang, now_ns=later, before=world.ends[1][0])) == a[1:]
        assert arch.retention_due(wang, now_ns=later, device="cam-002") == []
        # a hold on a case keeps its cameras' recordings over the case's whole span
        other = arch.open_case(wang, "penalty", "penalty", [], ["A1024"], "internal")
        arch.attach_range(wang, other, "cam-001", world.starts[1][1], world.ends[1][1])
        assert files(arch.retention_due(wang, now_ns=later)) == a[1:] + b[:1]
        arch.attach_range(wang, other, "cam-001", world.starts[0][0], world.ends[0][0])
        arch.place_hold(zhao, "court order 17", case=other)
        assert arch.retention_due(wang, now_ns=later) == []  # a[1], b[0] lie in the span
        kinds = [(r.kind, r.body["detail"].get("event")) for r in arch.audit.records()]
        assert kinds.count(("hold", "placed")) == 2 and kinds.count(("hold", "released")) == 1
        released = [r for r in arch.audit.records() if r.kind == "hold"][1].body
        assert released["user"] == "zhao" and released["detail"]["reason"] == (
            "the complaint was withdrawn"
        )
    finally:
        arch.close()


def test_a_unit_category_keeps_longer(world: Aged, db_url: str) -> None:  # noqa: F811
    extra = '[retention.categories]\nlong = 400\n[retention.units]\nunit-1 = "long"\n'
    arch = archive_over(world, db_url, SimClock(START + 200 * DAY), extra)
    try:
        wang = arch.login("wang", PW)
        assert arch.retention_due(wang) == []
        due = arch.retention_due(wang, now_ns=START + 401 * DAY)
        assert files(due) == world.acts[0] and due[0]["category"] == "long"
    finally:
        arch.close()
    toml = world.tmp / "archive" / "archive.toml"
    toml.write_text(toml.read_text().replace("long = 400", "long = 90"))
    with pytest.raises(ArchiveError, match="at least 183 days"):
        Archive.open(world.tmp / "archive")


def test_purge_removes_through_the_dock_with_its_authority(world: Aged, db_url: str) -> None:  # noqa: F811
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock)
    try:
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        number = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
        kept, gone = world.acts[0]
        dry = arch.retention_purge(zhao, dry_run=True)
        assert files(dry["would_remove"]) == [gone]
        folder = world.store / "unit-1" / "cam-001"
        assert (folder / gone).is_file()
        result = arch.retention_purge(zhao)
        assert files(result["removed"]) == [gone] and result["refused"] == []
        assert not (folder / gone).exists()
        assert all((folder / f).is_file() for f in [kept, *world.acts[1], *world.acts[2]])
        (made,) = records_of_kind(dock_journal(world.store), "removed")
        grounds = made.body["retention"]
        audit = {r.seq: r for r in arch.audit.records()}[grounds["audit_seq"]]
        assert audit.kind == "retention" and audit.body["user"] == "zhao"
        assert audit.body["detail"]["file"] == gone and audit.body["detail"]["event"] == "purge"
        assert grounds == {
            "rule": "retention_ran_out",
            "category": "routine",
            "end_utc": world.ends[0][1],
            "kept_until_utc": format_utc(parse_utc(world.ends[0][1]) + 183 * DAY),
            "archive": "archive-1",
            "user": "zhao",
            "audit_seq": audit.seq,
        }
        assert made.body["file"] == gone and made.body["authority"] == "retention"
        assert made.utc == format_utc(clock.time_ns())  # stamped by the archive's clock
        with arch.engine.connect() as conn:
            row = conn.execute(sa.select(removals)).mappings().one()
        assert row["dock_seq"] == made.seq and row["audit_seq"] == audit.seq
        assert arch.retention_due(wang) == []  # gone is not due again
        assert arch.retention_purge(zhao) == {
            "removed": [],
            "refused": [],
            "would_remove": [],
            "reconciled": [],
        }
        report = verify_path(world.store, unit_keys=store_trust(world.tmp))
        assert report.problems == [], [str(p) for p in report.problems]
        notes = [n for d in report.devices for n in d.notes if gone in n]
        assert (
            len(notes) == 1 and "under retention (retention_ran_out, category routine" in notes[0]
        )
        assert f"archive archive-1, zhao, audit seq {audit.seq}" in notes[0]
    finally:
        arch.close()


def test_the_dock_refuses_what_the_index_wrongly_calls_due(world: Aged, db_url: str) -> None:  # noqa: F811
    """The archive's index is derived data: a young recording whose indexed end was made
    old is still refused by the dock store (its own signed record), nothing journaled."""
    arch = archive_over(world, db_url, SimClock(START + 200 * DAY))
    try:
        zhao = arch.login("zhao", PW)
        young = world.acts[2][0]
        with arch.engine.begin() as conn:
            conn.execute(
                recordings.update()
                .where(recordings.c.file == young)
                .values(end_utc=format_utc(START - DAY))
            )
        before = dock_journal(world.store).read_bytes()
        result = arch.retention_purge(zhao, device="cam-001", before=format_utc(START))
        assert files(result["refused"]) == [young] and result["removed"] == []
        assert "kept at least 183 days" in result["refused"][0]["reason"]
        after = dock_journal(world.store).read_bytes()
        assert records_of_kind(dock_journal(world.store), "removed") == []
        assert after.startswith(before)  # only the purge process's own boot record
        assert (world.store / "unit-1" / "cam-001" / young).is_file()
        last = arch.audit.records()[-1]
        assert last.kind == "retention" and last.body["detail"]["event"] == "not_removed"
    finally:
        arch.close()


def test_a_purge_needs_the_docks_own_config(world: Aged, db_url: str) -> None:  # noqa: F811
    arch = archive_over(world, db_url, SimClock(START + 200 * DAY), dock_config=False)
    try:
        zhao = arch.login("zhao", PW)
        with pytest.raises(ArchiveError, match="set dock_config in archive.toml"):
            arch.retention_purge(zhao)
        other = world.tmp / "other.toml"
        text = (world.tmp / "dock.toml").read_text()
        other.write_text(text.replace(str(world.store), str(world.tmp / "elsewhere")))
        with pytest.raises(ArchiveError, match="not this archive's"):
            arch.retention_purge(zhao, dock_config=str(other))
        other.write_text(text.replace("dock.key", "no-such.key"))
        with pytest.raises(ArchiveError, match="the dock's config"):
            arch.retention_purge(zhao, dock_config=str(other))
        assert all((world.store / "unit-1" / "cam-001" / f).is_file() for f in world.acts[0])
        assert records_of_kind(dock_journal(world.store), "removed") == []
    finally:
        arch.close()


HOLD_ROLES = {"archivist": True, "head": True, "supervisor": False, "auditor": False}
HOLD_ROLES |= {"officer": False, "administrator": False}
PURGE_ROLES = {"head": True, "archivist": False, "supervisor": False, "auditor": False}
PURGE_ROLES |= {"officer": False, "administrator": False}


def test_roles_for_holds_and_purges(world: Aged, db_url: str) -> None:  # noqa: F811
    arch = archive_over(world, db_url, SimClock(START + 200 * DAY))
    try:
        who = {"archivist": "wang", "head": "zhao", "auditor": "qian", "supervisor": "sun"}
        who |= {"officer": "li", "administrator": "admin"}
        sessions = {role: arch.login(name, PW) for role, name in who.items()}
        for role, allowed in HOLD_ROLES.items():
            place = lambda s=sessions[role]: arch.place_hold(  # noqa: E731
                s, "order", device="cam-001", from_utc="2026-11-18", to_utc="2026-11-19"
            )
            if allowed:
                assert place() > 0
            else:
                with pytest.raises(Refused, match="may not hold"):
                    place()
        for role, allowed in PURGE_ROLES.items():
            if allowed:
                arch.retention_purge(sessions[role], dry_run=True)
            else:
                with pytest.raises(Refused, match="may not purge"):
                    arch.retention_purge(sessions[role], dry_run=True)
        secret = arch.open_case(sessions["head"], "x", "inspection", [], [], "state_secret")
        with pytest.raises(Refused, match="classified state_secret"):
            arch.place_hold(sessions["archivist"], "order", case=secret)
        assert arch.place_hold(sessions["head"], "order", case=secret) > 0
        refusals = [r for r in arch.audit.records() if r.kind == "refusal"]
        assert len(refusals) == 4 + 5 + 1  # each refusal audited
    finally:
        arch.close()


def run_archive(world: Aged, user: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=PW)
    return subprocess.run(
        [*ARCHIVE_CLI, "--dir", str(world.tmp / "archive"), "--user", user] + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_command_line_on_a_store_aged_in_real_time(tmp_path: Path) -> None:
    """``bodycam-archive hold`` and ``retention due|purge`` as a user runs them (SQLite;
    the real clock: the first act ended 200 days ago)."""
    import time

    world = build_aged(tmp_path, time.time_ns() - 200 * DAY)
    arch = archive_over(world, "", SimClock())
    arch.close()
    denied = run_archive(world, "wang", "retention", "purge")
    assert denied.returncode == 3 and "wang (an archivist) may not purge" in denied.stderr
    due = run_archive(world, "wang", "retention", "due")
    assert due.returncode == 0, due.stderr
    assert [line.split()[3].rstrip(":") for line in due.stdout.splitlines()] == world.acts[0]
    assert "routine: ended" in due.stdout
    held = run_archive(
        world, "wang", "hold", "add", "--device", "cam-001", "--from",
        world.starts[0][0], "--to", world.ends[0][0], "--reason", "complaint 12",
    )  # fmt: skip
    assert held.returncode == 0 and held.stdout.strip() == "hold 1 placed", held.stderr
    bad = run_archive(world, "wang", "hold", "add", "--device", "cam-001", "--reason", "x")
    assert bad.returncode == 2 and "needs --from and --to" in bad.stderr
    assert "Traceback" not in bad.stderr
    purge = run_archive(world, "zhao", "retention", "purge")
    assert purge.returncode == 0, purge.stderr
    assert purge.stdout.count("removed cam-001") == 1 and world.acts[0][1] in purge.stdout
    folder = world.store / "unit-1" / "cam-001"
    assert (folder / world.acts[0][0]).is_file() and not (folder / world.acts[0][1]).exists()
    listed = run_archive(world, "qian", "hold", "list")
    assert listed.returncode == 0 and "complaint 12" in listed.stdout
    verify = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(world.store), "--trust",
         str(world.tmp / "trust.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout[-2000:]
    assert "under retention (retention_ran_out, category routine" in verify.stdout
    db = sqlite3.connect(world.tmp / "archive" / "archive.sqlite")
    assert db.execute("SELECT count(*) FROM removals").fetchone() == (1,)
    db.close()
