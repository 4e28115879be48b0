"""One contract, every camera backend: what ``firmware.hardware.Camera`` promises the
recorder, checked the same way on the simulator's twin (SimCamera), on the device backend
(firmware/pi.py) over the fake picamera2, and - marked ``hardware`` - on a real board.

The simulator may not keep a contract the device will not keep: the same calls, from the
same kind of threads, with the same argument shapes.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from pikit import fake_board_imported, on_a_pi

from evidence.clock import SystemClock
from evidence.osd import Overlay
from firmware.segment import aac_config

WIDTH, HEIGHT, FPS = 320, 180, 20


@dataclass
class Call:
    frame: Any
    keyframe: Any
    timestamp: Any
    packet: Any
    audio: Any
    thread: int
    now_us: int


@dataclass
class ContractOutput:
    """An Output that records every call and whether two ever overlapped."""

    clock: Any
    calls: list[Call] = field(default_factory=list)
    starts: list[tuple[int, int]] = field(default_factory=list)  # (thread, calls so far)
    stops: list[tuple[int, int]] = field(default_factory=list)
    overlapped: int = 0
    after_stop: int = 0  # calls that came after stop() had returned
    stopped: bool = False

    def __post_init__(self) -> None:
        self._busy = threading.Lock()
        self._cond = threading.Condition()

    def start(self) -> None:
        self.starts.append((threading.get_ident(), len(self.calls)))

    def stop(self) -> None:
        self.stops.append((threading.get_ident(), len(self.calls)))

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if not self._busy.acquire(blocking=False):
            self.overlapped += 1
            self._busy.acquire()
        try:
            if self.stopped:
                self.after_stop += 1
            call = Call(frame, keyframe, timestamp, packet, audio, threading.get_ident(), 0)
            call.now_us = self.clock.monotonic_ns() // 1000
            with self._cond:
                self.calls.append(call)
                self._cond.notify_all()
        finally:
            self._busy.release()

    def video(self) -> list[Call]:
        return [c for c in list(self.calls) if not c.audio]

    def audio(self) -> list[Call]:
        return [c for c in list(self.calls) if c.audio]

    def wait_for(self, video: int, audio: int = 0, timeout: float = 30.0) -> None:
        def enough() -> bool:
            return len(self.video()) >= video and len(self.audio()) >= audio

        with self._cond:
            assert self._cond.wait_for(enough, timeout), (len(self.video()), len(self.audio()))


@dataclass
class Backend:
    name: str
    camera: Any
    clock: Any
    ids: str


def _sim() -> Iterator[Backend]:
    from simulator.camera import SimCamera
    from simulator.clock import SimClock

    clock = SimClock(speed=1.0)
    camera = SimCamera(
        clock,
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        keyframe_interval=FPS // 2,
        audio=True,
        device_id="cam-7",
        officer_id="B2",
    )
    yield Backend("sim", camera, clock, "CAM-7 B2")


def _pi(clock: Any) -> Backend:
    from firmware.pi import PiCamera

    camera = PiCamera(
        clock,
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        bitrate=500_000,
        keyframe_period_s=0.5,
        audio=True,
        audio_sample_rate=16000,
        audio_channels=1,
        device_id="cam-7",
        officer_id="B2",
    )
    return Backend("pi", camera, clock, "CAM-7 B2")


def _pi_fake() -> Iterator[Backend]:
    with fake_board_imported(FAKE_PICAMERA2_MIC="tone"):
        yield _pi(SystemClock())


def _pi_board() -> Iterator[Backend]:
    yield _pi(SystemClock())


@pytest.fixture(
    params=[
        pytest.param(_sim, id="sim"),
        pytest.param(_pi_fake, id="pi-fake"),
        pytest.param(
            _pi_board,
            id="pi-board",
            marks=[
                pytest.mark.hardware,
                pytest.mark.skipif(not on_a_pi(), reason="needs the camera board"),
            ],
        ),
    ]
)
def backend(request) -> Iterator[Backend]:
    gen = request.param()
    made = next(gen)
    try:
        yield made
    finally:
        made.camera.stop()
        gen.close()


def run(backend: Backend, video: int = 20, audio: int = 10) -> ContractOutput:
    out = ContractOutput(backend.clock)
    backend.camera.start(out)
    out.wait_for(video, audio)
    stop(backend, out)
    return out


def stop(backend: Backend, out: ContractOutput) -> None:
    backend.camera.stop()
    out.stopped = True


def nal_types(unit: bytes) -> list[int]:
    types, i = [], unit.find(b"\x00\x00\x01")
    while i >= 0:
        types.append(unit[i + 3] & 0x1F)
        i = unit.find(b"\x00\x00\x01", i + 3)
    return types


def test_the_camera_declares_its_format(backend: Backend) -> None:
    cam = backend.camera
    assert (cam.width, cam.height, cam.fps) == (WIDTH, HEIGHT, FPS)
    assert cam.audio is True and (cam.audio_sample_rate, cam.audio_channels) == (16000, 1)
    assert type(cam.audio_extradata) is bytes


def test_start_and_stop_call_the_output_around_every_frame(backend: Backend) -> None:
    me = threading.get_ident()
    out = run(backend)
    assert out.starts == [(me, 0)]  # in the caller's thread, before any frame
    assert len(out.stops) == 1 and out.stops[0][1] == len(out.calls)  # after the last one
    codec = av.CodecContext.create("h264", "r")
    assert [f for c in out.video() for f in codec.decode(av.Packet(c.frame))]
    assert out.after_stop == 0  # nothing after stop() returned, while the frames decoded


def test_frames_come_from_the_cameras_threads_one_call_at_a_time(backend: Backend) -> None:
    out = run(backend)
    me = threading.get_ident()
    assert all(c.thread != me for c in out.calls)
    assert out.overlapped == 0


def test_argument_shapes(backend: Backend) -> None:
    out = run(backend)
    for c in out.calls:
        assert type(c.frame) is bytes and c.frame, c
        assert type(c.keyframe) is bool and type(c.audio) is bool
        assert type(c.timestamp) is int
        if c.audio:
            assert c.keyframe is True


def test_video_is_annex_b_h264_with_headers_at_every_keyframe(backend: Backend) -> None:
    video = run(backend, video=25).video()
    assert video[0].keyframe
    keys = [i for i, c in enumerate(video) if c.keyframe]
    assert max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= FPS  # at least 1/s
    for c in video:
        types = nal_types(c.frame)
        assert c.frame.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        if c.keyframe:
            assert {7, 8, 5} <= set(types), types  # SPS, PPS, IDR
        else:
            assert 5 not in types
    codec = av.CodecContext.create("h264", "r")
    frames = [f for c in video for f in codec.decode(av.Packet(c.frame))]
    assert len(frames) >= len(video) - 2 and (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)


def test_timestamps_are_the_clocks_monotonic_microseconds(backend: Backend) -> None:
    out = run(backend, video=25, audio=15)
    video = out.video()
    stamps = [c.timestamp for c in video]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # A frame period apart, or whole periods where frames were dropped (a loaded machine
    # delivers late; the sensor and the twin stamp each frame on their own schedule).
    period = 1_000_000 / FPS
    gaps = [(b - a) / period for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(g >= 0.75 and abs(g - round(g)) < 0.25 for g in gaps), gaps
    for c in out.calls:  # the frame's instant: delivered after it, within a second
        assert 0 <= c.now_us - c.timestamp < 1_000_000, (c.now_us, c.timestamp, c.audio)
    audio = [c.timestamp for c in out.audio()]
    assert audio == sorted(audio)
    assert abs(audio[0] - stamps[0]) < 500_000  # one clock for audio and video


def test_audio_is_raw_aac_at_the_declared_rate(backend: Backend) -> None:
    cam = backend.camera
    packets = [c.frame for c in run(backend, video=20, audio=30).audio()]
    assert not any(p[0] == 0xFF and p[1] & 0xF0 == 0xF0 for p in packets)  # no ADTS header
    codec = av.CodecContext.create("aac", "r")
    codec.extradata = cam.audio_extradata or aac_config(cam.audio_sample_rate, cam.audio_channels)
    pcm = [f for p in packets for f in codec.decode(av.Packet(p))]
    assert (codec.sample_rate, codec.layout.nb_channels) == (16000, 1)
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in pcm])
    assert len(samples) >= 1024 * (len(packets) - 2) and np.abs(samples).max() > 0.01


def test_a_restart_goes_on_from_where_it_stopped(backend: Backend) -> None:
    out = ContractOutput(backend.clock)
    backend.camera.start(out)
    out.wait_for(10, 5)
    backend.camera.stop()
    before = out.video()
    backend.camera.start(out)
    out.wait_for(len(before) + 10, 10)
    stop(backend, out)
    after = out.video()[len(before) :]
    assert after[0].keyframe and after[0].timestamp > before[-1].timestamp
    assert len(out.starts) == len(out.stops) == 2 and out.after_stop == 0


def test_a_photo_while_recording_is_a_jpeg_with_the_burned_in_text(backend: Backend) -> None:
    out = ContractOutput(backend.clock)
    backend.camera.start(out)
    out.wait_for(5)
    jpeg = backend.camera.capture_jpeg()
    out.wait_for(len(out.video()) + 5)  # video goes on
    stop(backend, out)
    assert jpeg[:2] == b"\xff\xd8"
    with av.open(io.BytesIO(jpeg)) as still:
        frame = next(still.decode(video=0))
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    plane = frame.to_ndarray(format="gray")
    stamp, ids = Overlay(WIDTH, HEIGHT).read(plane, len(backend.ids))
    assert ids == backend.ids and stamp[:2] == "20" and stamp[10] == " "
