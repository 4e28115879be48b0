"""The simulated camera: real H.264 (and AAC) from synthetic or file frames, picamera2-style.

:class:`SimCamera` implements ``firmware.hardware.Camera``. Use::

    clock = SimClock(start_utc_ns)                 # simulator.clock
    camera = SimCamera(clock, width=160, height=120, fps=10, audio=True,
                       device_id="cam-0001", officer_id="A1024")
    camera.start(output)     # calls output.start(), then outputframe(...) from its thread
    ...
    jpeg = camera.capture_jpeg()
    camera.stop()            # last outputframe has returned; then calls output.stop()

What ``output.outputframe(frame, keyframe, timestamp, packet, audio)`` receives, from the
camera's own thread (named ``sim-camera``), exactly as picamera2's encoder calls it:

- video: ``frame`` = one H.264 access unit, Annex B, SPS/PPS repeated before every IDR;
  ``keyframe`` True for IDR frames (one every ``keyframe_interval`` frames, default ``fps``
  = one per second, and the first frame after start or after a freeze); no B-frames, so
  decode order = presentation order.
- audio (``audio=True``): ``frame`` = one raw AAC-LC packet (no ADTS header; the decoder
  config is ``camera.audio_extradata``), ``keyframe`` True.
- ``timestamp`` = microseconds on the *simulated monotonic* clock (``clock.monotonic_ns()
  // 1000`` at the frame's instant); video frames are exactly 1/fps apart. Audio and video
  packets are delivered interleaved in non-decreasing timestamp order.
- ``packet`` = the ``av.Packet`` itself (its ``pts`` counts in ``packet.time_base``), for
  outputs that mux with PyAV.

Time: with an as-fast-as-possible clock the camera *drives* time (advances it one frame
period per frame, so a shift runs as fast as frames encode); with a paced clock it waits
for each frame's instant. Either way it keeps ticking while frozen. ``outputframe`` may
block to apply back-pressure (e.g. a bounded queue); time then waits too.

Burned into each frame before encoding, by :class:`evidence.osd.Overlay` as on the camera
(bottom-left, 5x7 font scaled with the frame): ``YYYY-MM-DD HH:MM:SS.mmm`` (simulated UTC)
and ``<device_id> <officer_id>``.
Set ``camera.officer_id`` at any time; it shows from the next frame.

Sources: synthetic moving pattern (default) or ``source=<video file>`` (decoded with PyAV,
scaled to width x height, one source frame per camera frame, looped). Audio: a synthetic
tone, or ``audio_source=<WAV file>`` (see :mod:`simulator.audio`), with whatever the
``microphone`` (a :class:`simulator.audio.SimMicrophone`) hears of the speaker mixed in at
the simulated instant it played; silence while the microphone has failed.

Faults: ``freeze()`` stops delivery (video and audio) while time keeps running;
``resume()`` restarts it with a keyframe; ``frozen`` tells which. ``frames`` and
``audio_frames`` count delivered packets; ``wait_frames(n, timeout)`` waits for a count.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from evidence.osd import Overlay, osd_lines
from simulator.audio import AacTrack, SimMicrophone
from simulator.clock import NS, SimClock

_log = logging.getLogger(__name__)

_US = Fraction(1, 1_000_000)


class CameraStopped(RuntimeError):
    """The camera thread ended on an error (see ``camera.error``)."""


class _FileFrames:
    """Frames of a video file, scaled to the camera's size, looped forever."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path = path
        self.width, self.height = width, height
        self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"{path}: no video stream")
        self._frames = self._decode()

    def _decode(self):
        while True:
            got = False
            for frame in self._container.decode(video=0):
                got = True
                yield frame.reformat(width=self.width, height=self.height, format="yuv420p")
            if not got:
                raise ValueError(f"{self.path}: no decodable video frames")
            self._container.seek(0)

    def next(self) -> av.VideoFrame:
        return next(self._frames)

    def close(self) -> None:
        self._container.close()


class SimCamera:
    """A camera twin that encodes real H.264/AAC and feeds a picamera2-style Output."""

    def __init__(
        self,
        clock: SimClock,
        *,
        width: int = 160,
        height: int = 120,
        fps: int = 10,
        bitrate: int | None = None,
        keyframe_interval: int | None = None,
        audio: bool = False,
        audio_sample_rate: int = 16_000,
        audio_channels: int = 1,
        audio_bitrate: int = 32_000,
        device_id: str = "",
        officer_id: str = "",
        source: str | Path | None = None,
        audio_source: str | Path | None = None,
        microphone: SimMicrophone | None = None,
        preset: str = "ultrafast",
        threads: int | None = None,
        noise: int = 0,
    ) -> None:
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError(f"frame size must be even and at least 16x16, not {width}x{height}")
        if not 1 <= fps <= 120:
            raise ValueError(f"fps must be 1..120, not {fps}")
        if audio_channels not in (1, 2):
            raise ValueError("audio_channels must be 1 or 2")
        self.clock = clock
        self.width, self.height, self.fps = width, height, fps
        self.bitrate = bitrate
        self.keyframe_interval = keyframe_interval or fps
        if not 1 <= self.keyframe_interval <= fps:
            raise ValueError("keyframe_interval must be 1..fps (a keyframe at least every second)")
        self.audio = audio
        self.audio_sample_rate = audio_sample_rate
        self.audio_channels = audio_channels
        self.audio_bitrate = audio_bitrate
        self.device_id = device_id
        self.officer_id = officer_id
        self.source = Path(source) if source is not None else None
        self.audio_source = Path(audio_source) if audio_source is not None else None
        self.microphone = microphone if microphone is not None else SimMicrophone()
        self.preset = preset
        self.threads = threads or (1 if width * height <= 640 * 480 else 2)
        self.frames = 0
        self.audio_frames = 0
        self.keyframes = 0
        self.error: BaseException | None = None
        self.audio_extradata: bytes = b""
        self._frozen = threading.Event()
        self._force_key = False
        self._current: _Run | None = None
        self._count_cond = threading.Condition()
        self._photo_lock = threading.Lock()
        self._photo_request: list[Any] | None = None
        self._render = _Renderer(width, height, noise)
        self._thread_runs = 0
        self._waiting_for = 0  # frame count a wait_frames() caller waits for
        if audio:
            # Made now so that ``audio_extradata`` is known before start().
            self._track = self._open_audio()

    # -- public API ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        run = self._current
        return run is not None and run.thread.is_alive()

    @property
    def frozen(self) -> bool:
        return self._frozen.is_set()

    def freeze(self) -> None:
        """Fault: stop delivering frames (the camera hangs); time keeps running."""
        if not self._frozen.is_set():
            _log.info("camera frozen at %.3f s", self.clock.elapsed_s())
        self._frozen.set()

    def resume(self) -> None:
        """End a freeze: delivery restarts with a keyframe."""
        if self._frozen.is_set():
            _log.info("camera resumed at %.3f s", self.clock.elapsed_s())
            self._force_key = True
        self._frozen.clear()

    def start(self, output: Any) -> None:
        """Call ``output.start()`` and deliver frames to it from the camera thread."""
        if self.running:
            raise RuntimeError("camera already started")
        self.error = None
        output.start()
        run = _Run(output)
        run.thread = threading.Thread(target=self._run, args=(run,), name="sim-camera", daemon=True)
        self._current = run
        run.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; when this returns no more ``outputframe`` calls come, then ``output.stop()``.

        It does not wait for a camera thread that is busy running clock callbacks (a
        scheduled fault, a scenario event): that thread checks the stop flag before its
        next frame, and its callback may itself be waiting for the caller of stop()."""
        run, self._current = self._current, None
        if run is None:
            return
        run.stop.set()
        if run.thread is threading.current_thread() or run.in_callbacks:
            _log.debug("camera stopping without a join (called from clock callbacks)")
        else:
            run.thread.join(timeout)
            if run.thread.is_alive():
                _log.warning("camera thread did not stop within %.1f s", timeout)
        run.output.stop()

    def wait_frames(self, count: int, timeout: float = 10.0) -> bool:
        """Wait (real seconds) until ``count`` video frames have been delivered in total."""
        with self._count_cond:
            self._waiting_for = count
            try:
                self._count_cond.wait_for(lambda: self.frames >= count or not self.running, timeout)
            finally:
                self._waiting_for = 0
            return self.frames >= count

    def capture_jpeg(self, timeout: float = 5.0) -> bytes:
        """A JPEG of the current frame; raises TimeoutError while the camera is frozen."""
        if self._frozen.is_set():
            raise TimeoutError("camera delivers no frames")
        if not self.running:
            frame = self._render.frame(self._burn_text(self.clock.time_ns()), None)
            return _encode_jpeg(frame)
        run = self._current
        if run is not None and run.in_callbacks and self.clock.speed is None:
            # Time stands still while the camera thread runs clock callbacks, and one of
            # them may be waiting for this caller: the frame just delivered is current.
            return _encode_jpeg(self._render.last)
        request: list[Any] = [threading.Event(), None]
        with self._photo_lock:
            self._photo_request = request
        if not request[0].wait(timeout):
            with self._photo_lock:
                self._photo_request = None
            raise TimeoutError("camera delivered no frame for the photo")
        if isinstance(request[1], BaseException):
            raise request[1]
        return request[1]

    # -- encoder set-up ----------------------------------------------------------------

    def _open_video(self) -> av.CodecContext:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = self.width, self.height
        enc.pix_fmt = "yuv420p"
        enc.framerate = Fraction(self.fps, 1)
        enc.time_base = _US
        enc.gop_size = self.keyframe_interval
        enc.max_b_frames = 0
        enc.thread_count = self.threads
        k = self.keyframe_interval
        params = f"repeat-headers=1:annexb=1:keyint={k}:min-keyint={k}:scenecut=0:bframes=0"
        options = {"preset": self.preset, "tune": "zerolatency", "forced-idr": "1"}
        if self.bitrate:
            kbit = max(self.bitrate // 1000, 1)
            enc.bit_rate = self.bitrate
            params += f":vbv-maxrate={kbit}:vbv-bufsize={kbit}"
        else:
            options["crf"] = "23"
        options["x264-params"] = params
        enc.options = options
        enc.open()
        return enc

    def _open_audio(self) -> AacTrack:
        track = AacTrack(
            self.audio_sample_rate,
            self.audio_channels,
            self.audio_bitrate,
            self.audio_source,
            self.microphone,
        )
        self.audio_extradata = track.extradata
        return track

    def _burn_text(self, utc_ns: int) -> tuple[str, str]:
        return osd_lines(utc_ns, self.device_id, self.officer_id)

    # -- the camera thread -----------------------------------------------------------------

    def _run(self, run: _Run) -> None:
        files = None
        try:
            with self.clock.driving() if self.clock.speed is None else _nothing():
                if self.source is not None:
                    files = _FileFrames(self.source, self.width, self.height)
                self._loop(run, files)
        except BaseException as exc:  # report any failure to whoever waits on us
            self.error = exc
            _log.exception("camera thread failed")
        finally:
            if files is not None:
                files.close()
            with self._count_cond:
                self._count_cond.notify_all()
            if self._current in (None, run):
                self._answer_photo(CameraStopped("camera stopped"))

    def _loop(self, run: _Run, files: _FileFrames | None) -> None:
        clock, output, stop = self.clock, run.output, run.stop
        video = self._open_video()
        track = self._track if self.audio else None
        if track is not None and self._thread_runs > 0:
            track = self._track = self._open_audio()  # a fresh track for each start
        self._thread_runs += 1
        drives = clock.speed is None  # as fast as possible: this thread moves time on
        rate = self.audio_sample_rate
        t0 = clock.monotonic_ns()
        t0_us = t0 // 1000
        if track is not None:
            track.origin_ns = t0  # the microphone hears the speaker on this timeline
        pending: deque[tuple[int, av.Packet]] = deque()  # encoded audio not yet delivered
        last_us = -1  # timestamp of the last delivery: audio never goes back in time
        self._force_key = True
        i = 0
        while not stop.is_set():
            t = t0 + i * NS // self.fps
            run.in_callbacks = True
            if drives:
                clock.advance_to(t)  # may run clock callbacks (faults, scenario events)
            elif not clock.wait_until(t, cancel=stop):
                break
            run.in_callbacks = False
            if stop.is_set():
                break
            i += 1
            t_us = t // 1000
            if self._frozen.is_set():
                if track is not None:
                    # A frozen camera delivers nothing: the interval's sound is lost and
                    # the audio pts jump with the gap, as the video timestamps do.
                    track.skip_to((t - t0) * rate // NS)
                    pending.clear()
                continue
            if track is not None:
                # Encode a little ahead so that every packet stamped at or before this
                # frame is out of the encoder, then deliver those, in time order.
                for packet in track.packets_until((t - t0) * rate // NS + track.frame_size):
                    pending.append((t0_us + packet.pts * 1_000_000 // rate, packet))
                while pending and pending[0][0] <= t_us:
                    ts, packet = pending.popleft()
                    if ts >= last_us:
                        output.outputframe(bytes(packet), True, ts, packet, True)
                        self.audio_frames += 1
                        last_us = ts
            source = files.next() if files is not None else None
            vframe = self._render.frame(self._burn_text(t + clock.utc_offset_ns()), source)
            vframe.pts = t_us - t0_us
            if self._force_key:
                vframe.pict_type = av.video.frame.PictureType.I
                self._force_key = False
            else:
                vframe.pict_type = av.video.frame.PictureType.NONE
            self._serve_photo(vframe)
            for packet in video.encode(vframe):
                key = bool(packet.is_keyframe)
                last_us = t0_us + packet.pts
                output.outputframe(bytes(packet), key, last_us, packet, False)
                self.frames += 1
                self.keyframes += key
                if self._waiting_for and self.frames >= self._waiting_for:
                    with self._count_cond:
                        self._count_cond.notify_all()

    # -- photos ------------------------------------------------------------------------

    def _serve_photo(self, frame: av.VideoFrame) -> None:
        if self._photo_request is None:
            return
        try:
            result: Any = _encode_jpeg(frame)
        except Exception as exc:  # the caller gets the error, the video goes on
            result = exc
        self._answer_photo(result)

    def _answer_photo(self, result: Any) -> None:
        with self._photo_lock:
            request, self._photo_request = self._photo_request, None
        if request is not None:
            request[1] = result
            request[0].set()


class _Run:
    """One start..stop of the camera: its output, stop flag and thread."""

    def __init__(self, output: Any) -> None:
        self.output = output
        self.stop = threading.Event()
        self.in_callbacks = False  # inside clock.advance_to/wait_until (callbacks may run)
        self.thread: threading.Thread


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _encode_jpeg(frame: av.VideoFrame) -> bytes:
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qscale": "3"}
    enc.open()
    still = frame.reformat(format="yuvj420p")
    still.pts = 0
    data = b"".join(bytes(p) for p in enc.encode(still))
    data += b"".join(bytes(p) for p in enc.encode(None))
    return data


class _Renderer:
    """Draws frames into one reused yuv420p VideoFrame: background + burned-in text."""

    def __init__(self, width: int, height: int, noise: int = 0) -> None:
        self.width, self.height = width, height
        self._frame = av.VideoFrame(width, height, "yuv420p")
        planes = self._frame.planes
        self._y = np.frombuffer(planes[0], dtype=np.uint8).reshape(height, planes[0].line_size)
        self._u = np.frombuffer(planes[1], dtype=np.uint8).reshape(height // 2, planes[1].line_size)
        self._v = np.frombuffer(planes[2], dtype=np.uint8).reshape(height // 2, planes[2].line_size)
        self._u[:] = 128
        self._v[:] = 128
        # A synthetic scene, twice as wide as the frame: diagonal bars + a soft gradient.
        # Each frame shows a window of it that slides by a few pixels.
        yy, xx = np.mgrid[0:height, 0 : 2 * width]
        scene = 60 + 60 * ((xx + yy) // max(width // 8, 2) % 2) + (100 * yy // height)
        self._scene = scene.astype(np.uint8)
        self._step = max(width // 80, 1)
        # Optional sensor noise (0..255 amplitude): makes the encoder work as hard as on a
        # real scene, so a bit rate such as 8 Mbit/s at 1080p is actually reached.
        self._noise = None
        if noise:
            rng = np.random.default_rng(1)
            self._noise = rng.integers(0, min(noise, 255) + 1, (height, 3 * width), dtype=np.uint8)
            self._scene = (self._scene.astype(np.int16) * (255 - min(noise, 255)) // 255).astype(
                np.uint8
            )
        self._index = 0
        self.last = self._frame  # the frame most recently drawn
        self.overlay = Overlay(width, height)

    def frame(self, lines: tuple[str, str], source: av.VideoFrame | None) -> av.VideoFrame:
        w, h = self.width, self.height
        y = self._y
        if source is None:
            shift = (self._index * self._step) % w
            self._index += 1
            y[:, :w] = self._scene[:, shift : shift + w]
            if self._noise is not None:
                n = (self._index * 7919) % (2 * w)
                np.add(y[:, :w], self._noise[:, n : n + w], out=y[:, :w])
        else:
            for plane, dest, rows in ((0, y, h), (1, self._u, h // 2), (2, self._v, h // 2)):
                src = source.planes[plane]
                cols = w if plane == 0 else w // 2
                data = np.frombuffer(src, dtype=np.uint8).reshape(rows, src.line_size)
                dest[:, :cols] = data[:, :cols]
        self.overlay.draw(y[:, :w], lines)
        return self._frame
