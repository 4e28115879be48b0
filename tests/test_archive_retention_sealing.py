"""Where retention and sealing meet, on both backends, over a real dock store (real
journals, one docking over a pty pair): a confidential case is never left in clear at rest
(refused when the archive cannot seal); removing a sealed recording removes its sealed
and key files, and verify reports what a removal left behind; an attachment and a purge
of one recording serialise; a purge killed between the dock's removal and the archive's
record is reconciled; the dock journal itself says an archive keeps the store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from corekit import PW
from dockkit import START, store_trust
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from retentionkit import DAY, Aged, archive_over, build_aged, copy_aged, dock_journal

from archive.exc import ArchiveError
from archive.sealing import SealError
from archive.service import Archive
from dock.journal import DockJournal
from dock.store import Store
from evidence.dockjournal import key_name, removed_body, sealed_name
from evidence.identity import DeviceIdentity
from evidence.journal import records_of_kind
from evidence.verify import verify_path
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Aged:
    return build_aged(tmp_path_factory.mktemp("aged"))


@pytest.fixture
def world(template: Aged, tmp_path: Path) -> Aged:
    return copy_aged(template, tmp_path / "w")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by its SHA-256 (what "nothing changed" means on disk)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_archive(world: Aged, user: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=PW)
    env.pop("DEBUG", None)
    return subprocess.run(
        [*ARCHIVE_CLI, "--dir", str(world.tmp / "archive"), "--user", user] + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def set_dock_config(world: Aged, value: str) -> None:
    toml = world.tmp / "archive" / "archive.toml"
    lines = [ln for ln in toml.read_text().splitlines() if not ln.startswith("dock_config")]
    toml.write_text("\n".join(lines + [f'dock_config = "{value}"']) + "\n")


# -- 1. a confidential case is never left in clear -------------------------------------


def test_a_case_above_internal_that_cannot_be_sealed_is_refused(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    """Without dock_config (or with one that does not load), attaching to a case above
    internal and classifying a case with recordings up are refused: one line, audited,
    nothing changed in the database or the store. With it, the same attachment seals."""
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock, dock_config=False)
    folder = world.store / "unit-1" / "cam-001"
    try:
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        secret = arch.open_case(wang, "raid", "seizure", [], ["A1024"], "business_secret")
        plain = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, plain, "cam-001", world.starts[1][0], world.ends[1][0])
        store_before = snapshot(world.store)
        audit_before = len(arch.audit.records())
        with pytest.raises(SealError) as refused:
            arch.attach_range(wang, secret, "cam-001", world.starts[0][0], world.ends[0][0])
        message = str(refused.value)
        assert "\n" not in message and message.startswith("refused: ")
        assert "business_secret" in message and "no dock_config" in message
        assert "nothing changed" in message
        with pytest.raises(SealError, match="no dock_config"):
            arch.classify(zhao, plain, "state_secret", "the court says so")
        new = arch.audit.records()[audit_before:]
        assert [(r.kind, r.body["detail"]["action"]) for r in new] == [
            ("refusal", "case_change"),
            ("refusal", "classify"),
        ]
        assert new[1].body["detail"]["classification"] == "state_secret"
        assert arch.show_case(wang, secret)["entries"] == []
        assert arch.show_case(wang, plain)["classification"] == "internal"
        assert snapshot(world.store) == store_before  # nothing sealed, nothing journaled
        assert (folder / world.acts[1][0]).is_file()
    finally:
        arch.close()

    # a dock_config that does not load is no way to seal either
    set_dock_config(world, str(world.tmp / "no-such-dock.toml"))
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        with pytest.raises(SealError, match="no-such-dock.toml"):
            arch.attach_range(
                arch.login("wang", PW), secret, "cam-001", world.starts[0][0], world.ends[0][0]
            )
    finally:
        arch.close()
    assert snapshot(world.store) == store_before

    # from the command line: exit 2, one line, no traceback
    set_dock_config(world, "")
    cli = run_archive(
        world, "wang", "case", "attach", secret, "--device", "cam-001",
        "--from", world.starts[0][0], "--to", world.ends[0][0],
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    (line,) = cli.stderr.splitlines()
    assert line.startswith("bodycam-archive: error: refused: the recordings of case ")
    cli = run_archive(
        world, "zhao", "case", "classify", plain, "--to", "personal_privacy", "--reason", "x"
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert snapshot(world.store) == store_before

    # with the dock's config the same attachment seals at once
    set_dock_config(world, str(world.tmp / "dock.toml"))
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        wang = arch.login("wang", PW)
        arch.attach_range(wang, secret, "cam-001", world.starts[0][0], world.ends[0][0])
        assert not (folder / world.acts[0][0]).exists()
        assert arch.is_sealed("cam-001", world.acts[0][0])
    finally:
        arch.close()


# -- 2. a sealed recording's removal removes its sealed and key files --------------------


def dock_store(world: Aged, clock: SimClock) -> Store:
    """The store as its dock opens it: with the dock's key, trusting the unit key."""
    identity = DeviceIdentity.load(world.tmp / "dock-key" / "dock.key")
    return Store(world.store, clock, identity=identity, unit_keys=store_trust(world.tmp))


def problems(world: Aged) -> list[str]:
    report = verify_path(world.store, unit_keys=store_trust(world.tmp))
    return sorted(f"{p.code} {p.file}" for p in report.problems)


def test_removing_a_sealed_recording_removes_its_sealed_and_key_files(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    """The dock's removal takes every form of the file; a removal cut short (the record
    journaled, the files still there) is reported by verify, for exactly the removed
    recording's files, and reconcile finishes it."""
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock)
    folder = world.store / "unit-1" / "cam-001"
    first, second = world.acts[0]
    try:
        wang = arch.login("wang", PW)
        secret = arch.open_case(wang, "raid", "seizure", [], ["A1024"], "business_secret")
        arch.attach_range(wang, secret, "cam-001", world.starts[0][0], world.ends[0][1])
    finally:
        arch.close()
    forms = {f: [sealed_name(f), key_name(sealed_name(f))] for f in (first, second)}
    assert all((folder / p).is_file() for f in forms for p in forms[f])
    assert problems(world) == []
    store = dock_store(world, clock)
    try:
        made = store.remove_media("cam-001", first, "retention", "court ordered destruction")
    finally:
        store.close()
    assert made.kind == "removed" and made.body["file"] == first
    assert not any((folder / p).exists() for p in [first, *forms[first]])
    assert all((folder / p).is_file() for p in forms[second])  # the other stays sealed
    assert problems(world) == []

    # a removal cut short: journaled, its sealed file and key still there
    identity = DeviceIdentity.load(world.tmp / "dock-key" / "dock.key")
    journal = DockJournal(world.store, identity, clock)
    (stored,) = [r for r in records_of_kind(journal.path, "stored") if r.body["file"] == second]
    journal.append(
        "removed",
        removed_body("cam-001", "unit-1", second, stored.body["sha256"], "retention", "cut"),
    )
    journal.close()
    assert problems(world) == [
        f"removal_unfinished unit-1/cam-001/{p}" for p in sorted(forms[second])
    ]
    store = dock_store(world, clock)
    try:
        actions = store.reconcile()
    finally:
        store.close()
    assert any(f"finished the removal of {second}" in a for a in actions), actions
    assert not any((folder / p).exists() for p in forms[second])
    assert problems(world) == []


# -- 3. an attachment and a purge of one recording serialise -----------------------------

WAIT_S = 60.0  # a bound on a stuck thread, never a pause


def two_archives(world: Aged, url: str, clock: SimClock) -> tuple[Archive, Archive]:
    """The purger's and the attacher's archives: one archive, two openings (engines)."""
    return archive_over(world, url, clock), Archive.open(world.tmp / "archive", clock=clock)


def test_an_attachment_that_read_before_a_purge_never_holds_the_removed_recording(
    world: Aged,
    db_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attachment reads the recording in the store; the purge then removes it and
    commits; the attachment, judging again under the retention lock, attaches nothing."""
    import archive.cases

    clock = SimClock(START + 200 * DAY)
    purger, attacher = two_archives(world, db_url, clock)
    read_store, purged = threading.Event(), threading.Event()
    by_range = archive.cases.by_range

    def reading(*args, **kw):
        refs = by_range(*args, **kw)
        read_store.set()
        assert purged.wait(WAIT_S), "the purge never removed it"
        return refs

    purge_one = Archive._purge_one

    def purging_after_the_read(self, *args, **kw):
        assert read_store.wait(WAIT_S), "the attachment never read the store"
        try:
            return purge_one(self, *args, **kw)
        finally:
            purged.set()

    monkeypatch.setattr(archive.cases, "by_range", reading)
    monkeypatch.setattr(Archive, "_purge_one", purging_after_the_read)
    try:
        zhao, wang = purger.login("zhao", PW), attacher.login("wang", PW)
        number = attacher.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        with ThreadPoolExecutor(1) as pool:
            purge = pool.submit(purger.retention_purge, zhao)
            with pytest.raises(ArchiveError, match="left the dock store under retention"):
                attacher.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
            result = purge.result(WAIT_S)
        assert [r["file"] for r in result["removed"]] == world.acts[0]
        assert attacher.show_case(wang, number)["entries"] == []
        assert problems(world) == []
    finally:
        purger.close()
        attacher.close()


def test_an_attachment_waits_for_the_purge_removing_its_recording(
    world: Aged,
    db_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The purge is removing the recording (its transaction open) when the attachment's
    transaction asks for the retention lock: it waits for the purge to commit, then sees
    the removal. (SQLite takes its one write lock at BEGIN: any other transaction waits
    there, which the test above covers.)"""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite: every transaction waits at BEGIN for the purge's")
    import archive.cases

    clock = SimClock(START + 200 * DAY)
    purger, attacher = two_archives(world, db_url, clock)
    removing, locking = threading.Event(), threading.Event()
    lock_retention = archive.cases.lock_retention

    def asking(conn):
        locking.set()
        lock_retention(conn)

    remove_media = Store.remove_media

    def removing_once_the_attachment_asks(self, *args, **kw):
        removing.set()
        assert locking.wait(WAIT_S), "the attachment never asked for the lock"
        return remove_media(self, *args, **kw)

    monkeypatch.setattr(archive.cases, "lock_retention", asking)
    monkeypatch.setattr(Store, "remove_media", removing_once_the_attachment_asks)
    try:
        zhao, wang = purger.login("zhao", PW), attacher.login("wang", PW)
        number = attacher.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        with ThreadPoolExecutor(1) as pool:
            purge = pool.submit(purger.retention_purge, zhao)
            assert removing.wait(WAIT_S), "the purge never began removing"
            with pytest.raises(ArchiveError, match="left the dock store under retention"):
                attacher.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
            result = purge.result(WAIT_S)
        assert [r["file"] for r in result["removed"]] == world.acts[0]
        assert attacher.show_case(wang, number)["entries"] == []
    finally:
        purger.close()
        attacher.close()


def test_a_purge_racing_an_attachment_keeps_what_was_attached(
    world: Aged,
    db_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The purge listed the recording due; the attachment commits before its removal: the
    purge judges it again under its lock, keeps it (refused, audited) and removes the rest."""
    clock = SimClock(START + 200 * DAY)
    purger, attacher = two_archives(world, db_url, clock)
    first, second = world.acts[0]
    decided, attached = threading.Event(), threading.Event()
    dock_store = Archive._dock_store

    def deciding(self, *args, **kw):  # the due list is made; the removals come next
        decided.set()
        assert attached.wait(WAIT_S), "the attachment never committed"
        return dock_store(self, *args, **kw)

    monkeypatch.setattr(Archive, "_dock_store", deciding)
    try:
        zhao, wang = purger.login("zhao", PW), attacher.login("wang", PW)
        number = attacher.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        with ThreadPoolExecutor(1) as pool:
            purge = pool.submit(purger.retention_purge, zhao)
            assert decided.wait(WAIT_S), "the purge never decided"
            attacher.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
            attached.set()
            result = purge.result(WAIT_S)
        assert [r["file"] for r in result["removed"]] == [second]
        (kept,) = result["refused"]
        assert kept["file"] == first and f"in case {number}" in kept["reason"]
        assert (world.store / "unit-1" / "cam-001" / first).is_file()
        assert problems(world) == []
    finally:
        purger.close()
        attacher.close()


# -- 4. a purge killed between the dock's removal and the archive's record ---------------

KILLED_PURGE = r"""
import os, sys
from archive.service import Archive
from dock.journal import DockJournal
from dock.store import Store
from simulator.clock import SimClock

remove_media, append = Store.remove_media, DockJournal.append

def removed_then_killed(self, *args, **kw):
    remove_media(self, *args, **kw)  # the dock journaled the removal and removed the file
    os._exit(9)  # the archive dies before its transaction commits

def journaled_then_killed(self, kind, body):
    made = append(self, kind, body)
    if kind == "removed":
        os._exit(9)  # the record is durable, the file is still there
    return made

if sys.argv[4] == "removed":
    Store.remove_media = removed_then_killed
else:
    DockJournal.append = journaled_then_killed
arch = Archive.open(sys.argv[1], clock=SimClock(int(sys.argv[2])))
arch.retention_purge(arch.login("zhao", sys.argv[3]))
"""


@pytest.mark.parametrize("killed_when", ["removed", "journaled"])
def test_a_purge_killed_after_the_docks_removal_is_reconciled(
    world: Aged,
    db_url: str,  # noqa: F811
    killed_when: str,
) -> None:
    """The dock journal has the removal, the archive's database does not: the next sync
    records it (audited, naming the killed purge's decision), and the next purge removes
    the rest without retrying it, and the file if the kill came before its unlink; the
    store verifies."""
    import sqlalchemy as sa

    from archive.schema import removals

    now = START + 200 * DAY
    clock = SimClock(now)
    archive_over(world, db_url, clock).close()
    first, second = world.acts[0]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PURGE, str(world.tmp / "archive"), str(now), PW]
        + [killed_when],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 9, killed.stderr
    (removed,) = records_of_kind(dock_journal(world.store), "removed")
    assert removed.body["file"] == first
    left = (world.store / "unit-1" / "cam-001" / first).exists()
    assert left == (killed_when == "journaled")
    assert problems(world) == ([f"removal_unfinished unit-1/cam-001/{first}"] if left else [])
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        with arch.engine.connect() as conn:
            assert conn.execute(sa.select(removals)).all() == []  # the crash gap
        arch.sync_recordings()
        with arch.engine.connect() as conn:
            (row,) = conn.execute(sa.select(removals)).mappings().all()
        decision = removed.body["retention"]["audit_seq"]
        assert row["file"] == first and row["dock_seq"] == removed.seq
        assert row["audit_seq"] == decision and row["by_user"] == "zhao"
        entries = {r.seq: r for r in arch.audit.records()}
        assert entries[decision].body["detail"]["event"] == "purge"  # the killed decision
        (noted,) = [
            r for r in entries.values() if r.kind == "retention"
            and r.body["detail"]["event"] == "reconciled"
        ]  # fmt: skip
        assert noted.body["detail"]["decision_audit_seq"] == decision
        assert noted.body["detail"]["kept_by"] == []
        assert [r["file"] for r in arch.retention_due(arch.login("wang", PW))] == [second]
        result = arch.retention_purge(arch.login("zhao", PW))
        assert [r["file"] for r in result["removed"]] == [second]
        assert result["refused"] == [] and result["reconciled"] == []
    finally:
        arch.close()
    assert not (world.store / "unit-1" / "cam-001" / first).exists()
    assert problems(world) == []


def test_a_removal_made_past_the_archive_is_recorded_and_said_loudly(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    """A dock removal the archive never decided (journaled with the dock's key before the
    archive's claim, say) of a recording a case holds: the next purge records it, names the
    case that claimed it, and exits 1; the audit entry says so."""
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock)
    first = world.acts[0][0]
    try:
        wang = arch.login("wang", PW)
        number = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, number, "cam-001", world.starts[0][0], world.ends[0][0])
    finally:
        arch.close()
    identity = DeviceIdentity.load(world.tmp / "dock-key" / "dock.key")
    journal = DockJournal(world.store, identity, clock)
    (stored,) = [r for r in records_of_kind(journal.path, "stored") if r.body["file"] == first]
    sha = stored.body["sha256"]
    made = journal.append(
        "removed", removed_body("cam-001", "unit-1", first, sha, "retention", "by hand")
    )
    journal.close()
    (world.store / "unit-1" / "cam-001" / first).unlink()
    cli = run_archive(world, "zhao", "retention", "purge")
    assert cli.returncode == 1, cli.stderr
    (line,) = [ln for ln in cli.stdout.splitlines() if ln.startswith("recorded ")]
    assert f"cam-001 seq {stored.body['seq']} {first}: the dock removed it" in line
    assert f"dock dock-sim seq {made.seq}" in line and f"case {number} keeps it!" in line
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        (noted,) = [
            r for r in arch.audit.records()
            if r.kind == "retention" and r.body["detail"]["event"] == "reconciled"
        ]  # fmt: skip
        assert noted.body["detail"]["kept_by"] == [f"case {number}"]
        assert noted.body["detail"]["decision_audit_seq"] is None  # no decision of ours
        assert arch.reconcile_removals() == []  # recorded once
    finally:
        arch.close()
