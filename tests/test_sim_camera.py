"""The simulated camera: real H.264 + AAC, picamera2's Output calls, faults, photos."""

from __future__ import annotations

import io
import json
import math
import shutil
import struct
import subprocess
import threading
import time
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from evidence.clock import parse_utc
from simulator.audio import SimMicrophone
from simulator.camera import SimCamera
from simulator.clock import NS, SimClock

START = parse_utc("2026-11-27T08:59:58.000000Z")
FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe (ffmpeg) is not installed")


class Recorder:
    """A picamera2-style Output that keeps every call (what a user of the camera sees)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool, int, bool]] = []
        self.started = self.stopped = 0
        self.after_stop = 0
        self.stop_called = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1
        self.stop_called.set()

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        assert threading.current_thread().name == "sim-camera"
        with self.lock:
            if self.stopped:
                self.after_stop += 1
            self.calls.append((frame, keyframe, timestamp, audio))

    @property
    def video(self):
        with self.lock:
            return [c for c in self.calls if not c[3]]

    @property
    def audio(self):
        with self.lock:
            return [c for c in self.calls if c[3]]


def run_camera(camera: SimCamera, frames: int) -> Recorder:
    out = Recorder()
    camera.start(out)
    assert camera.wait_frames(frames, timeout=30), camera.error
    camera.stop()
    return out


def ffprobe(path: Path, *args: str) -> dict:
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def decode_frames(units: list[bytes]) -> list[av.VideoFrame]:
    """Decode access units one packet each, as a muxer would hand them to a decoder."""
    codec = av.CodecContext.create("h264", "r")
    frames = []
    for unit in units:
        frames.extend(codec.decode(av.Packet(unit)))
    frames.extend(codec.decode(None))
    return frames


def decode_video(units: list[bytes]) -> list[np.ndarray]:
    return [f.to_ndarray(format="gray") for f in decode_frames(units)]


def decode_audio(camera: SimCamera, packets: list[bytes]) -> np.ndarray:
    codec = av.CodecContext.create("aac", "r")
    codec.extradata = camera.audio_extradata
    codec.sample_rate = camera.audio_sample_rate
    codec.layout = "mono"
    chunks = []
    for data in packets:
        for frame in codec.decode(av.Packet(data)):
            chunks.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(chunks)


@needs_ffprobe
def test_video_is_h264_that_ffprobe_reads(tmp_path: Path) -> None:
    camera = SimCamera(SimClock(START), width=160, height=120, fps=10, device_id="cam-7")
    out = run_camera(camera, 35)
    assert (out.started, out.stopped, out.after_stop) == (1, 1, 0)
    path = tmp_path / "video.h264"
    path.write_bytes(b"".join(c[0] for c in out.video))
    info = ffprobe(path, "-count_frames", "-show_streams")
    stream = info["streams"][0]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (160, 120)
    assert int(stream["nb_read_frames"]) == len(out.video) >= 35
    assert not stream.get("has_b_frames")


def test_a_keyframe_with_headers_every_second_and_timestamps_one_frame_apart() -> None:
    fps = 15
    camera = SimCamera(SimClock(START), width=160, height=120, fps=fps)
    video = run_camera(camera, 4 * fps).video
    keys = [i for i, c in enumerate(video) if c[1]]
    assert keys[0] == 0
    assert all(b - a <= fps for a, b in zip(keys, keys[1:] + [len(video)], strict=True))
    for i in keys:  # Annex B, starting with the SPS (NAL type 7), PPS repeated
        frame = video[i][0]
        assert frame.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        nal_types = {b & 0x1F for b in _nal_headers(frame)}
        assert {7, 8, 5} <= nal_types
    stamps = [c[2] for c in video]
    gaps = np.diff(stamps)
    assert np.all(np.abs(gaps - 1_000_000 / fps) <= 1)
    assert camera.keyframes == len(keys)


def _nal_headers(frame: bytes) -> list[int]:
    heads, i = [], frame.find(b"\x00\x00\x01")
    while i >= 0:
        heads.append(frame[i + 3])
        i = frame.find(b"\x00\x00\x01", i + 3)
    return heads


def test_timestamps_follow_the_simulated_monotonic_clock() -> None:
    clock = SimClock(START)
    begin = clock.monotonic_ns() // 1000
    out = run_camera(SimCamera(clock, fps=10), 20)
    assert out.video[0][2] == begin
    assert out.video[-1][2] <= clock.monotonic_ns() // 1000


def test_burned_in_text_shows_time_and_ids() -> None:
    # At 160x120 the font is 1x: 9-pixel lines at rows 101-109 (time) and 110-118 (ids),
    # 6 pixels a character from column 1.
    def text_lines(officer: str, start: int) -> list[tuple[np.ndarray, np.ndarray]]:
        camera = SimCamera(SimClock(start), fps=10, device_id="cam-7", officer_id=officer)
        frames = decode_video([c[0] for c in run_camera(camera, 25).video])
        return [(f[101:110, 1:139].astype(int), f[110:119, 1:67].astype(int)) for f in frames]

    def differ(x: np.ndarray, y: np.ndarray) -> bool:  # by a character's worth of pixels
        changed = int((np.abs(x - y) > 100).sum())
        assert changed >= 8 or changed <= 2, changed
        return changed >= 8

    start = parse_utc("2026-11-27T08:59:59.000000Z")  # 09:00:00 a second later
    a = text_lines("A1024", start)
    # A second later, the clock digits differ; the ids do not; the next frame's millis do.
    assert differ(a[0][0], a[10][0]) and not differ(a[0][1], a[10][1])
    assert differ(a[0][0], a[1][0])
    # The same time with another officer: only the id line differs.
    b = text_lines("B2048", start)
    assert not differ(a[0][0], b[0][0]) and differ(a[0][1], b[0][1])
    # The text is light on a dark box, whatever the scene behind it.
    assert a[0][0].min() < 40 and a[0][0].max() > 200


def test_audio_is_aac_in_time_order_with_video() -> None:
    mic = SimMicrophone()
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10, audio=True, microphone=mic)
    clock.at(clock.monotonic_ns() + 3 * NS, mic.fail)  # at 3 s of simulated time
    out = Recorder()
    camera.start(out)
    assert camera.wait_frames(60, timeout=30)
    camera.stop()
    stamps = [c[2] for c in out.calls]
    assert stamps == sorted(stamps)
    audio = out.audio
    # 16 kHz, 1024 samples a packet: 15.6 packets per second of video.
    seconds = len(out.video) / 10
    assert abs(len(audio) - seconds * 16_000 / 1024) <= 3
    assert camera.audio_frames == len(audio)
    samples = decode_audio(camera, [c[0] for c in audio])
    assert len(samples) >= 1024 * (len(audio) - 2)
    first, last = samples[: 2 * 16_000], samples[-16_000:]
    assert math.sqrt(float(np.mean(first**2))) > 0.05  # the tone while the mic works
    assert math.sqrt(float(np.mean(last**2))) < 0.005  # silence once it has failed
    assert not mic.healthy()


@needs_ffprobe
def test_audio_and_video_mux_into_mpeg_ts(tmp_path: Path) -> None:
    """The recipe a recorder uses: PyAV muxes both streams into a .ts that ffprobe reads."""
    camera = SimCamera(SimClock(START), fps=10, audio=True)
    out = run_camera(camera, 30)
    path = tmp_path / "clip.ts"
    with av.open(str(path), "w", format="mpegts") as ts:
        vs = ts.add_stream("h264", rate=10)
        vs.width, vs.height = camera.width, camera.height
        aus = ts.add_stream("aac", rate=camera.audio_sample_rate)
        aus.codec_context.extradata = camera.audio_extradata
        t0 = out.calls[0][2]
        for frame, key, stamp, is_audio in out.calls:
            packet = av.Packet(frame)
            packet.stream = aus if is_audio else vs
            packet.time_base = Fraction(1, 1_000_000)
            packet.pts = packet.dts = stamp - t0
            packet.is_keyframe = key
            ts.mux(packet)
    info = ffprobe(path, "-count_frames", "-show_streams")
    kinds = {s["codec_name"]: int(s["nb_read_frames"]) for s in info["streams"]}
    assert kinds["h264"] == len(out.video)
    assert kinds["aac"] >= len(out.audio) - 2


def _write_wav(path: Path, seconds: float, rate: int = 22_050, freq: float = 1000.0) -> None:
    n = int(seconds * rate)
    data = (0.5 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.tobytes())


def test_audio_from_a_wav_file_is_resampled_and_looped(tmp_path: Path) -> None:
    wav_path = tmp_path / "street.wav"
    _write_wav(wav_path, 0.7)
    camera = SimCamera(SimClock(START), fps=10, audio=True, audio_source=wav_path)
    out = run_camera(camera, 30)
    samples = decode_audio(camera, [c[0] for c in out.audio])
    assert len(samples) > 2.5 * 16_000  # longer than the file: looped
    spectrum = np.abs(np.fft.rfft(samples[4096 : 4096 + 16_000]))
    assert abs(np.argmax(spectrum) - 1000) <= 2  # 1 kHz, at 16 kHz: bin = Hz


@needs_ffprobe
def test_video_from_a_file_is_scaled_and_looped(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=10",
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            str(src),
        ],
        check=True,
        timeout=60,
    )
    camera = SimCamera(SimClock(START), width=160, height=120, fps=10, source=src)
    out = run_camera(camera, 25)  # more frames than the file has
    frames = decode_frames([c[0] for c in out.video])
    assert len(frames) == len(out.video)
    chroma = frames[15].to_ndarray()[120:]  # U and V rows of yuv420p
    assert chroma.std() > 10  # the test source's colours, not the grey synthetic scene
    assert (frames[0].width, frames[0].height) == (160, 120)


@needs_ffprobe
def test_capture_jpeg_is_a_jpeg_while_video_runs(tmp_path: Path) -> None:
    camera = SimCamera(SimClock(START), width=160, height=120, fps=10, device_id="cam-7")
    out = Recorder()
    camera.start(out)
    assert camera.wait_frames(5)
    jpeg = camera.capture_jpeg()
    assert camera.wait_frames(camera.frames + 5)
    camera.stop()
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg)
    stream = ffprobe(path, "-show_streams")["streams"][0]
    assert stream["codec_name"] == "mjpeg"
    assert (stream["width"], stream["height"]) == (160, 120)
    assert struct.unpack(">H", jpeg[2:4])[0] >> 8 == 0xFF
    # A camera that is not running still takes a photo.
    assert camera.capture_jpeg()[:2] == b"\xff\xd8"


def test_freeze_stops_delivery_and_resume_restarts_with_a_keyframe() -> None:
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10, audio=True)
    out = Recorder()
    camera.start(out)
    assert camera.wait_frames(15)
    camera.freeze()
    frozen_at = clock.monotonic_ns()
    assert clock.wait_until(frozen_at + NS, timeout=10)  # time goes on while frozen
    count = len(out.calls)
    with pytest.raises(TimeoutError):
        camera.capture_jpeg()
    assert clock.wait_until(frozen_at + 3 * NS, timeout=10)
    assert len(out.calls) == count  # nothing delivered, video or audio
    last = out.video[-1][2]
    camera.resume()
    assert camera.wait_frames(camera.frames + 12)
    camera.stop()
    after = [c for c in out.video if c[2] > last]
    assert after[0][1] is True  # a keyframe first
    assert after[0][2] - last >= 2_000_000  # the gap shows in the timestamps
    stamps = [c[2] for c in out.calls]
    assert stamps == sorted(stamps)


def test_camera_drives_a_fast_clock_far_faster_than_real_time() -> None:
    clock = SimClock(START)
    wall = time.monotonic()
    run_camera(SimCamera(clock, width=160, height=120, fps=10, audio=True), 3000)
    real = time.monotonic() - wall
    assert clock.elapsed_s() >= 300
    assert clock.elapsed_s() / real > 60  # 8 hours in well under 3 minutes needs > 160


def test_paced_clock_paces_the_camera() -> None:
    clock = SimClock(START, speed=20)
    camera = SimCamera(clock, fps=10)
    out = Recorder()
    wall = time.monotonic()
    camera.start(out)
    assert camera.wait_frames(41)  # 4 simulated seconds = 0.2 s of real time
    real = time.monotonic() - wall
    camera.stop()
    assert 0.15 < real < 3
    assert clock.elapsed_s() >= 4


def test_stop_is_prompt_and_final() -> None:
    camera = SimCamera(SimClock(START, speed=1), fps=10)
    out = Recorder()
    camera.start(out)
    assert camera.wait_frames(2)
    wall = time.monotonic()
    camera.stop()
    assert time.monotonic() - wall < 1
    assert not camera.running and out.after_stop == 0
    with pytest.raises(ValueError):
        SimCamera(SimClock(START), width=161)


def test_a_clock_callback_on_the_camera_thread_can_stop_the_camera() -> None:
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10)
    out = Recorder()
    clock.at(clock.monotonic_ns() + 2 * NS, camera.stop)  # runs in the camera's thread
    camera.start(out)
    assert out.stop_called.wait(10)
    clock.sleep(5)  # the camera no longer drives time: this sleeper moves it on itself
    assert out.stopped == 1 and out.after_stop == 0 and not camera.running
    assert 19 <= len(out.video) <= 21


def test_stop_does_not_deadlock_with_a_callback_waiting_for_the_stopper() -> None:
    """A scenario event (clock callback, camera thread) waits for the recorder's thread,
    which is busy stopping the camera: stop() must return at once, not after its timeout."""
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10)
    out = Recorder()
    in_callback, stopped = threading.Event(), threading.Event()

    def event() -> None:  # what a simulator's "sync with the recorder" looks like
        in_callback.set()
        stopped.wait(10)

    clock.at(clock.monotonic_ns() + NS, event)
    camera.start(out)
    assert in_callback.wait(10)
    frames = len(out.video)
    wall = time.monotonic()
    camera.stop()
    stopped.set()
    assert time.monotonic() - wall < 1
    clock.sleep(3)  # the old thread has left; time moves on without it
    assert len(out.video) == frames and out.after_stop == 0
    camera.start(out)  # a restart works at once
    assert camera.wait_frames(camera.frames + 5)
    camera.stop()
    assert out.started == out.stopped == 2


def test_a_photo_asked_for_while_a_clock_callback_holds_time_still(tmp_path: Path) -> None:
    """A scenario event on the camera's thread waits for the thread taking the photo."""
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10, device_id="cam-7")
    out = Recorder()
    photos: list[bytes] = []
    done = threading.Event()

    def event() -> None:
        taker = threading.Thread(target=lambda: photos.append(camera.capture_jpeg()))
        taker.start()
        taker.join(10)
        done.set()

    clock.at(clock.monotonic_ns() + NS, event)
    camera.start(out)
    assert done.wait(10)
    camera.stop()
    assert len(photos) == 1 and photos[0][:2] == b"\xff\xd8"
    decoded = list(av.open(io.BytesIO(photos[0])).decode(video=0))
    assert (decoded[0].width, decoded[0].height) == (160, 120)
