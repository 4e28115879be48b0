"""``bodycam-dock remove`` and the store's removals under ``bodycam-verify``: a file
younger than six months, or in a store an archive keeps, is refused (exit 2, one line,
nothing journaled, the file still there); a lawful removal is journaled with its
authority and listed by verify; a removal journaled too early (forged with the dock's key)
fails verify, and a removed file is never reported missing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dockkit import dock_cmd, store_trust
from retentionkit import DAY, Aged, build_aged, dock_journal

from dock.journal import DockJournal
from evidence.dockjournal import removed_body
from evidence.identity import DeviceIdentity
from evidence.journal import records_of_kind
from evidence.storage import fsync_dir
from evidence.verify import verify_path


@pytest.fixture
def world(tmp_path: Path) -> Aged:
    """The first act ended 200 days ago (by the real clock the command reads); the
    second 170 days ago, the third 140."""
    return build_aged(tmp_path, time.time_ns() - 200 * DAY)


def remove(world: Aged, file: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        dock_cmd(world.tmp, "remove", "cam-001", file, "--reason", "six months", *extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def codes(world: Aged) -> list[str]:
    return [p.code for p in verify_path(world.store, unit_keys=store_trust(world.tmp)).problems]


def test_a_file_younger_than_six_months_is_refused_and_nothing_journaled(world: Aged) -> None:
    young = world.acts[1][0]
    before = dock_journal(world.store).read_bytes()
    done = remove(world, young)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("bodycam-dock: error: cam-001 " + young + ": not removed: it ended ")
    assert "kept at least 183 days, until " in line
    assert dock_journal(world.store).read_bytes() == before  # not even a boot record
    assert (world.store / "unit-1" / "cam-001" / young).is_file()
    unknown = remove(world, "media/20260101/nosuch.ts")
    assert unknown.returncode == 2 and "not a file this dock stored" in unknown.stderr
    assert dock_journal(world.store).read_bytes() == before


def test_a_lawful_removal_is_journaled_and_listed_by_verify(world: Aged) -> None:
    old = world.acts[0][0]
    done = remove(world, old)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"removed cam-001 {old} under retention (dock journal seq ")
    (made,) = records_of_kind(dock_journal(world.store), "removed")
    assert made.body["file"] == old and made.body["authority"] == "retention"
    assert made.body["reason"] == "six months" and "retention" not in made.body
    assert not (world.store / "unit-1" / "cam-001" / old).exists()
    report = verify_path(world.store, unit_keys=store_trust(world.tmp))
    assert report.problems == [], [str(p) for p in report.problems]
    notes = [n for d in report.devices for n in d.notes if old in n]
    assert len(notes) == 1 and "under retention: six months" in notes[0]
    again = remove(world, old)
    assert again.returncode == 2 and "not a file this dock stored" in again.stderr


def test_a_store_an_archive_keeps_refuses_the_docks_remove(world: Aged, tmp_path: Path) -> None:
    from archive.service import Archive

    Archive.create(tmp_path / "archive", world.store, "archive-7", "admin", "x" * 12).close()
    before = dock_journal(world.store).read_bytes()
    old = world.acts[0][0]
    done = remove(world, old)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "refused: archive archive-7 keeps this store" in line
    assert "bodycam-archive retention purge" in line
    assert dock_journal(world.store).read_bytes() == before
    assert (world.store / "unit-1" / "cam-001" / old).is_file()


def test_a_removal_journaled_too_early_fails_verify(world: Aged) -> None:
    """The dock's key can sign anything: verify judges the record's own time against the
    recording's signed end, whatever the record says its authority was."""
    young = world.acts[2][0]
    identity = DeviceIdentity.load(world.tmp / "dock-key" / "dock.key")
    journal = DockJournal(world.store, identity)
    sha = next(
        r.body["sha256"]
        for r in records_of_kind(dock_journal(world.store), "stored")
        if r.body["file"] == young
    )
    journal.append("removed", removed_body("cam-001", "unit-1", young, sha, "retention", "forged"))
    journal.close()
    path = world.store / "unit-1" / "cam-001" / young
    path.unlink()
    fsync_dir(path.parent)
    report = verify_path(world.store, unit_keys=store_trust(world.tmp))
    found = list(report.problems)
    assert [p.code for p in found] == ["removed_early"], [str(p) for p in found]
    assert "before its 183-day retention ran out" in found[0].message
    assert "media_missing" not in codes(world)  # removed is not missing
    cli = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(world.store), "--trust",
         str(world.tmp / "trust.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1 and "removed_early" in cli.stdout


def test_a_file_deleted_without_a_removal_record_is_missing(world: Aged) -> None:
    """... until a lawful removal is journaled for it: then the record says why."""
    path = world.store / "unit-1" / "cam-001" / world.acts[0][0]
    path.unlink()
    assert codes(world) == ["media_missing"]
    done = remove(world, world.acts[0][0])
    assert done.returncode == 0, done.stderr
    assert codes(world) == []


def test_the_dock_journal_says_an_archive_keeps_the_store_when_the_marker_is_gone(
    world: Aged,
) -> None:
    """An archive with the dock's config journals a signed ``archive_keeps`` record (once);
    with ``.status/archive.json`` deleted, ``bodycam-dock remove`` still refuses, naming
    it, and journals nothing; the store verifies with the record in it."""
    from retentionkit import archive_over

    from archive.service import Archive
    from simulator.clock import SimClock

    clock = SimClock(time.time_ns())
    archive_over(world, "", clock).close()
    Archive.open(world.tmp / "archive", clock=clock).close()  # a second opening: no record
    (keeps,) = records_of_kind(dock_journal(world.store), "archive_keeps")
    assert keeps.body["archive"] == "archive-1" and keeps.device == "dock-sim"
    mark = world.store / ".status" / "archive.json"
    assert json.loads(mark.read_text())["dock_seq"] == keeps.seq
    mark.unlink()
    before = dock_journal(world.store).read_bytes()
    old = world.acts[0][0]
    done = remove(world, old)
    assert done.returncode == 2, done.stdout
    (line,) = done.stderr.splitlines()
    assert (
        f"refused: archive archive-1 keeps this store (dock journal dock-sim seq {keeps.seq})"
        in line
    )
    assert dock_journal(world.store).read_bytes() == before
    assert (world.store / "unit-1" / "cam-001" / old).is_file()
    assert codes(world) == []
    Archive.open(world.tmp / "archive", clock=clock).close()  # the marker, as a cache again
    assert json.loads(mark.read_text())["dock_seq"] == keeps.seq
    assert len(records_of_kind(dock_journal(world.store), "archive_keeps")) == 1


def test_a_purge_journals_that_its_archive_keeps_the_store(world: Aged) -> None:
    """An archive without dock_config writes only the marker; the first purge given the
    dock's config (its key at hand) journals ``archive_keeps``, once."""
    from corekit import PW
    from retentionkit import archive_over

    from simulator.clock import SimClock

    arch = archive_over(world, "", SimClock(time.time_ns()), dock_config=False)
    mark = world.store / ".status" / "archive.json"
    forged = {"archive_id": "archive-1", "dock": "dock-sim", "dock_seq": 1}
    mark.write_text(json.dumps(forged))  # says it is journaled; the archive never reads it
    try:
        assert records_of_kind(dock_journal(world.store), "archive_keeps") == []
        zhao = arch.login("zhao", PW)
        for _ in range(2):
            arch.retention_purge(zhao, dock_config=str(world.tmp / "dock.toml"))
    finally:
        arch.close()
    (keeps,) = records_of_kind(dock_journal(world.store), "archive_keeps")
    assert json.loads(mark.read_text())["dock_seq"] == keeps.seq
    mark.unlink()
    done = remove(world, world.acts[0][0])
    assert done.returncode == 2 and "keeps this store (dock journal" in done.stderr
