"""The dock's store disk fills up (issue 13, "The dock: Full store disk").

The store is a real tmpfs of a fixed size, mounted for the test (skipped with the reason
where the machine does not allow ``mount -t tmpfs``), served by the real
``bodycam-dock bay``. What must hold: the session ends with a REFUSE saying the store is
full, a flag records it (when there is room left to record anything, which the dock's
reserve keeps), the camera keeps its data, an outcome is always logged (no
``sqlite3.OperationalError`` from a ``finally`` hiding it), and the same bay stores the
camera once space returns.
"""

from __future__ import annotations

import errno
import os

import pytest
from faultfs import resize_tmpfs, tmpfs
from hostile import BayRun

from evidence.verify import verify_path
from wire.cable import Refused

pytestmark = pytest.mark.faults
MiB = 1 << 20


@pytest.fixture
def small_store(tmp_path):
    """``tmp_path/dock`` on a 100 MiB tmpfs (the dock store of BayRun)."""
    with tmpfs(tmp_path / "dock", 100):
        yield tmp_path


def fill(path) -> None:
    """Fill the disk of ``path`` with one file until it refuses a single byte more."""
    size = MiB
    with open(path, "wb", buffering=0) as f:
        while size:
            try:
                f.write(bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2


def dock_camera(run: BayRun):
    before = run.snapshot()
    out = run.camera.link(run.dock_identity, timeout=15).run_session(run.cable.camera)
    return out, run.ended(before), before


def test_a_store_that_fills_mid_docking_refuses_and_the_bay_stores_once_space_returns(
    small_store,
):
    run = BayRun(small_store)
    try:
        files = run.camera.record(3, 20 * MiB, seed=7)
        out, row, before = dock_camera(run)
        # The first file fits above the reserve; the second does not.
        assert out.outcome == "refused" and "the store is full" in out.reason, out
        assert "the camera keeps its data" in out.reason
        assert out.receipt_seq is None and out.wiped == []
        assert run.camera.media_files() == set(files)  # the camera keeps everything
        assert row["outcome"] == "refused" and "the store is full" in row["reason"]
        flags = run.flags_since(before)
        assert [f["kind"] for f in flags] == ["store_full"], flags
        assert "kept in reserve" in flags[0]["detail"]
        new = run.new_dock_records(before)
        assert [r.kind for r in new if r.kind == "flag"] == ["flag"]
        assert new[-1].body["kind"] == "store_full"
        stored = sorted(p.name for p in (run.root / "unit-1" / "cam-001").rglob("*.ts"))
        assert len(stored) == 1  # what fitted is stored, durably, for the next docking
        log = run.log.read_text()
        assert "cam-001 refused (the store is full" in log and "Traceback" not in log
        assert run.proc.poll() is None
        # Space returns (the operator grows the volume): the same bay stores the rest.
        resize_tmpfs(run.root, 400)
        run.replug()
        out, row, _ = dock_camera(run)
        assert row["outcome"] == "stored" and out.outcome == "stored", (row, out)
        assert sorted(out.wiped) == sorted(files) and run.camera.media_files() == set()
        assert row["media"] == 2 and row["bytes"] >= 40 * MiB  # the two that did not fit
        report = verify_path(run.root, unit_keys=_trust(small_store))
        assert report.intact, [str(p) for p in report.problems]
    finally:
        run.stop()


def test_a_store_disk_full_to_the_last_byte_refuses_logs_and_recovers(small_store):
    run = BayRun(small_store)
    filler = run.root / "filler"
    try:
        run.honest_docking()
        files = run.camera.record(1, 300_000, seed=9)
        fill(filler)  # someone else filled the dock's disk to the last byte
        st = os.statvfs(run.root)
        assert st.f_bavail * st.f_frsize < 64 * 1024
        log_before = run.log.stat().st_size
        try:
            out = run.camera.link(run.dock_identity, timeout=15).run_session(run.cable.camera)
            reason = out.reason
        except Refused as exc:  # refused before its challenge: the index took no row
            reason = str(exc)
        assert "the store is full" in reason and "keeps its data" in reason, reason
        assert run.camera.media_files() == set(files)
        # The outcome is logged even though neither the index nor the dock journal can
        # take a byte (the sqlite error does not hide it), and the bay is still up.
        from dockkit import wait_for

        wait_for(
            lambda: "refused (the store is full" in run.log.read_text()[log_before:],
            what="the outcome in the log",
        )
        text = run.log.read_text()[log_before:]
        assert "Traceback" not in text, text
        assert run.proc.poll() is None
        # Space returns: the same bay stores the camera's data.
        filler.unlink()
        run.replug()
        before = run.snapshot()
        out = run.camera.link(run.dock_identity, timeout=15).run_session(run.cable.camera)
        row = run.ended(before)
        assert row["outcome"] == "stored" and out.outcome == "stored", (row, out, text)
        assert sorted(out.wiped) == sorted(files)
        report = verify_path(run.root, unit_keys=_trust(small_store))
        assert report.intact, [str(p) for p in report.problems]
    finally:
        filler.unlink(missing_ok=True)
        run.stop()


def _trust(tmp):
    from dockkit import store_trust

    return store_trust(tmp)
