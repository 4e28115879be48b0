"""The journal on a disk that fills or fails (issue 13: "a disk that fills when the journal
has less than a record of room leaves the camera unable to record").

What must hold: a failed append (short write, ENOSPC, EIO, a failed fsync) is rolled back
to the last good record before anything else is appended, the head is unchanged and the
next append chains; ``journal.reserve`` lets the records that report a full disk, and the
boot after it, reach the journal; verify and the dock never see the reserve. Each runs on
an injected file layer (:mod:`tests.faultfs`, always) and on a real small tmpfs (where
``mount -t tmpfs`` works).
"""

from __future__ import annotations

import errno
import os

import pytest
from dockkit import START, dock_once, make_camera, make_dock, store_trust
from faultfs import FaultyDisk
from faultfs import tmpfs as mounted_tmpfs

from evidence.exc import JournalError, JournalFullError, JournalWriteError
from evidence.journal import (
    RECORD_ROOM,
    RESERVE_NAME,
    RESERVE_RECORDS,
    Journal,
    scan_journal,
)
from evidence.layout import DeviceStorage, stored_name_error
from evidence.verify import verify_path
from simulator.clock import SimClock

NS = 1_000_000_000
SEGMENT = {
    "file": "media/20261118/cam-test-20261118T045758Z-000123.ts",
    "size": 12_345_678,
    "sha256": "ab" * 32,
    "start_utc": "2026-11-18T04:57:58.123456Z",
    "end_utc": "2026-11-18T04:58:58.123456Z",
    "frames": 1500,
    "audio_frames": 2813,
    "recovered": True,
}
# The records a full disk makes the camera write, with the longest bodies they carry.
STOPPAGE_RECORDS = [
    ("segment", SEGMENT),
    ("stoppage", {"reason": "storage_full", "detail": "journal: " + "x" * 200}),
    ("recording_stopped", {"by": "storage_full"}),
    ("boot", {"firmware": "0.9.0-dev", "boot_id": "f" * 32, "reason": "recovered"}),
    ("resumed", {"reason": "storage_full"}),
    (
        "torn_tail",
        {"offset": 10**9, "size": 65536, "sha256": "c" * 64, "file": f"journal.torn-{10**9}"},
    ),
]


@pytest.fixture
def device(tmp_path, identity):
    root = tmp_path / "sd"
    DeviceStorage(root).write_identity(identity)
    return root


def boot(journal: Journal, n: int = 0) -> None:
    journal.append("boot", {"firmware": "test", "boot_id": f"{n:032x}", "reason": "start"})


def intact(root, registry_file) -> str:
    report = verify_path(root, registry_path=registry_file)
    return "" if report.intact else "; ".join(str(p) for p in report.problems)


def chained(path) -> list[int]:
    """Seqs of the journal's lines; asserts each line parses and names the one before."""
    from evidence.record import Record

    scan = scan_journal(path)
    assert scan.torn is None, f"torn tail {scan.torn!r:.80}"
    records = [Record.from_bytes(line) for _, line in scan.lines]
    for a, b in zip(records, records[1:], strict=False):
        assert b.prev == a.hash and b.seq == a.seq + 1
    return [r.seq for r in records]


# -- rollback ---------------------------------------------------------------------------


def test_a_short_write_on_a_full_disk_is_rolled_back_and_the_next_append_chains(
    device, identity, registry_file
):
    path = device / "journal.jsonl"
    journal = Journal(path, identity, reserve_bytes=0)
    boot(journal)
    before, head = path.read_bytes(), journal.head
    with FaultyDisk(device, free=319) as disk:  # less than a record of room
        with pytest.raises(JournalFullError) as caught:
            journal.append("segment", SEGMENT)
        assert path.read_bytes() == before and journal.head == head
        assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
        assert "short write (319 of" in str(caught.value)
        assert str(caught.value).endswith(f"rolled back to byte {len(before)}")
        assert disk.free == 319  # the rollback gave the room back
        disk.free = None  # space returns
        journal.append("stoppage", {"reason": "storage_full", "detail": "journal full"})
    journal.close()
    assert chained(path) == [0, 1]
    assert intact(device, registry_file) == ""


@pytest.mark.parametrize(
    ("call", "err"), [("write", errno.EIO), ("fsync", errno.EIO), ("write", errno.EDQUOT)]
)
def test_a_failed_write_or_fsync_is_rolled_back(device, identity, registry_file, call, err):
    path = device / "journal.jsonl"
    journal = Journal(path, identity, reserve_bytes=0)
    boot(journal)
    before, head = path.read_bytes(), journal.head
    with FaultyDisk(device) as disk:
        disk.fail("journal.jsonl", call, err)
        expected = JournalFullError if err == errno.EDQUOT else JournalWriteError
        with pytest.raises(expected) as caught:
            journal.append("marker", {"n": 1})
        assert type(caught.value) is expected and caught.value.errno == err
        assert path.read_bytes() == before and journal.head == head
        journal.append("marker", {"n": 2})
    journal.close()
    assert chained(path) == [0, 1]
    assert intact(device, registry_file) == ""


def test_a_rollback_that_fails_is_done_before_the_next_append(device, identity, registry_file):
    path = device / "journal.jsonl"
    journal = Journal(path, identity, reserve_bytes=0)
    boot(journal)
    before = path.read_bytes()
    with FaultyDisk(device) as disk:
        disk.fail("journal.jsonl", "fsync", errno.EIO)  # the append's fsync
        disk.fail("journal.jsonl", "ftruncate", errno.EIO)  # and its rollback
        with pytest.raises(JournalWriteError):
            journal.append("marker", {"n": 1})
        assert len(path.read_bytes()) > len(before)  # the record is still there
        journal.append("marker", {"n": 2})  # cut back first, then appended
    journal.close()
    assert chained(path) == [0, 1]
    assert b'"n":1' not in path.read_bytes()
    assert intact(device, registry_file) == ""


def test_a_journal_another_writer_appended_to_is_not_cut(device, identity):
    path = device / "journal.jsonl"
    journal = Journal(path, identity, reserve_bytes=0)
    boot(journal)
    with open(path, "ab") as f:
        f.write(b"someone else\n")
    with pytest.raises(JournalError, match="appended by someone else"):
        journal.append("marker", {})
    assert path.read_bytes().endswith(b"someone else\n")
    journal.close()


# -- the reserve ------------------------------------------------------------------------


def test_the_reserve_holds_room_for_the_stoppage_records_measured(device, identity):
    journal = Journal(device / "journal.jsonl", identity)
    sizes = {
        kind: len(journal.append(kind, body).to_bytes()) + 1 for kind, body in STOPPAGE_RECORDS
    }
    journal.close()
    held = os.path.getsize(device / RESERVE_NAME)
    print(f"record sizes: {sizes}; reserve: {held} bytes, {held // max(sizes.values())} records")
    assert max(sizes.values()) <= RECORD_ROOM
    assert held == journal.reserve.size >= RESERVE_RECORDS * max(sizes.values())
    assert os.stat(device / RESERVE_NAME).st_blocks * 512 >= held  # allocated, not sparse


def test_a_full_disk_spends_the_reserve_then_refuses_and_it_is_remade_when_space_returns(
    device, identity, registry_file
):
    path = device / "journal.jsonl"
    journal = Journal(path, identity)
    boot(journal)
    assert not journal.reserve_spent
    written = 0
    with FaultyDisk(device, free=0) as disk:
        while True:
            try:
                journal.append("stoppage", {"reason": "storage_full", "detail": "storage full"})
            except JournalFullError:
                break
            written += 1
            assert journal.reserve_spent
        assert not (device / RESERVE_NAME).exists() or os.path.getsize(device / RESERVE_NAME) == 0
        print(f"records written on a full disk from the reserve: {written}")
        assert written >= RESERVE_RECORDS
        assert chained(path)[-1] == written
        assert journal.replenish_reserve() is False  # still full
        disk.free = 1 << 20  # the dock wiped media: space returns
        journal.append("resumed", {"reason": "storage_full"})
        assert not journal.reserve_spent
        assert (
            disk.free == (1 << 20) - journal.reserve.size - len(scan_journal(path).lines[-1][1]) - 1
        )
    journal.close()
    assert intact(device, registry_file) == ""


def test_each_spell_of_a_full_disk_counts_once_in_reserve_spends(device, identity):
    """The recorder alerts ``reserve_spent`` for each whole-to-spent change the journal
    counts at its give-back, so a spell over before the next health poll is not missed;
    an opening that cannot make the reserve whole counts one at once."""
    path = device / "journal.jsonl"
    journal = Journal(path, identity)
    boot(journal)
    assert journal.reserve_spends == 0
    with FaultyDisk(device, free=0) as disk:
        for _ in range(3):  # one spell: the first give-back counts, the next do not
            journal.append("stoppage", {"reason": "storage_full", "detail": "storage full"})
        assert journal.reserve_spends == 1 and journal.reserve_spent
        disk.free = 1 << 20
        journal.append("resumed", {"reason": "storage_full"})  # whole again
        assert journal.reserve_spends == 1 and not journal.reserve_spent
        disk.free = 0
        journal.append("stoppage", {"reason": "storage_full", "detail": "storage full"})
        assert journal.reserve_spends == 2  # a second spell
        journal.close()
        (device / RESERVE_NAME).unlink()  # the card full at the next boot: none can be made
        journal = Journal(path, identity)
        assert journal.reserve_spent and journal.reserve_spends == 1
        journal.close()


def test_the_reserve_covers_the_stoppage_and_the_boot_that_follows(device, identity, registry_file):
    path = device / "journal.jsonl"
    clock = SimClock(START)
    journal = Journal(path, identity, clock=clock)
    boot(journal)
    with FaultyDisk(device, free=0):
        for kind, body in STOPPAGE_RECORDS[1:3]:  # stoppage, recording_stopped
            journal.append(kind, body)
        journal.close()
        # the camera is switched off and on again, the card still full
        rebooted = SimClock(START + 3600 * NS, start_monotonic_ns=5 * NS)
        journal = Journal(path, identity, clock=rebooted, repair_torn=True)
        boot(journal, 1)
        journal.append("stoppage", {"reason": "storage_full", "detail": "storage full"})
        journal.close()
    assert [r.kind for r in Journal(path, identity, reserve_bytes=0).records()][-2:] == [
        "boot",
        "stoppage",
    ]
    assert intact(device, registry_file) == ""


def test_verify_and_the_dock_ignore_the_reserve(tmp_path):
    camera, registry_path = make_camera(tmp_path)
    camera.record(1, 20_000)
    assert (camera.root / RESERVE_NAME).is_file()
    assert verify_path(camera.root, registry_path=registry_path).intact
    assert stored_name_error(RESERVE_NAME) is not None  # a camera cannot make a dock store it
    dock_identity, store = make_dock(tmp_path, registry_path)
    result, _ = dock_once(store, dock_identity, camera)
    assert result.outcome == "stored", result.reason
    store.close()
    camera.close()
    stored = [p for p in (tmp_path / "dock").rglob(RESERVE_NAME)]
    assert stored == []
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact


# -- a repair, then a reboot (issue 13: "time_backwards") --------------------------------


def test_a_repair_then_a_reboot_verifies_on_the_camera_and_in_the_dock_store(tmp_path):
    camera, registry_path = make_camera(tmp_path)
    camera.record(1, 20_000)
    camera.close()
    path = camera.storage.journal_path
    with open(path, "ab") as f:  # a power cut mid-append
        f.write(b'{"body":{"reason":"button"},"dev')
    for n, (later_s, mono_s) in enumerate([(600, 3), (1200, 2)]):  # two reboots
        clock = SimClock(START + later_s * NS, start_monotonic_ns=mono_s * NS)
        camera.clock = clock
        camera.journal = Journal(path, camera.identity, clock=clock, repair_torn=True)
        camera.journal.append("boot", {"firmware": "test", "boot_id": f"{n:032x}", "reason": "x"})
        camera.journal.append("marker", {"n": n})
        camera.journal.close()
    kinds = [r.kind for r in Journal(path, camera.identity, reserve_bytes=0).records()]
    assert kinds.count("torn_tail") == 1
    report = verify_path(camera.root, registry_path=registry_path)
    assert report.intact, [str(p) for p in report.problems]
    camera.journal = Journal(path, camera.identity, clock=camera.clock)
    dock_identity, store = make_dock(tmp_path, registry_path)
    result, _ = dock_once(store, dock_identity, camera)
    assert result.outcome == "stored", result.reason
    store.close()
    camera.close()
    report = verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path))
    assert report.intact, [str(p) for p in report.problems]


# -- a real small file system -----------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """``tmp_path/sd`` on a 1 MiB tmpfs (skipped where ``mount -t tmpfs`` is refused)."""
    with mounted_tmpfs(tmp_path / "sd", 1) as root:
        yield root


def fill(path) -> None:
    """Fill the file system of ``path`` with one file until it refuses a single byte."""
    size = 1 << 20
    with open(path, "wb", buffering=0) as f:
        while size:
            try:
                f.write(bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2


@pytest.mark.faults
@pytest.mark.parametrize("reserve", [True, False], ids=["reserve", "no-reserve"])
def test_a_real_full_tmpfs(tmpfs, identity, registry_file, reserve):
    DeviceStorage(tmpfs).write_identity(identity)
    path = tmpfs / "journal.jsonl"
    journal = Journal(path, identity, **({} if reserve else {"reserve_bytes": 0}))
    boot(journal)
    fill(tmpfs / "filler.ts")
    written = 0
    while True:
        try:
            journal.append("stoppage", {"reason": "storage_full", "detail": "x" * 100})
        except JournalFullError:
            break
        written += 1
    print(f"tmpfs, reserve={reserve}: {written} records after the disk filled")
    assert written >= (RESERVE_RECORDS if reserve else 0)
    seqs = chained(path)  # whatever was refused left nothing behind
    assert seqs[-1] == written
    (tmpfs / "filler.ts").unlink()
    journal.append("resumed", {"reason": "storage_full"})
    assert not journal.reserve_spent
    journal.close()
    assert chained(path)[-1] == written + 1
    assert intact(tmpfs, registry_file) == ""
