"""The device backend (firmware/pi.py) on a fake picamera2 that keeps picamera2's own calling
conventions (tests/fake_picamera2): the daemon end to end, and the seams one by one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from pikit import daemon_env, decode_audio, fake_board_imported, read_osd
from recorderkit import short_wav

from evidence.clock import SystemClock, parse_utc
from evidence.identity import DeviceIdentity
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.registry import DeviceEntry
from simulator.unit import register, unit_key

PY = sys.executable
FFPROBE = shutil.which("ffprobe")
NS = 1_000_000_000


def records(storage: Path) -> list[Record]:
    path = storage / "journal.jsonl"
    if not path.exists():
        return []
    return [Record.from_bytes(line) for _, line in scan_journal(path).lines]


def wait_for(what: str, predicate, timeout: float, proc: subprocess.Popen, log: Path):
    """Poll a daemon's files until ``predicate()`` is truthy (it has no other way to tell)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"daemon exited ({proc.returncode}) waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(FFPROBE is None, reason="ffprobe (ffmpeg) is not installed")
def test_recorder_on_the_fake_picamera2_end_to_end(tmp_path: Path) -> None:
    """bodycam-recorder with BODYCAM_CAMERA=pi: a recording with a photo and a camera that
    hangs and is restarted mid-recording. Every segment verifies, plays with 16 kHz mono
    audio, starts at the wall clock's time and shows the time, device and officer."""
    device = "cam-pi01"
    identity = DeviceIdentity.create(tmp_path / "key" / "device.key", device)
    key = unit_key(tmp_path)
    registry = tmp_path / "registry.json"
    register(registry, key, devices=[DeviceEntry(device, identity.public_key_hex, "A1024", "u1")])
    storage = tmp_path / "storage"
    config = tmp_path / "recorder.toml"
    config.write_text(
        "[camera]\nwidth = 640\nheight = 360\nfps = 15\nbitrate = 1500000\n"
        "[recording]\npre_event_s = 2\nsegment_max_s = 3\n"
        "[controls]\nstop_hold_s = 0.3\n"
        "[health]\npoll_s = 0.25\nframe_watchdog_s = 1.0\ncamera_retry_s = 0.5\n"
        f'[dock]\nport = ""\nregistry = "{registry}"\nunit_keys = ["{key.fingerprint}"]\n'
    )
    sysroot = tmp_path / "sysroot"  # no /dev/rtc0 here: the RTC is reported unusable
    (sysroot / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (sysroot / "sys/class/thermal/thermal_zone0/temp").write_text("47000\n")
    fifo, control = tmp_path / "board.fifo", tmp_path / "camera-control"
    os.mkfifo(fifo)
    control.mkdir()
    log = tmp_path / "recorder.log"
    env = daemon_env(
        FAKE_BOARD_FIFO=str(fifo), FAKE_PICAMERA2_CONTROL=str(control), BODYCAM_SYSROOT=str(sysroot)
    )
    launched = time.time_ns()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [PY, "-m", "firmware", "--config", str(config), "--storage", str(storage)]
            + ["--key", str(tmp_path / "key" / "device.key"), "-v"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    board = os.open(fifo, os.O_WRONLY)  # the fake board's buttons

    def press(net: str, seconds: float) -> None:
        os.write(board, f"press {net} {seconds}\n".encode())

    def kinds_after(kind: str, start: int = 0) -> list[Record]:
        return [r for r in records(storage)[start:] if r.kind == kind]

    try:
        wait_for("ready", lambda: b"recorder ready" in log.read_bytes(), 60, proc, log)
        assert b"RTC not usable" in log.read_bytes()  # the boot path tried to restore it
        press("BTN_RECORD", 0.1)
        wait_for("a segment", lambda: kinds_after("segment"), 60, proc, log)
        press("BTN_FUNCTION", 0.1)  # a short press: a photo
        wait_for("the photo", lambda: kinds_after("photo"), 30, proc, log)
        (control / "hang").touch()  # the camera stops delivering frames
        stop = wait_for("the camera stoppage", lambda: kinds_after("stoppage"), 30, proc, log)
        assert stop[0].body["reason"] == "camera"
        at = len(records(storage))
        wait_for("the camera back", lambda: kinds_after("resumed", at), 30, proc, log)
        at = len(records(storage))
        wait_for("2 segments after", lambda: len(kinds_after("segment", at)) >= 2, 60, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        os.close(board)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = time.time_ns()

    verify = subprocess.run(
        [PY, "-m", "evidence.verify_cli", str(storage), "--registry", str(registry)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    journal = records(storage)
    kinds = [r.kind for r in journal]
    assert kinds.index("stoppage") < kinds.index("resumed")
    segments = [r for r in journal if r.kind == "segment"]
    restart = journal[kinds.index("resumed")].seq
    assert any(s.seq > restart for s in segments), "nothing recorded after the restart"
    stop_seq = journal[kinds.index("stoppage")].seq
    started = journal[kinds.index("recording_started")]
    first = parse_utc(segments[0].body["start_utc"])
    # The wall clock's time of the press (journaled by the recorder's own thread), less at
    # most the pre-event buffer (from a keyframe at or before 2 s before it); not boot time.
    assert -3.1 * NS < first - parse_utc(started.utc) <= 0.1 * NS, (started.utc, first)
    previous_end = 0
    hung = next(s for s in segments if s.seq > stop_seq)  # closed by the stoppage
    for seg in segments:
        body = seg.body
        start, end = parse_utc(body["start_utc"]), parse_utc(body["end_utc"])
        # The wall clock's time, not boot time: within the run, and closed (journaled)
        # within a second of the segment's last frame, unless the camera hung in it.
        assert launched - NS < start < end < finished + NS, body
        if seg is not hung:
            assert abs(parse_utc(seg.utc) - end) < NS, (seg.utc, body)
        assert start >= previous_end - 5_000_000, "segments overlap or go back in time"
        previous_end = end
        path = storage / body["file"]
        probe = ffprobe(path)
        video = [s for s in probe["streams"] if s["codec_type"] == "video"]
        audio = [s for s in probe["streams"] if s["codec_type"] == "audio"]
        assert video[0]["codec_name"] == "h264" and (video[0]["width"], video[0]["height"]) == (
            640,
            360,
        )
        assert audio[0]["codec_name"] == "aac"
        if body["audio_frames"] < 5:  # the tail cut by SIGTERM: too short to probe
            assert seg is segments[-1], body
            continue
        assert (int(audio[0]["sample_rate"]), audio[0]["channels"]) == (16000, 1), body
        rate, channels, samples = decode_audio(path)
        assert (rate, channels) == (16000, 1)
        assert body["audio_frames"] > 0 and len(samples) >= body["audio_frames"] * 1024 * 0.9
        assert np.abs(samples).max() > 0.1  # the board's tone, not silence
        check_osd(path, start, "CAM-PI01 A1024")

    # After the restart the camera's timeline goes on: the stoppage stopped the recording
    # and a new one began with the restarted camera's pre-event frames, which were not
    # dropped (as timestamps starting again at 0 would be) and follow the hang closely;
    # within each recording the segments' pts run on.
    resumed = next(s for s in segments if s.seq > restart)
    gap = parse_utc(resumed.body["start_utc"]) - parse_utc(hung.body["end_utc"])
    assert 0 < gap < 2.5 * NS, gap
    for part in (
        [s for s in segments if s.seq < restart],
        [s for s in segments if s.seq > restart],
    ):
        starts = [float(ffprobe(storage / s.body["file"])["format"]["start_time"]) for s in part]
        assert starts == sorted(starts) and len(set(starts)) == len(starts), starts

    photo = [r for r in journal if r.kind == "photo"][0].body
    with av.open(str(storage / photo["file"])) as container:
        still = next(container.decode(video=0))
    assert (still.width, still.height) == (640, 360)
    stamp, ids = read_osd(still, len("CAM-PI01 A1024"))
    assert ids == "CAM-PI01 A1024"
    assert launched < parse_osd_time(stamp) < finished


def parse_osd_time(stamp: str) -> int:
    return parse_utc(stamp.replace(" ", "T") + "000Z")


def check_osd(path: Path, start_utc: int, ids: str) -> None:
    """Read the burned-in text of some frames back: the id line exactly, the time within a
    frame of the frame's own UTC time (segment start + its pts)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first_pts = None
        for i, frame in enumerate(container.decode(stream)):
            if first_pts is None:
                first_pts = frame.pts
            if i % 7:
                continue
            stamp, shown = read_osd(frame, len(ids))
            assert shown == ids, (path.name, i, shown)
            utc = start_utc + int((frame.pts - first_pts) * stream.time_base * NS)
            assert abs(parse_osd_time(stamp) - utc) <= 70_000_000, (path.name, i, stamp, utc)


# -- the seams, in-process -------------------------------------------------------------------


class Collect:
    """A recorder-side Output: what the camera hands on, with the thread it came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool, int, bool, str]] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        with self.cond:
            self.calls.append((frame, keyframe, timestamp, audio, threading.current_thread().name))
            self.cond.notify_all()

    def wait(self, video: int, audio: int = 0, timeout: float = 20.0) -> None:
        def enough() -> bool:
            v = sum(1 for c in self.calls if not c[3])
            return v >= video and len(self.calls) - v >= audio

        with self.cond:
            assert self.cond.wait_for(enough, timeout), (video, audio, len(self.calls))

    def video(self):
        with self.lock:
            return [c for c in self.calls if not c[3]]

    def audio(self):
        with self.lock:
            return [c for c in self.calls if c[3]]


def pi_camera(**kw):
    from firmware.pi import PiCamera

    args = dict(
        width=320,
        height=180,
        fps=20,
        bitrate=500_000,
        keyframe_period_s=0.5,
        audio=True,
        audio_sample_rate=16000,
        audio_channels=1,
        device_id="cam-7",
        officer_id="B2",
    )
    args.update(kw)
    return PiCamera(SystemClock(), **args)


def test_timestamps_are_the_monotonic_clock_and_continue_after_a_restart() -> None:
    with fake_board_imported(FAKE_PICAMERA2_MIC="tone"):
        camera, out = pi_camera(), Collect()
        camera.start(out)
        out.wait(10, 5)
        camera.stop()
        first = out.video()
        now_us = time.monotonic_ns() // 1000
        # Frames are stamped at their sensor time: before now, by less than a second.
        assert all(now_us - 1_000_000 < c[2] < now_us for c in first)
        camera.start(out)  # picamera2's Encoder.start resets its first timestamp to 0
        out.wait(len(first) + 10, 10)
        camera.stop()
        video = out.video()
        assert [c[2] for c in video] == sorted(c[2] for c in video)  # no jump back to 0
        assert video[len(first)][2] > first[-1][2] and video[len(first)][1]  # a keyframe
        audio = out.audio()
        after = [c for c in audio if c[2] > first[-1][2]]
        assert after and all(c[2] >= first[0][2] for c in audio)
        assert out.started == out.stopped == 2


def test_audio_packets_are_bytes_of_aac_at_the_declared_rate() -> None:
    from firmware.segment import aac_config

    with fake_board_imported(FAKE_PICAMERA2_MIC="tone") as fake:
        camera, out = pi_camera(), Collect()
        camera.start(out)
        out.wait(10, 20)
        camera.stop()
    # picamera2 was asked for 16 kHz mono AAC from the board's ALSA PCM, nothing else.
    assert fake.opened_audio[-1] == {
        "file": "bodycam_mic",
        "format": "alsa",
        "options": {"sample_rate": "16000", "channels": "1"},
    }
    packets = [c[0] for c in out.audio()]
    assert all(type(p) is bytes and p for p in packets)
    codec = av.CodecContext.create("aac", "r")
    codec.extradata = aac_config(16000, 1)  # what segment.py declares
    pcm = np.concatenate(
        [f.to_ndarray().reshape(-1) for p in packets for f in codec.decode(av.Packet(p))]
    )
    assert codec.sample_rate == 16000 and codec.layout.nb_channels == 1
    spectrum = np.abs(np.fft.rfft(pcm[4096:20480]))
    assert abs(int(spectrum.argmax()) * 16000 / 16384 - 440) < 5  # the board's 440 Hz tone


@pytest.mark.parametrize(
    ("mic", "healthy"), [("tone", True), ("silent", False), ("missing", False)]
)
def test_microphone_health_and_a_missing_microphone_is_no_failure_to_start(mic, healthy) -> None:
    from firmware.pi import PiMicrophone

    with fake_board_imported(FAKE_PICAMERA2_MIC=mic):
        camera, out = pi_camera(), Collect()
        microphone = PiMicrophone(camera, window_s=1.0, grace_s=0.5)
        camera.start(out)  # never raises for the microphone
        try:
            out.wait(25)
            assert microphone.healthy() is healthy
            if mic == "missing":
                assert "bodycam_mic" in camera.tap.failure and not out.audio()
        finally:
            camera.stop()


def test_burned_in_text_is_drawn_into_the_frames_picamera2_encodes() -> None:
    from evidence.osd import Overlay

    with fake_board_imported():
        camera, out = pi_camera(audio=False), Collect()
        camera.start(out)
        out.wait(12)
        jpeg = camera.capture_jpeg()
        camera.stop()
    codec = av.CodecContext.create("h264", "r")
    utc_offset = time.time_ns() - time.monotonic_ns()
    checked = 0
    for data, _, ts, _, _ in out.video():
        for frame in codec.decode(av.Packet(data)):
            stamp, ids = Overlay(320, 180).read(frame.to_ndarray(format="gray"), 8)
            assert ids == "CAM-7 B2"
            assert abs(parse_osd_time(stamp) - (utc_offset + ts * 1000)) < 5_000_000
            checked += 1
    assert checked >= 10
    with av.open(__import__("io").BytesIO(jpeg)) as still:
        assert read_osd(next(still.decode(video=0)), 8)[1] == "CAM-7 B2"


def test_boot_restores_the_system_clock_from_the_rtc(
    tmp_path, monkeypatch, caplog, mock_factory
) -> None:
    """make_backend is the device's boot path: a Pi boots at its last shutdown time, so the
    clock is taken from the RTC when they disagree."""
    import firmware.drivers as drivers
    from firmware import config as cfg
    from firmware.hardware import BackendOptions
    from firmware.pi import make_backend

    rtc_time = parse_utc("2026-12-03T08:00:00.000000Z")
    set_to: list[int] = []

    class Rtc:
        def read_time_ns(self) -> int:
            return rtc_time

    monkeypatch.setattr(
        drivers,
        "device_clock",
        lambda path: drivers.RtcClock(Rtc(), set_system_clock=set_to.append),
    )
    (tmp_path / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").write_text("50000\n")
    monkeypatch.setenv("BODYCAM_SYSROOT", str(tmp_path))
    with fake_board_imported(), caplog.at_level(logging.WARNING):
        hw = make_backend(cfg.load(None, {}), BackendOptions("cam-7"))
        assert hw.power.temperature_c() == 50.0 and hw.power.battery_percent() == 80.0
    assert set_to == [rtc_time]
    assert "set from the RTC" in caplog.text


def test_the_speaker_starts_at_the_call_and_waits_for_the_end_elsewhere(tmp_path) -> None:
    """The recorder's main loop starts the announcement at the press: ``start_wav`` must
    not play the sentence through (the fake amplifier plays in real time); ``wait`` does,
    and hands on what went wrong with the device."""
    from firmware.pi import PiSpeaker

    wav = short_wav(tmp_path, seconds=2.0)
    with fake_board_imported():
        speaker = PiSpeaker()
        called = time.monotonic()
        playback = speaker.start_wav(str(wav))
        started = time.monotonic()
        playback.wait()
        ended = time.monotonic()
        missing = speaker.start_wav(str(tmp_path / "no-such.wav"))
        with pytest.raises(FileNotFoundError):
            missing.wait()
    assert started - called < 1.9 <= ended - called
