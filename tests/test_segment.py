"""Segments end to end through the simulator: pre-event head, no frame lost at cuts, playable."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.clock import parse_utc
from evidence.journal import scan_journal
from evidence.record import Record
from firmware.preevent import Frame, PreEventBuffer
from firmware.segment import aac_config, segment_name
from simulator.scenario import load_scenario
from simulator.shift import run_shift

FPS = 10
SCENARIO = """
[shift]
fps = 10
[config.recording]
pre_event_s = 30
segment_max_s = 20
[[event]]
at = "45s"
do = "start"
[[event]]
at = "110s"
do = "stop"
[[event]]
at = "150s"
do = "start"
[[event]]
at = "175s"
do = "stop"
"""


@pytest.fixture(scope="module")
def shift(tmp_path_factory) -> tuple[Path, list[Record]]:
    out = tmp_path_factory.mktemp("seg")
    path = out / "scenario.toml"
    path.write_text(SCENARIO)
    run_shift(out, load_scenario(path), duration_s=190, speed=None)
    device = out / "device"
    records = [Record.from_bytes(line) for _, line in scan_journal(device / "journal.jsonl").lines]
    return device, records


def recordings(records: list[Record]) -> list[list[Record]]:
    """Segment records grouped by recording (recording_started ... recording_stopped)."""
    groups: list[list[Record]] = []
    for r in records:
        if r.kind == "recording_started":
            groups.append([])
        elif r.kind == "segment":
            groups[-1].append(r)
    return groups


def packets(path: Path) -> dict[str, list[tuple[Fraction, bool]]]:
    found: dict[str, list[tuple[Fraction, bool]]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                found[packet.stream.type].append(
                    (packet.pts * packet.time_base, bool(packet.is_keyframe))
                )
    return found


def test_pre_event_seconds_are_at_the_head_of_the_first_segment(shift) -> None:
    device, records = shift
    started = [r for r in records if r.kind == "recording_started"]
    group = recordings(records)[0]
    head = (parse_utc(started[0].utc) - parse_utc(group[0].body["start_utc"])) / 1e9
    assert 30.0 <= head < 31.0 + 1 / FPS  # 30 s, aligned down to a keyframe (one a second)
    video, audio = [], []
    for r in group:  # segment_max_s (20) < pre_event_s (30): the head spans two segments
        found = packets(device / r.body["file"])
        video += found["video"]
        audio += found["audio"]
    assert video[0][1], "the first segment starts at a keyframe"
    # Video by default, audio only from the press: audio begins ~head seconds in.
    assert abs(float(audio[0][0] - video[0][0]) - head) < 0.2


def test_no_frame_lost_or_doubled_across_segment_boundaries(shift) -> None:
    device, records = shift
    groups = recordings(records)
    assert len(groups) == 2 and len(groups[0]) >= 4
    for group in groups:
        video: list[Fraction] = []
        audio: list[Fraction] = []
        for r in group:
            found = packets(device / r.body["file"])
            assert len(found["video"]) == r.body["frames"]
            assert len(found["audio"]) == r.body["audio_frames"]
            assert found["video"][0][1], f"{r.body['file']} does not start at a keyframe"
            span = parse_utc(r.body["end_utc"]) - parse_utc(r.body["start_utc"])
            assert span <= 20 * 10**9  # segment_max_s
            video += [t for t, _ in found["video"]]
            audio += [t for t, _ in found["audio"]]
        steps = {b - a for a, b in zip(video, video[1:], strict=False)}
        assert steps == {Fraction(1, FPS)}, "a video frame is missing or doubled at a cut"
        audio_steps = {b - a for a, b in zip(audio, audio[1:], strict=False)}
        assert max(audio_steps) - min(audio_steps) <= Fraction(1, 90000) * 2
        assert abs(float(min(audio_steps)) - 1024 / 16000) < 0.001
        starts = [parse_utc(r.body["start_utc"]) for r in group]
        ends = [parse_utc(r.body["end_utc"]) for r in group]
        assert all(e == s for e, s in zip(ends, starts[1:], strict=False))


def test_ffprobe_reads_every_segment_with_video_and_audio(shift) -> None:
    device, records = shift
    for r in records:
        if r.kind != "segment":
            continue
        probe = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,codec_name",
                "-of",
                "json",
                str(device / r.body["file"]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        streams = json.loads(probe.stdout)["streams"]
        assert {(s["codec_type"], s["codec_name"]) for s in streams} == {
            ("video", "h264"),
            ("audio", "aac"),
        }


def test_segment_names_and_audio_config() -> None:
    day, name = segment_name("cam-1", 1_795_000_000_123_456_789, 42)
    assert day == "20261118" and name == "cam-1-20261118T110640123Z-000042"
    assert aac_config(16000, 1) == bytes([0x14, 0x08])
    assert aac_config(48000, 2) == bytes([0x11, 0x90])


def vframe(ts: int, key: bool, size: int = 10) -> Frame:
    return Frame(b"v" * size, key, ts, False)


def test_pre_event_buffer_keeps_whole_gops_covering_the_window() -> None:
    buf = PreEventBuffer(seconds=3, max_bytes=1 << 20, keep_audio=False)
    for i in range(100):  # 10 fps, keyframe every 10 frames
        buf.add(vframe(i * 100_000, i % 10 == 0))
        buf.add(Frame(b"a", True, i * 100_000 + 5, True))
    frames = buf.drain()
    assert frames[0].keyframe and frames[0].timestamp == 60 * 100_000
    assert not any(f.audio for f in frames)
    assert buf.drain() == []


def test_pre_event_buffer_is_bounded_by_bytes() -> None:
    buf = PreEventBuffer(seconds=120, max_bytes=1000, keep_audio=True)
    for i in range(100):
        buf.add(vframe(i * 100_000, i % 10 == 0, size=30))
        buf.add(Frame(b"a" * 5, True, i * 100_000 + 5, True))
    assert buf.peak_bytes <= 1000 + 10 * 35
    frames = buf.drain()
    assert frames[0].keyframe and any(f.audio for f in frames)


@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 50)), min_size=1, max_size=200),
    st.integers(0, 5),
)
def test_pre_event_buffer_always_starts_at_a_keyframe(frames, seconds) -> None:
    buf = PreEventBuffer(seconds=seconds, max_bytes=400, keep_audio=True)
    ts = 0
    for key, size in frames:
        ts += 100_000
        buf.add(vframe(ts, key, size))
        buf.add(Frame(b"a", True, ts + 1, True))
    out = buf.drain()
    if out:
        assert out[0].keyframe and not out[0].audio
        assert all(f.timestamp >= out[0].timestamp for f in out)
        assert out[-1].timestamp >= ts  # never drops the newest frames
    else:
        assert not any(k for k, _ in frames)


WRITE_ERROR_CHILD = r"""
import json, resource, signal, sys, threading
from pathlib import Path
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from firmware.segment import VideoFormat
from firmware.writer import SegmentWriter
from simulator.camera import SimCamera
from simulator.clock import SimClock

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
root = Path(sys.argv[1])
clock = SimClock()
journal = Journal(root / "journal.jsonl", DeviceIdentity.generate("cam-x"), clock=clock)
camera = SimCamera(clock, width=160, height=120, fps=10, audio=True)
events, failed = [], threading.Event()

def notify(kind, info):
    events.append([kind, info])
    if kind == "error":
        failed.set()

fmt = VideoFormat(160, 120, 10, 16000, 1, camera.audio_extradata)
writer = SegmentWriter(root=root, journal=journal, device_id="cam-x", fmt=fmt, clock=clock,
                       notify=notify, segment_max_s=600, pre_event_s=0)
writer.start()
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # the storage refuses more
writer.begin(0)
camera.start(writer.output)
failed.wait(60)
camera.stop()
writer.stop()
print(json.dumps(events))
"""


def test_a_refused_write_signs_what_is_on_storage_and_reports(tmp_path: Path) -> None:
    """A real write error (RLIMIT_FSIZE: EFBIG): the segment is signed as it is on
    storage, recording stops, the recorder hears a storage stoppage."""
    import sys

    from evidence.media import hash_file

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", WRITE_ERROR_CHILD, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = json.loads(done.stdout.strip().splitlines()[-1])
    kinds = [k for k, _ in events]
    assert kinds == ["segment", "error"]
    segment, error = events[0][1], events[1][1]
    assert error["reason"] == "storage_full" and "write error" in error["detail"]
    path = tmp_path / segment["file"]
    assert hash_file(path) == (segment["size"], segment["sha256"])
    assert 0 < segment["size"] <= 300_000
    found = packets(path)
    assert len(found["video"]) > 10  # what reached storage plays
    records = [
        Record.from_bytes(line) for _, line in scan_journal(tmp_path / "journal.jsonl").lines
    ]
    assert [r.kind for r in records] == ["segment"]


@pytest.mark.parametrize("keep_audio", [True, False])
def test_pre_event_audio_is_optional(tmp_path: Path, keep_audio: bool) -> None:
    import threading

    from firmware.segment import VideoFormat
    from firmware.writer import SegmentWriter
    from simulator.camera import SimCamera
    from simulator.clock import SimClock

    clock = SimClock()
    camera = SimCamera(clock, width=160, height=120, fps=FPS, audio=True)
    stopped = threading.Event()
    bodies: list[dict] = []

    def notify(kind: str, info: dict) -> None:
        if kind == "segment":
            bodies.append(info)
        elif kind == "stopped":
            stopped.set()

    fmt = VideoFormat(160, 120, FPS, 16000, 1, camera.audio_extradata)
    writer = SegmentWriter(
        root=tmp_path,
        journal=None,
        device_id="cam-x",
        fmt=fmt,
        clock=clock,
        notify=notify,
        pre_event_s=10,
        pre_event_audio=keep_audio,
        sign=True,
    )
    writer.start()
    t0 = clock.monotonic_ns()
    # Commands at exact instants of the stream: clock timers run in the camera's thread.
    clock.at(t0 + 20 * 10**9, lambda: writer.begin(10))
    clock.at(t0 + 25 * 10**9, lambda: writer.end("button"))
    camera.start(writer.output)
    assert stopped.wait(30)
    camera.stop()
    writer.stop()
    found = packets(tmp_path / bodies[0]["file"])
    lead = float(found["audio"][0][0] - found["video"][0][0])
    if keep_audio:
        assert abs(lead) < 0.1  # audio from the first kept keyframe on
    else:
        assert 9.9 <= lead <= 11.1  # audio only from the press
    assert 15.0 <= bodies[0]["frames"] / FPS <= 16.0  # 5 s + 10-11 s of pre-event
