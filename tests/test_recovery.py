"""Crash recovery: SIGKILL the recorder at random moments, restart, lose nothing closed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from evidence.journal import Journal, scan_journal
from evidence.media import hash_file
from evidence.record import Record
from firmware.recovery import recover, start_utc_from_name, unsigned_media

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

KILL_SCENARIO = """
[shift]
duration = "30m"
[config.recording]
segment_max_s = 4
flush_interval_s = 0.5
[[event]]
at = "1s"
do = "start"
[[event]]
at = "20s"
do = "mark"
"""


def run_verify(path: Path) -> subprocess.CompletedProcess:
    """bodycam-verify with the shift's unit-signed registry (``DIR/registry.json``)."""
    registry = ["--registry", str(path.parent / "registry.json")]
    return subprocess.run(
        [PY, "-m", "evidence.verify_cli", str(path), *registry],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def media_sizes(device: Path) -> dict[str, int]:
    media = device / "media"
    if not media.exists():
        return {}
    return {
        p.relative_to(device).as_posix(): p.stat().st_size
        for p in media.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def journal_lines(device: Path) -> list[bytes]:
    path = device / "journal.jsonl"
    return [line for _, line in scan_journal(path).lines] if path.exists() else []


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_closed_segment(tmp_path: Path) -> None:
    scenario = tmp_path / "kill.toml"
    scenario.write_text(KILL_SCENARIO)
    out = tmp_path / "shift"
    device = out / "device"
    rng = random.Random(20261127)
    cmd = [PY, "-m", "simulator", "shift", "--out", str(out), "--scenario", str(scenario)]
    snapshots: list[tuple[list[bytes], dict[str, int]]] = []
    for _ in range(20):
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        log: list[str] = []

        def drain(stream=proc.stderr, ready=ready, log=log) -> None:  # keep the pipe empty
            for line in stream:
                log.append(line)
                if "recorder ready" in line:
                    ready.set()
            ready.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        assert ready.wait(60), "the recorder did not start"
        # A random moment of the run: recording, cutting, signing, appending.
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            pytest.fail(
                f"the shift ended before the kill (rc {proc.returncode}): {''.join(log)[-2000:]}"
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        proc.stderr.close()
        snapshots.append((journal_lines(device), media_sizes(device)))
    # One last run to the end recovers the last kill's leftovers and stops cleanly.
    done = subprocess.run(
        cmd + ["--duration", "20s"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    final = journal_lines(device)
    records = [Record.from_bytes(line) for line in final]
    named = {r.body["file"]: r for r in records if r.kind in ("segment", "photo")}
    recovered = [r for r in records if r.kind == "segment" and r.body["recovered"]]
    boots = [r for r in records if r.kind == "boot"]
    assert len(boots) == 21  # every kill came after the boot record
    assert sum(b.body["reason"] == "recovered" for b in boots) >= 15
    for lines, sizes in snapshots:
        # The journal before each kill is still there, record for record (a torn last
        # line is moved aside by the repair, never silently dropped).
        assert final[: len(lines)] == lines
        # Every media file present at the kill is signed, at the size it had at the cut.
        for name, size in sizes.items():
            assert name in named, f"{name} present at a kill but never signed"
            assert named[name].body["size"] == size
    assert len(recovered) >= 10
    playable = 0
    for r in recovered:
        size, digest = hash_file(device / r.body["file"])
        assert (size, digest) == (r.body["size"], r.body["sha256"])
        playable += r.body["frames"] > 0
    assert playable >= 5  # the open segment is kept up to the cut, and it plays
    result = run_verify(device)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recover_signs_unsigned_and_torn(tmp_path: Path, identity) -> None:
    root = tmp_path / "device"
    journal = Journal(root / "journal.jsonl", identity)
    journal.append("boot", {"firmware": "t", "boot_id": "0" * 32, "reason": "start"})
    journal.close()
    with open(root / "journal.jsonl", "ab") as f:
        f.write(b'{"v":1,"device":"cam-te')  # a power cut mid-append
    day = root / "media" / "20261127"
    day.mkdir(parents=True)
    (day / "cam-test-20261127T081500123Z-000007.ts").write_bytes(b"")  # opened, then the cut
    (day / "cam-test-20261127T081400000Z-000003.jpg").write_bytes(b"\xff\xd8partial")
    (day / ".tmp-leftover").write_bytes(b"x")
    journal = Journal(root / "journal.jsonl", identity, repair_torn=True)
    assert [r.kind for r in journal.records()] == ["boot", "torn_tail"]
    assert unsigned_media(root, journal) == [
        "media/20261127/cam-test-20261127T081400000Z-000003.jpg",
        "media/20261127/cam-test-20261127T081500123Z-000007.ts",
    ]
    bodies = recover(root, journal, 0)
    assert [b["file"].rsplit(".", 1)[1] for b in bodies] == ["jpg", "ts"]
    seg = bodies[1]
    assert seg["size"] == 0 and seg["frames"] == 0 and seg["recovered"] is True
    assert seg["start_utc"] == "2026-11-27T08:15:00.123000Z"
    assert unsigned_media(root, journal) == []
    assert recover(root, journal, 0) == []  # idempotent
    journal.close()


def test_start_utc_from_name() -> None:
    assert start_utc_from_name("cam-1-20261127T000000000Z-000001") is not None
    assert start_utc_from_name("not-a-segment") is None


def test_recovered_segment_counts_frames(tmp_path: Path) -> None:
    """A segment cut short (truncated mid-packet) still demuxes up to the cut."""
    from firmware.recovery import probe_segment

    src = tmp_path / "full.ts"
    with av.open(str(src), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        import numpy as np

        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = src.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) * 2 // 3 + 17])
    frames, audio, seconds = probe_segment(cut)
    assert 5 < frames < 30 and audio == 0 and seconds > 0
    assert os.path.getsize(cut) < len(data)
    assert json.dumps({"frames": frames})  # plain ints, journal-ready


TORN = b'{"body":{"n":1},"device":"cam-test","kind":"mar'


def leave(root: Path, identity, left: str) -> None:
    """A journal as a power cut (or a kill) leaves it: ``left`` says where it fell."""
    path = root / "journal.jsonl"
    with Journal(path, identity) as journal:
        journal.append("boot", {"firmware": "t", "boot_id": "0" * 32, "reason": "start"})
    if left == "nothing":
        return
    end = path.stat().st_size
    if left == "a torn tail":
        with open(path, "ab") as f:
            f.write(TORN)
    elif left == "a repair cut short":  # its side file written, the tail already cut off
        (root / f"journal.torn-{end}").write_bytes(TORN)
    elif left == "a torn_tail record cut short":
        with open(path, "ab") as f:
            f.write(TORN)
        Journal(path, identity, repair_torn=True).close()
        os.truncate(path, end + (path.stat().st_size - end) // 2)


@pytest.mark.parametrize(
    "left", ["nothing", "a torn tail", "a repair cut short", "a torn_tail record cut short"]
)
def test_a_start_that_repairs_the_journal_or_finishes_a_repair_boots_as_recovered(
    tmp_path: Path, identity, left: str
) -> None:
    """The boot record's reason is ``recovered`` whenever the journal's opening repaired it,
    also when it only finished a repair cut short (the tail was already gone)."""
    from gpiozero.pins.mock import MockFactory
    from recorderkit import short_wav

    from simulator.scenario import Scenario
    from simulator.shift import recorder_on, shift_config, sim_hardware

    config = shift_config(
        tmp_path, Scenario(config={"announcement": {"wav": str(short_wav(tmp_path))}})
    )
    root = Path(config["device"]["storage"])
    leave(root, identity, left)
    factory = MockFactory()
    hw = sim_hardware(
        config, tmp_path, speed=None, device_id=identity.device_id, pin_factory=factory
    )
    recorder = recorder_on(hw, config, identity, buttons=False, pin_factory=factory)
    try:
        recorder.open()
        records = recorder.journal.records()
        repaired = recorder.journal.repaired
    finally:
        if recorder.journal is not None:
            recorder.journal.close()
        hw["indicators"].close()
        factory.close()
    boot = records[-1]
    assert boot.kind == "boot", [r.kind for r in records]
    assert [r.kind for r in records].count("torn_tail") == (left != "nothing")
    assert boot.body["reason"] == ("start" if left == "nothing" else "recovered"), left
    assert (repaired is not None) == (left != "nothing")
    assert repaired is None or repaired.finished == (left != "a torn tail")
