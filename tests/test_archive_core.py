"""The archive's core on SQLite and on a real PostgreSQL 15: users and logins, case files
over a real dock store, the 30-day report, and the audit log that bodycam-verify checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive, register_archive
from dockkit import NS, START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import ArchiveError, ClosedCase, LoginFailed, NotFound, Refused
from archive.service import Archive
from archive.users import TOTP_STEP_S
from evidence.verify import verify_path
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START + 2 * DAY)


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path, clock: SimClock):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, clock)
    yield archive
    archive.close()


def staff(arch: Archive) -> dict[str, object]:
    """An archivist, an officer, a head of unit and an auditor, logged in."""
    admin = arch.login("admin", PW)
    arch.add_user(admin, "wang", "archivist", PW)
    arch.add_user(admin, "li", "officer", PW, officer="A1024")
    arch.add_user(admin, "zhao", "head", PW)
    arch.add_user(admin, "qian", "auditor", PW)
    return {n: arch.login(n, PW) for n in ("wang", "li", "zhao", "qian")} | {"admin": admin}


def test_a_case_file_refers_to_the_store_and_closes_for_good(arch: Archive, world: World) -> None:
    s = staff(arch)
    number = arch.open_case(
        s["wang"], "traffic stop", "traffic", ["Zhang San"], ["A1024"], "personal_privacy"
    )
    assert number == f"{arch.now_utc()[:4]}-0001"
    seq, files = world.acts[0]
    refs = arch.attach_act(s["wang"], number, world.device, seq)
    assert [r.file for r in refs] == files
    stored = refs[0].path(world.store)  # personal_privacy: kept only sealed in the store
    assert not os.path.exists(stored) and arch.is_sealed(world.device, refs[0].file)
    # a time range over the second act finds its two segments, and not the first act's
    later = arch.attach_range(
        s["wang"], number, world.device, world.act_ends[0], "2099-01-01T00:00:00Z"
    )
    assert [r.file for r in later] == world.acts[1][1]
    with pytest.raises(ArchiveError, match="already holds"):
        arch.attach_act(s["wang"], number, world.device, seq)
    doc = world.tmp / "statement.pdf"
    doc.write_bytes(b"%PDF-1.4 statement of Zhang San\n")
    digest = arch.attach_document(s["wang"], number, str(doc), "statement")
    # the case is personal_privacy: on disk only ciphertext, under a random name
    assert not (arch.folder / "documents" / digest).exists()
    assert all(
        doc.read_bytes() not in p.read_bytes() for p in (arch.folder / "documents").iterdir()
    )
    arch.read_document(s["li"], number, digest, world.tmp / f"read-{arch.url[:6]}")
    assert (world.tmp / f"read-{arch.url[:6]}").read_bytes() == doc.read_bytes()
    # the officer named in the case sees it; the auditor's clearance stops at internal
    assert len(arch.show_case(s["li"], number)["entries"]) == 6
    with pytest.raises(Refused, match="classified personal_privacy"):
        arch.show_case(s["qian"], number)
    arch.close_case(s["wang"], number)
    with pytest.raises(ClosedCase, match="immutable"):
        arch.attach_document(s["wang"], number, str(doc), "again")
    with pytest.raises(ClosedCase, match="was closed"):
        arch.close_case(s["wang"], number)
    arch.attach_document(s["wang"], number, str(doc), "court copy", reason="court asked")
    case = arch.show_case(s["zhao"], number)
    assert case["status"] == "closed"
    assert case["entries"][-1]["after_close"] and case["entries"][-1]["reason"] == "court asked"
    assert all(not e.get("after_close") for e in case["entries"][:-1])
    # what the court bundle will read: references, in order, after the export check
    with pytest.raises(Refused, match="may not export"):
        arch.case_recordings(s["zhao"], number, "export")
    with pytest.raises(Refused, match="no copy request approved"):
        arch.case_recordings(s["wang"], number, "export")
    refs = arch.case_recordings(s["wang"], number)
    assert [(r.device, r.seq) for r in refs] == [(r.device, r.seq) for r in refs]
    assert len(refs) == 5 and all(r.unit == "unit-1" for r in refs)
    with pytest.raises(NotFound):
        arch.show_case(s["wang"], "2026-9999")


def test_logins_second_factor_and_deactivation(arch: Archive, clock: SimClock) -> None:
    import pyotp

    admin = arch.login("admin", PW)
    secret = arch.add_user(admin, "sun", "supervisor", PW, totp=True)
    with pytest.raises(LoginFailed):
        arch.login("sun", PW)  # no code
    code = pyotp.TOTP(secret).at(clock.time_ns() // NS)
    with pytest.raises(LoginFailed):
        arch.login("sun", "wrong password", code)
    assert arch.login("sun", PW, code).role == "supervisor"
    with pytest.raises(LoginFailed):
        arch.login("sun", PW, code)  # the same code twice
    clock.advance(TOTP_STEP_S * NS)
    arch.login("sun", PW, pyotp.TOTP(secret).at(clock.time_ns() // NS))
    with pytest.raises(LoginFailed):
        arch.login("nobody", PW)
    arch.set_active(admin, "sun", False)
    clock.advance(TOTP_STEP_S * NS)
    with pytest.raises(LoginFailed):
        arch.login("sun", PW, pyotp.TOTP(secret).at(clock.time_ns() // NS))
    with pytest.raises(Refused, match="may not user manage"):
        arch.add_user(
            arch.login("admin", PW) and _as(arch, "sun2", "head", admin), "x", "officer", PW
        )
    kinds = [r.kind for r in arch.audit.records()]
    assert kinds.count("login_failed") == 5 and "refusal" in kinds
    import sqlalchemy as sa

    from archive.schema import users

    with arch.engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalars().all()
    assert stored and all(h.startswith("$argon2id$") and PW not in h for h in stored)
    # a user changes their own password; changing another's is the administrator's
    arch.set_password(arch.login("sun2", PW), "sun2", "another long password")
    with pytest.raises(LoginFailed):
        arch.login("sun2", PW)
    sun2 = arch.login("sun2", "another long password")
    with pytest.raises(Refused, match="may not user manage"):
        arch.set_password(sun2, "admin", "taken over, perhaps")
    arch.set_password(admin, "sun2", PW)
    assert arch.login("sun2", PW).role == "head"
    hashes = [u for u in arch.list_users(admin)]
    assert {u["name"] for u in hashes} == {"admin", "sun", "sun2"}


def _as(arch: Archive, name: str, role: str, admin) -> object:
    arch.add_user(admin, name, role, PW)
    return arch.login(name, PW)


def test_the_deadline_report_on_cases_of_varied_ages(arch: Archive, world: World) -> None:
    s = staff(arch)
    w = s["wang"]
    now = START + 40 * DAY
    ages = {"fresh": 3, "soon": 26, "late": 31, "closed_late": 35}
    numbers = {}
    for name, age in ages.items():
        from evidence.clock import format_utc

        numbers[name] = arch.open_case(
            w, name, "traffic", [], ["A1024"], "internal", act_end_utc=format_utc(now - age * DAY)
        )
    numbers["no_act"] = arch.open_case(w, "unknown", "traffic", [], [], "internal")
    arch.clock = SimClock(now - 1 * DAY)  # closed 34 days after its act: late
    arch.close_case(w, numbers["closed_late"])
    # a case's deadline runs from its recordings' act too: the store's acts ended at START
    numbers["recorded"] = arch.open_case(w, "recorded", "traffic", [], ["A1024"], "internal")
    arch.attach_act(w, numbers["recorded"], world.device, world.acts[0][0])
    report = arch.deadline_report(s["zhao"], now)
    state = {c["number"]: c["state"] for c in report["cases"]}
    assert state == {
        numbers["fresh"]: "open",
        numbers["soon"]: "due_soon",
        numbers["late"]: "overdue",
        numbers["closed_late"]: "closed_late",
        numbers["no_act"]: "no_act",
        numbers["recorded"]: "overdue",
    }
    recorded = next(c for c in report["cases"] if c["number"] == numbers["recorded"])
    assert recorded["deadline_utc"] > world.act_ends[0][:10]
    with pytest.raises(Refused):
        arch.deadline_report(s["li"], now)


def test_the_audit_log_verifies_and_catches_removed_edited_reordered(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    s = staff(arch)
    number = arch.open_case(s["wang"], "seizure", "seizure", ["P"], ["A1024"], "internal")
    arch.classify(s["wang"], number, "business_secret", "a trade secret of the party")
    with pytest.raises(Refused):
        arch.show_case(s["qian"], number)
    with pytest.raises(Refused):
        arch.classify(s["wang"], number, "state_secret", "above the archivist's clearance")
    kinds = [r.kind for r in arch.audit.records()]
    for kind in ("archive", "user", "login", "case", "classification", "refusal"):
        assert kind in kinds, kind
    fp = register_archive(world, arch)
    report = verify_path(arch.folder, unit_keys={fp})
    assert report.kind == "audit_log" and report.intact, [str(p) for p in report.problems]
    assert report.devices[0].device == "archive-1" and report.devices[0].records == len(kinds)
    # without a named unit key the registry beside it does not vouch for it
    assert not verify_path(arch.folder).intact
    journal = arch.audit.path
    lines = journal.read_bytes().splitlines(keepends=True)

    def damaged(new_lines: list[bytes]) -> set[str]:
        journal.write_bytes(b"".join(new_lines))
        codes = {p.code for p in verify_path(arch.folder / "audit", unit_keys={fp}).problems}
        journal.write_bytes(b"".join(lines))
        return codes

    assert "sequence_gap" in damaged(lines[:3] + lines[4:])
    edited = json.loads(lines[5])
    edited["body"]["user"] = "someone else"
    line = json.dumps(edited, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert "bad_signature" in damaged(lines[:5] + [line] + lines[6:])
    assert "reordered" in damaged(lines[:4] + [lines[5], lines[4]] + lines[6:])
    assert verify_path(arch.folder, unit_keys={fp}).intact
    # a cut tail: the database's own account of the head finds it, and so does the archive
    seq, digest = arch.audit_head()
    head = ("archive-1", seq, digest)
    journal.write_bytes(b"".join(lines[:-2]))
    cut = verify_path(arch.folder, unit_keys={fp}, expect_heads=[head])
    assert "tail_cut" in {p.code for p in cut.problems}
    with pytest.raises(ArchiveError, match="no longer holds entry"):
        Archive.open(arch.folder)
    journal.write_bytes(b"".join(lines))
    Archive.open(arch.folder).close()


def test_the_schema_is_the_migrations_and_reopening_keeps_it(arch: Archive, db_url: str) -> None:  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from archive.schema import metadata

    with arch.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    admin = arch.login("admin", PW)
    arch.add_user(admin, "wang", "archivist", PW)
    arch.close()
    again = Archive.open(arch.folder)
    try:
        assert again.login("wang", PW).role == "archivist"
        head = again.audit.records()[-1]
        assert head.kind == "login"
    finally:
        again.close()
