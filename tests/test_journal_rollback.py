"""A journal append that does not fit is rolled back: the journal ends at its last good
record, raises JournalFullError, and the next append (once there is room) chains on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from faultfs import tmpfs

from evidence import journal as journal_module
from evidence.exc import JournalError, JournalFullError
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.registry import DeviceEntry, Registry
from evidence.verify import verify_path


def verified(folder: Path, identity: DeviceIdentity) -> bool:
    """bodycam-verify's verdict on ``folder``, with the camera registered (outside it)."""
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, identity.public_key_hex))
    path = folder.parent / f"{folder.name}-registry.json"
    registry.save(path)
    report = verify_path(folder, registry_path=path)
    assert not report.problems, report.problems
    return report.intact


class FailingWrites:
    """``os.write`` for the journal's fd that writes only ``keep`` bytes, then fails with
    ``error`` (or returns short when ``error`` is None), ``times`` times."""

    def __init__(self, keep: int, error: int | None, times: int = 1) -> None:
        self.keep, self.error, self.times = keep, error, times
        self.real = os.write

    def __call__(self, fd: int, data: bytes) -> int:
        if self.times <= 0:
            return self.real(fd, data)
        self.times -= 1
        written = self.real(fd, bytes(data[: self.keep])) if self.keep else 0
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        return written


@pytest.mark.parametrize(
    ("keep", "error", "raised"),
    [
        (319, None, JournalFullError),  # the audit's short write
        (40, errno.ENOSPC, JournalFullError),
        (0, errno.EDQUOT, JournalFullError),
        (100, errno.EIO, JournalError),
    ],
)
def test_a_failed_append_is_rolled_back_and_the_journal_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: int, error: int | None, raised: type
) -> None:
    identity = DeviceIdentity.generate("cam-0001")
    path = tmp_path / "journal.jsonl"
    with Journal(path, identity, reserve_bytes=0) as journal:  # the reserve: its own tests
        journal.append("boot", {"reason": "start"})
        good = path.stat().st_size
        monkeypatch.setattr(journal_module.os, "write", FailingWrites(keep, error))
        with pytest.raises(raised, match="rolled back to byte"):
            journal.append("stoppage", {"reason": "storage_full", "detail": "x" * 400})
        assert path.stat().st_size == good
        assert journal.next_seq == 1
        journal.append("resumed", {"reason": "storage_full"})
    with Journal(path, identity) as reopened:  # the next boot opens it without repair
        assert [r.kind for r in reopened.records()] == ["boot", "resumed"]
    assert verified(tmp_path, identity)


def test_a_real_full_disk_rolls_back(tmp_path: Path) -> None:
    """On a real 1 MiB tmpfs, filled to the byte: ENOSPC or a short write, then room."""
    with tmpfs(tmp_path / "card", 1) as mount:
        identity = DeviceIdentity.generate("cam-0001")
        path = mount / "journal.jsonl"
        with Journal(path, identity) as journal:
            journal.append("boot", {"reason": "start"})
            filler = mount / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, b"\0" * 4096) == 4096:
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            finally:
                os.close(fd)
            good = path.stat().st_size
            with pytest.raises(JournalFullError):
                for _ in range(200):  # the last page of the journal fills first
                    journal.append("marker", {"note": "x" * 600})
                    good = path.stat().st_size
            assert path.stat().st_size == good
            filler.unlink()
            journal.append("resumed", {"reason": "storage_full"})
        assert verified(mount, identity)


class RebootingClock:
    """UTC runs on; the monotonic clock starts again near zero at each "boot"."""

    def __init__(self) -> None:
        self.utc = 1_780_000_000 * 10**9
        self.mono = 10**9

    def time_ns(self) -> int:
        self.utc += 10**6
        return self.utc

    def monotonic_ns(self) -> int:
        self.mono += 10**6
        return self.mono

    def reboot(self) -> None:
        self.mono = 10**9


def test_an_honest_repair_then_a_reboot_verifies(tmp_path: Path) -> None:
    """Issue 13: a repaired torn tail, then a reboot, must not read as time going back."""
    identity = DeviceIdentity.generate("cam-0001")
    clock = RebootingClock()
    path = tmp_path / "journal.jsonl"
    with Journal(path, identity, clock=clock) as journal:
        journal.append("boot", {"reason": "start"})
        for n in range(3):
            journal.append("marker", {"note": f"m{n}"})
    with open(path, "ab") as f:  # a power cut mid-append
        f.write(b'{"seq": 4, "kind": "mar')
    clock.reboot()
    with Journal(path, identity, clock=clock, repair_torn=True) as journal:
        journal.append("boot", {"reason": "recovered"})
        journal.append("marker", {"note": "after"})
    clock.reboot()
    with Journal(path, identity, clock=clock, repair_torn=True) as journal:
        journal.append("boot", {"reason": "start"})
    assert verified(tmp_path, identity)
