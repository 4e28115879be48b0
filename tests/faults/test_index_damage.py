"""A damaged ``index.sqlite`` (bad header, truncated, an overwritten page) never stops the
dock: each command detects it, keeps the damaged file aside, rebuilds the index from the
store and the dock journal, says so in one line, and carries on; no traceback.

The dock runs as a real process (``python -m dock``) on real SQLite files; the camera
docks over a real pty pair whose master fd the test holds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from dockkit import NS, dock_cmd, dock_once, make_camera, make_dock

from dock.bay import bay_name
from dock.store import INDEX_NAME, Store
from evidence.clock import format_utc, parse_utc
from simulator.clock import SimClock
from simulator.dockbay import PtyEnd, open_cable

pytestmark = pytest.mark.faults

PAGE = 4096


def bad_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"NOT A DATABASE!!")  # over "SQLite format 3\0"
        os.fsync(f.fileno())


def truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
        os.fsync(f.fileno())


def overwritten_page(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(2 * PAGE)  # page 3: a table's root page
        f.write(random.Random(3).randbytes(PAGE))
        os.fsync(f.fileno())


DAMAGE = {"bad_header": bad_header, "truncated": truncated, "overwritten_page": overwritten_page}


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(dock_cmd(tmp, *args), capture_output=True, text=True, timeout=60)


def report(tmp: Path) -> subprocess.CompletedProcess:
    return run(tmp, "report", "deadlines", "--json", "--now", format_utc(time.time_ns()))


def comparable(out: str) -> dict:
    """The report minus what the index cannot know again to the microsecond: when a flag
    was noted (the dock journal's record of it is a few microseconds apart), kept as the
    number of seconds since the flag that the intact index gives."""
    data = json.loads(out)
    data.pop("now_utc")
    for flag in data["flags"]:
        flag["utc"] = round((parse_utc(flag["utc"]) - FLAGGED[0]) / NS)
    return data


FLAGGED = [0]  # when the scene's flag was raised, by the intact index


class Scene:
    """A store that holds one camera's recordings and one flag, closed (so the index is
    all in ``index.sqlite``), and the report it gives while intact."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = SimClock(time.time_ns() - 3600 * NS)  # recorded an hour ago
        self.camera, registry = make_camera(tmp, clock=self.clock)
        self.files = self.camera.record(3, 200_000)
        self.dock, store = make_dock(tmp, registry)
        assert dock_once(store, self.dock, self.camera)[0].outcome == "stored"
        stranger, _ = make_camera(tmp / "stranger", "cam-999")
        assert dock_once(store, self.dock, stranger)[0].outcome == "refused"  # a flag
        store.close()
        self.index = tmp / "dock" / INDEX_NAME
        self.intact = report(tmp)
        assert self.intact.returncode == 1, self.intact.stderr  # it lists the flag
        FLAGGED[0] = parse_utc(json.loads(self.intact.stdout)["flags"][0]["utc"])
        assert len(comparable(self.intact.stdout)["flags"]) == 1

    def damage(self, kind: str) -> bytes:
        DAMAGE[kind](self.index)
        return self.index.read_bytes()

    def kept(self) -> list[Path]:
        """The damaged index files moved aside (without SQLite's side files)."""
        found = self.index.parent.glob(f"{INDEX_NAME}.damaged-*")
        return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))

    def assert_rebuilt(self, damaged: bytes, output: str, prefix: str) -> None:
        """The damaged file is kept as it was, the command said what it did in one line
        starting with ``prefix`` (besides its log line), and the rebuilt index gives the
        report the intact one gave."""
        (kept,) = self.kept()
        assert kept.read_bytes() == damaged
        lines = [line for line in output.splitlines() if line.startswith(prefix)]
        assert len(lines) == 1, output
        assert f"moved aside as {kept.name}" in lines[0]
        assert "rebuilt from the store and the dock journal" in lines[0]
        assert "1 device(s), 3 media file(s), 1 flag(s)" in lines[0]
        assert "WARNING dock.index" in output  # the log line
        assert "Traceback" not in output
        again = report(self.tmp)
        assert again.returncode == 1 and "Traceback" not in again.stderr
        assert comparable(again.stdout) == comparable(self.intact.stdout)
        assert self.kept() == [kept]  # the rebuilt index is healthy: no second repair


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return Scene(tmp_path)


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_report_deadlines_rebuilds_a_damaged_index(scene: Scene, kind: str) -> None:
    damaged = scene.damage(kind)
    out = report(scene.tmp)
    assert out.returncode == 1, out.stderr  # the flag is listed, as before the damage
    assert comparable(out.stdout) == comparable(scene.intact.stdout)
    scene.assert_rebuilt(damaged, out.stderr, "bodycam-dock: index was damaged (")


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_reconcile_rebuilds_a_damaged_index(scene: Scene, kind: str) -> None:
    damaged = scene.damage(kind)
    out = run(scene.tmp, "reconcile")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("index was damaged (")
    scene.assert_rebuilt(damaged, out.stdout + out.stderr, "index was damaged (")


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_status_rebuilds_a_damaged_index_and_shows_it(scene: Scene, kind: str) -> None:
    damaged = scene.damage(kind)
    out = run(scene.tmp, "status")
    assert out.returncode == 0, out.stderr
    scene.assert_rebuilt(damaged, out.stdout + out.stderr, "index: at ")
    assert " the index was damaged (" in out.stdout
    # shown again by the next status, with when it happened
    again = run(scene.tmp, "status", "--json")
    assert "index was damaged" in json.loads(again.stdout)["index"]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll a file the daemon writes, with a deadline."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        tick.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def bay_state(tmp: Path, port: str) -> dict:
    path = tmp / "dock" / ".status" / f"{bay_name(port)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_bay_started_on_a_damaged_index_rebuilds_it_and_docks(scene: Scene, kind: str) -> None:
    damaged = scene.damage(kind)
    scene.camera.record(2, 100_000, seed=7)  # two more recordings to offload
    master, port = open_cable()
    log = scene.tmp / "bay.log"
    with open(log, "w") as err:
        bay = subprocess.Popen(dock_cmd(scene.tmp, "bay", port), stderr=err)
    try:
        wait_for(lambda: bay_state(scene.tmp, port).get("state") == "handshake", what="the bay")
        outcome = scene.camera.link(scene.dock).run_session(PtyEnd(master))
        # the rebuilt head is right: only the new records were asked for, and receipted
        assert len(outcome.wiped) == 2 and outcome.bytes_sent < 250_000
        wait_for(lambda: bay_state(scene.tmp, port).get("last"), what="the docking")
        assert bay_state(scene.tmp, port)["last"]["outcome"] == "stored"
        bay.send_signal(signal.SIGTERM)
        assert bay.wait(30) == 0
    finally:
        if bay.poll() is None:
            bay.kill()
            bay.wait()
        os.close(master)
    text = log.read_text()
    assert "Traceback" not in text
    (kept,) = scene.kept()
    assert kept.read_bytes() == damaged
    assert "index was damaged" in text and kept.name in text
    media = json.loads(report(scene.tmp).stdout)["officers"]["A1024"]
    assert (media["on_time"], media["problems"]) == (5, [])


def test_damage_met_at_use_is_repaired_and_the_docking_completes(scene: Scene) -> None:
    """The bay's process opened a healthy index; the file is damaged under it (truncated:
    SQLite reads pages it no longer has). The session's next statement meets the damage,
    the index is rebuilt, the statement runs again and the camera is stored."""
    from dockkit import make_dock as reopen

    _, store = reopen(scene.tmp, None)
    try:
        assert store.index.repairs == []
        store.index.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all pages in the file
        damaged = scene.damage("truncated")
        scene.camera.record(2, 100_000, seed=9)
        result, outcome = dock_once(store, scene.dock, scene.camera)
        assert result.outcome == "stored" and len(outcome.wiped) == 2
        (repair,) = store.index.repairs
        assert "database disk image is malformed" in repair.reason
    finally:
        store.close()
    (kept,) = scene.kept()
    assert kept.read_bytes() == damaged
    media = json.loads(report(scene.tmp).stdout)["officers"]["A1024"]
    assert (media["on_time"], media["problems"]) == (5, [])


def test_a_process_sees_another_repaired_the_index_and_writes_to_the_new_one(
    scene: Scene,
) -> None:
    """A running dock process keeps its connection; ``report`` (another process) finds the
    file damaged and replaces it; the dock's next docking goes into the new index, not
    into the orphaned damaged file."""
    _, store = make_dock(scene.tmp, None)
    try:
        store.index.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        scene.damage("bad_header")
        out = report(scene.tmp)
        assert "index was damaged" in out.stderr
        scene.camera.record(1, 100_000, seed=11)
        assert dock_once(store, scene.dock, scene.camera)[0].outcome == "stored"
        assert store.index.repairs == []  # it reopened the repaired file, nothing more
    finally:
        store.close()
    assert len(scene.kept()) == 1
    media = json.loads(report(scene.tmp).stdout)["officers"]["A1024"]
    assert (media["on_time"], media["problems"]) == (4, [])


def test_a_store_without_an_index_gets_one_rebuilt(scene: Scene) -> None:
    """A deleted index is rebuilt the same way (there is nothing to keep aside)."""
    for side in scene.index.parent.glob(f"{INDEX_NAME}*"):
        side.unlink()
    out = report(scene.tmp)
    assert "index was missing or empty: no file to keep; rebuilt" in out.stderr
    assert comparable(out.stdout) == comparable(scene.intact.stdout)
    store = Store(scene.tmp / "dock")
    assert store.index.repairs == []  # opened again: healthy, nothing said
    store.close()
