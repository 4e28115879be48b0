"""The dock's own journal at start: a torn tail a dead dock process left, or a repair of
one that a crash cut short, is finished with the camera journal's repair, and the start's
``boot`` record says ``recovered``. A running process repairs another's torn tail too."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockkit import make_dock

from dock.journal import DockJournal
from evidence.dockjournal import flag_body
from evidence.journal import scan_journal
from evidence.record import Record
from simulator.clock import SimClock

TORN = b'{"body":{"detail":"x","device":"cam-001","kind":"bad_record"},"device":"dock-sim","ki'


def records(path: Path) -> list[Record]:
    return [Record.from_bytes(line) for _, line in scan_journal(path).lines]


@pytest.fixture
def dock(tmp_path: Path):
    identity, store = make_dock(tmp_path, None)
    store.close()
    return tmp_path / "dock", identity


def leave(root: Path, identity, left: str) -> Path:
    """The dock journal as a crash of a dock process leaves it."""
    journal = DockJournal(root, identity, SimClock())
    journal.append("flag", flag_body("cam-001", "bad_record", "before the crash"))
    journal.close()
    end = journal.path.stat().st_size
    if left == "a torn tail":
        with open(journal.path, "ab") as f:
            f.write(TORN)
    elif left == "a repair cut short":  # the side file written, the tail already cut off
        (journal.path.parent / f"journal.torn-{end}").write_bytes(TORN)
    return journal.path


@pytest.mark.parametrize("left", ["nothing", "a torn tail", "a repair cut short"])
def test_a_dock_start_that_repairs_its_journal_boots_as_recovered(dock, left) -> None:
    root, identity = dock
    path = leave(root, identity, left)
    journal = DockJournal(root, identity, SimClock())
    journal.close()
    kinds = [r.kind for r in records(path)]
    boot = records(path)[-1]
    assert boot.kind == "boot", kinds
    if left == "nothing":
        assert boot.body["reason"] == "start" and "torn_tail" not in kinds
        assert journal.repairs == []
    else:
        assert boot.body["reason"] == "recovered", left
        assert kinds[-2:] == ["torn_tail", "boot"], kinds
        torn = records(path)[-2]
        assert (path.parent / torn.body["file"]).read_bytes() == TORN
        assert [r.finished for r in journal.repairs] == [left == "a repair cut short"]


def test_a_running_dock_process_repairs_a_torn_tail_another_left(dock) -> None:
    """Bays append to one journal: one that died mid-append leaves a torn tail, which the
    next append of any other process repairs first (no boot record: nothing started)."""
    root, identity = dock
    running = DockJournal(root, identity, SimClock())
    with open(running.path, "ab") as f:  # another process died mid-append
        f.write(TORN)
    running.append("flag", flag_body("cam-001", "bad_record", "after the crash"))
    running.close()
    tail = records(running.path)[-3:]
    assert [r.kind for r in tail] == ["boot", "torn_tail", "flag"], tail
    assert tail[1].body["size"] == len(TORN)
    assert (running.path.parent / tail[1].body["file"]).read_bytes() == TORN
    assert [r.finished for r in running.repairs] == [False]


def test_a_dock_clock_behind_its_journal_is_journaled_and_verifies(tmp_path) -> None:
    """A dock process whose clock reads earlier than its journal's last record (a clock
    set back, or a store written by a simulation faster than real time) journals the step
    back before anything else, so the journal still verifies and the step is on record."""
    from dock.journal import DockJournal
    from evidence.clock import format_utc
    from evidence.identity import DeviceIdentity
    from evidence.journal import readable_records
    from evidence.verify_folder import EPOCH_KINDS

    identity = DeviceIdentity.generate("dock-1")

    class Clock:
        def __init__(self, utc: int, mono: int) -> None:
            self.utc, self.mono = utc, mono

        def time_ns(self) -> int:
            self.utc += 1_000_000
            return self.utc

        def monotonic_ns(self) -> int:
            self.mono += 1_000_000
            return self.mono

    ahead = DockJournal(tmp_path, identity, Clock(2_000_000_000 * 10**9, 10**15))
    ahead.append("flag", {"device": "cam-1", "kind": "x", "detail": "y"})
    head_utc = readable_records(ahead.path)[-1].utc
    ahead.close()
    behind = DockJournal(tmp_path, identity, Clock(1_900_000_000 * 10**9, 10**9))
    behind.append("flag", {"device": "cam-1", "kind": "x", "detail": "z"})
    behind.close()
    records = readable_records(behind.path)
    stepped = [r for r in records if r.kind == "clock_set"]
    assert len(stepped) == 1 and stepped[0].body["old_utc"] == head_utc
    assert stepped[0].body["new_utc"] < head_utc and stepped[0].body["by"] == "system_clock"
    assert records[records.index(stepped[0]) + 1].kind == "boot"  # then the new process
    assert format_utc(1_900_000_000 * 10**9) < stepped[0].utc
    for a, b in zip(records, records[1:], strict=False):  # the verifier's time rules
        assert b.utc >= a.utc or "clock_set" in (a.kind, b.kind), (a, b)
        assert b.mono_ns >= a.mono_ns or b.kind in EPOCH_KINDS, (a, b)
