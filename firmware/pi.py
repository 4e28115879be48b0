"""The device backend: Picamera2 + the VC4's H264Encoder, the I2S microphone through ALSA,
the board's I2C drivers and RTC.

Device-only. ``picamera2`` needs libcamera (Raspberry Pi OS), so it is imported lazily, when
the camera starts; importing this module on a PC is harmless. Written against picamera2's
own source (raspberrypi/picamera2: ``encoders/encoder.py``, ``v4l2_encoder.py``,
``h264_encoder.py``, ``outputs/output.py``, ``request.py``) and tested against
``tests/fake_picamera2``, which keeps those conventions:

- video: the V4L2 encoder's poll thread calls ``outputframe(bytes, keyframe, ts)``;
- audio: the encoder's audio thread calls ``outputframe(None, True, ts, packet, True)``,
  the AAC in ``packet`` (a PyAV packet), after ``output._add_stream(stream, **audio_output)``;
  the encoder reads only ``audio_input``, ``audio_output`` and ``audio_sync``;
- ``ts`` is microseconds from the encoder's first frame (video) or first audio packet,
  and ``Encoder.start`` resets the video's first timestamp (not the audio's: so each start
  gets a fresh encoder here);
- the burned-in text is drawn by a ``pre_callback`` into a ``MappedArray`` of the frame.

:class:`_EncoderOutput` turns those calls into the recorder's ``firmware.hardware.Output``
contract: ``bytes`` always, timestamps on the recorder clock's monotonic microseconds (the
encoder's first frame is placed at its sensor timestamp, CLOCK_BOOTTIME), so ``start_utc``
is the wall clock and a restarted camera's timestamps continue instead of starting at zero.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np

from evidence.osd import Overlay, osd_lines

from .exc import BackendError
from .hardware import BackendOptions, HardwareParts, SettableClock
from .segment import aac_config

_log = logging.getLogger(__name__)

NS = 1_000_000_000
#: The ALSA PCM of the board's ICS-43434 (``dsnoop`` over the I2S card, with ``plug`` for
#: rate and format), defined in /etc/asound.conf by scripts/install-pi.
MIC_PCM = "bodycam_mic"
AUDIO_BITRATE_PER_CHANNEL = 32_000
#: How far a mapped sensor timestamp may lie from "now" before it is not believed.
_PLAUSIBLE_NS = 2 * NS


def _picamera2():
    try:
        from picamera2 import MappedArray, Picamera2
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output
    except ImportError as exc:
        raise BackendError(
            f"BODYCAM_CAMERA=pi needs picamera2 and libcamera (Raspberry Pi OS): {exc}"
        ) from exc
    return Picamera2, MappedArray, H264Encoder, Output


def _boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class AudioTap:
    """What the encoder's audio thread delivered, for :class:`PiMicrophone`: the last
    packets (appended from the audio thread; decoded only by the health check) and why the
    microphone path failed, if it did."""

    def __init__(self, rate: int, channels: int, keep: int = 8) -> None:
        self.rate, self.channels = rate, channels
        self.failure: str | None = None
        self.running_since_ns: int | None = None  # monotonic, while the camera runs
        self._packets: deque[tuple[int, bytes]] = deque(maxlen=keep)

    def heard(self, mono_ns: int, data: bytes) -> None:
        self._packets.append((mono_ns, data))

    def recent(self, now_ns: int, window_ns: int) -> list[bytes]:
        return [data for t, data in list(self._packets) if now_ns - t <= window_ns]

    def reset(self) -> None:
        self._packets.clear()


def _output_class(base: type) -> type:
    """The adapter between picamera2's encoder and the recorder's Output: a subclass of
    picamera2's ``Output``, which its encoders insist on, made once picamera2 is imported."""

    class EncoderOutput(base):  # type: ignore[misc, valid-type]
        def __init__(self, camera: PiCamera, target: Any, encoder: Any, audio: bool) -> None:
            super().__init__()
            self.camera = camera
            self.target = target
            self.encoder = encoder
            self.audio = audio  # False once the audio stream is not what was declared
            self.origin_us: int | None = None
            self.dropped_audio = 0
            self._lock = threading.Lock()

        def start(self) -> None:
            super().start()
            self.target.start()

        def stop(self) -> None:
            super().stop()
            self.target.stop()

        def _add_stream(self, encoder_stream: Any, codec_name: str, **kwargs: Any) -> None:
            """picamera2 tells its outputs what each stream is. The segment muxer declared
            its streams from the camera's settings, so check the encoder agrees."""
            cam = self.camera
            if encoder_stream == "video":
                size = (kwargs.get("width"), kwargs.get("height"))
                if codec_name != "h264" or size != (cam.width, cam.height):
                    raise BackendError(
                        f"encoder makes {codec_name} {size}, not h264 {(cam.width, cam.height)}"
                    )
                return
            ctx = encoder_stream.codec_context
            got = (codec_name, ctx.sample_rate, ctx.layout.nb_channels)
            want = ("aac", cam.audio_sample_rate, cam.audio_channels)
            if got != want:
                # Undecodable audio is worse than none: drop it, the microphone check says so.
                self.audio = False
                cam.tap.failure = f"audio stream is {got}, the segments declare {want}"
                _log.error("microphone: %s", cam.tap.failure)

        def outputframe(
            self,
            frame: Any,
            keyframe: bool = True,
            timestamp: Any = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            """picamera2's encoder and audio threads (serialised by its output lock):
            convert and hand on; the recorder's Output only enqueues."""
            if audio:
                if not self.audio or packet is None:
                    return
                data = bytes(packet)
            else:
                data = frame if isinstance(frame, bytes) else bytes(frame)
            origin = self.origin_us
            if origin is None:
                origin = self._origin(int(timestamp), audio)
                if origin is None:
                    self.dropped_audio += 1
                    return
            mono_us = origin + int(timestamp)
            if audio:
                self.camera.tap.heard(mono_us * 1000, data)
            self.target.outputframe(data, bool(keyframe), mono_us, None, audio)

        def _origin(self, timestamp: int, audio: bool) -> int | None:
            """Where the encoder's timestamp 0 lies on the recorder's monotonic clock: the
            sensor timestamp of the encoder's first frame. Video that cannot be placed so
            (a sensor clock that is not CLOCK_BOOTTIME) is placed at its arrival; audio
            that comes before the first frame is dropped."""
            with self._lock:
                if self.origin_us is not None:
                    return self.origin_us
                first = self.encoder.firsttimestamp
                mono = None if first is None else self.camera.sensor_to_monotonic_ns(first * 1000)
                if mono is not None:
                    self.origin_us = mono // 1000
                elif not audio:
                    now_us = self.camera.clock.monotonic_ns() // 1000
                    _log.warning("sensor time is not CLOCK_BOOTTIME: frames timed on arrival")
                    self.origin_us = now_us - timestamp
                return self.origin_us

    return EncoderOutput


class PiCamera:
    """``firmware.hardware.Camera`` on the camera module. The main stream is YUV420 (the
    H.264 block reads it; the OSD draws into its luma rows), SPS/PPS come before every
    keyframe (``repeat=True``) and a keyframe every ``keyframe_period_s`` (``iperiod``),
    so segments and the pre-event buffer can start at any keyframe. Audio: AAC-LC at
    ``audio_sample_rate``/``audio_channels`` from the ALSA PCM ``audio_device``; when it
    cannot be opened the camera records video alone and :class:`PiMicrophone` reports it
    (a ``microphone`` stoppage), it never fails to start for it."""

    def __init__(
        self,
        clock: SettableClock,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        keyframe_period_s: float,
        audio: bool,
        audio_sample_rate: int,
        audio_channels: int,
        audio_device: str = MIC_PCM,
        device_id: str = "",
        officer_id: str = "",
        photo_timeout_s: float = 2.0,
    ) -> None:
        self.clock = clock
        self.width, self.height, self.fps = width, height, fps
        self.bitrate = bitrate
        self.iperiod = max(1, round(keyframe_period_s * fps))
        self.audio = audio
        self.audio_sample_rate = audio_sample_rate
        self.audio_channels = audio_channels
        aac_config(audio_sample_rate, audio_channels)  # raises on a rate AAC cannot carry
        self.audio_extradata = b""  # segment.py writes the AAC-LC AudioSpecificConfig
        self.audio_device = audio_device
        self.device_id = device_id
        self.officer_id = officer_id
        self.photo_timeout_s = photo_timeout_s
        self.tap = AudioTap(audio_sample_rate, audio_channels)
        self.overlay = Overlay(width, height)
        self.osd_errors = 0
        self._picam2: Any = None
        self._stride = width
        self._output: Any = None
        self._lock = threading.Lock()
        self._boot_minus_mono_ns = 0

    # -- picamera2 -------------------------------------------------------------------

    def audio_input(self) -> dict[str, Any]:
        """``Encoder.audio_input``: passed to ``av.open`` by picamera2's audio thread."""
        return {
            "file": self.audio_device,
            "format": "alsa",
            "options": {
                "sample_rate": str(self.audio_sample_rate),
                "channels": str(self.audio_channels),
            },
        }

    def audio_output(self) -> dict[str, Any]:
        """``Encoder.audio_output``: passed to PyAV's ``add_stream`` (and ``_add_stream``)."""
        return {
            "codec_name": "aac",
            "rate": self.audio_sample_rate,
            "layout": "mono" if self.audio_channels == 1 else "stereo",
            "bit_rate": AUDIO_BITRATE_PER_CHANNEL * self.audio_channels,
        }

    def _open(self) -> Any:
        Picamera2, _, _, _ = _picamera2()
        try:
            picam2 = Picamera2()
            config = picam2.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameRate": self.fps},
            )
            picam2.configure(config)
        except Exception as exc:  # no camera module, cable out, libcamera error
            raise BackendError(f"camera not available: {exc}") from exc
        self._stride = picam2.stream_configuration("main")["stride"]
        picam2.pre_callback = self._draw_osd
        return picam2

    def _encoder(self, audio: bool) -> Any:
        """A fresh encoder per start: picamera2 keeps the first audio pts per object."""
        _, _, H264Encoder, _ = _picamera2()
        encoder = H264Encoder(bitrate=self.bitrate, repeat=True, iperiod=self.iperiod)
        if audio:
            encoder.audio = True
            encoder.audio_input = self.audio_input()
            encoder.audio_output = self.audio_output()
            encoder.audio_sync = 0  # the writer keeps audio and video on one clock
        return encoder

    def start(self, output: Any) -> None:
        """Start recording into ``output`` (its ``start`` is called here, in this thread).
        A microphone path that fails is logged and recorded in :attr:`tap`; the video goes
        on without audio."""
        with self._lock:
            if self._output is not None:
                raise RuntimeError("camera already started")
            if self._picam2 is None:
                self._picam2 = self._open()
            _, _, _, Output = _picamera2()
            self._boot_minus_mono_ns = _boottime_ns() - self.clock.monotonic_ns()
            self.tap.reset()
            self.tap.failure = None
            adapter = None
            if self.audio:
                encoder = self._encoder(True)
                adapter = _output_class(Output)(self, output, encoder, True)
                try:
                    self._picam2.start_encoder(encoder, adapter)
                except Exception as exc:  # the microphone path: record video without it
                    self.tap.failure = f"audio input {self.audio_device}: {exc}"
                    _log.error("microphone: %s; recording video without audio", self.tap.failure)
                    _abandon(encoder)
                    adapter = None
            if adapter is None:
                encoder = self._encoder(False)
                adapter = _output_class(Output)(self, output, encoder, False)
                self._picam2.start_encoder(encoder, adapter)
            try:
                self._picam2.start()
            except Exception as exc:
                self._picam2.stop_encoder()
                raise BackendError(f"camera did not start: {exc}") from exc
            self._output = adapter
            self.tap.running_since_ns = self.clock.monotonic_ns()

    def stop(self) -> None:
        """Stop; when this returns no more ``outputframe`` calls come (picamera2 joins its
        encoder and audio threads, then calls ``output.stop()``)."""
        with self._lock:
            if self._output is None:
                return
            self._output = None
            self.tap.running_since_ns = None
            self._picam2.stop_recording()

    def sensor_to_monotonic_ns(self, sensor_ns: int) -> int | None:
        """A sensor timestamp (CLOCK_BOOTTIME) on the recorder's monotonic clock, or None
        when it is not plausibly one (more than 2 s from now)."""
        mono = sensor_ns - self._boot_minus_mono_ns
        if abs(self.clock.monotonic_ns() - mono) > _PLAUSIBLE_NS:
            return None
        return mono

    def _draw_osd(self, request: Any) -> None:
        """picamera2's pre_callback (its camera thread, before encoding): burn the frame's
        UTC time, the device and the officer into the frame buffer itself."""
        try:
            _, MappedArray, _, _ = _picamera2()
            sensor = request.get_metadata().get("SensorTimestamp")
            mono = self.sensor_to_monotonic_ns(sensor) if sensor else None
            now_utc, now_mono = self.clock.time_ns(), self.clock.monotonic_ns()
            utc = now_utc if mono is None else now_utc - now_mono + mono
            lines = osd_lines(utc, self.device_id, self.officer_id)
            with MappedArray(request, "main") as m:
                self.overlay.draw(m.array[: self.height, : self.width], lines)
        except Exception:  # a frame without text beats no frame: picamera2 would stop
            self.osd_errors += 1
            if self.osd_errors == 1:
                _log.exception("burned-in text not drawn")

    def capture_jpeg(self) -> bytes:
        """A still from the running main stream (video keeps recording), with its text."""
        if self._picam2 is None or self._output is None:
            raise TimeoutError("camera is not running")
        array = self._picam2.capture_array("main", wait=self.photo_timeout_s)
        return jpeg_from_yuv420(array, self.width, self.height, self._stride)


def _abandon(encoder: Any) -> None:
    """Stop an encoder whose ``start`` failed half-way (upstream sets it running and starts
    its outputs before opening the audio input, and its ``stop`` then expects an audio
    thread that was never made)."""
    encoder.audio = False
    if encoder.running:
        try:
            encoder.stop()
        except Exception:
            _log.exception("could not stop the half-started encoder")


def yuv420_planes(array: np.ndarray, width: int, height: int, stride: int):
    """The Y, U and V planes (views) of a picamera2 YUV420 array ``(h * 3 // 2, stride)``."""
    flat = array.reshape(-1)
    ysize, csize = height * stride, (height // 2) * (stride // 2)
    y = flat[:ysize].reshape(height, stride)[:, :width]
    u = flat[ysize : ysize + csize].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[ysize + csize : ysize + 2 * csize].reshape(height // 2, stride // 2)[:, : width // 2]
    return y, u, v


def jpeg_from_yuv420(array: np.ndarray, width: int, height: int, stride: int) -> bytes:
    frame = av.VideoFrame(width, height, "yuvj420p")
    for plane, data in zip(frame.planes, yuv420_planes(array, width, height, stride), strict=True):
        dest = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        dest[: data.shape[0], : data.shape[1]] = data
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = width, height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qscale": "3"}
    enc.open()
    frame.pts = 0
    return b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])


class PiSpeaker:
    """``firmware.hardware.Speaker`` through pyaudio (the I2S amplifier's ALSA device)."""

    def start_wav(self, path: str) -> _Playing:
        return _Playing(lambda: self._play(path))

    @staticmethod
    def _play(path: str) -> None:
        import pyaudio  # device-only: needs portaudio

        pa = pyaudio.PyAudio()
        try:
            with wave.open(path, "rb") as wav:
                stream = pa.open(
                    format=pa.get_format_from_width(wav.getsampwidth()),
                    channels=wav.getnchannels(),
                    rate=wav.getframerate(),
                    output=True,
                )
                try:
                    while data := wav.readframes(4096):
                        stream.write(data)
                finally:
                    stream.stop_stream()
                    stream.close()
        finally:
            pa.terminate()


class _Playing:
    """A ``firmware.hardware.Playback``: pyaudio's blocking writes in a thread of their own,
    so that opening the device cannot hold up the recorder's main loop."""

    def __init__(self, play: Callable[[], None]) -> None:
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(play,), name="speaker", daemon=True)
        self._thread.start()

    def _run(self, play: Callable[[], None]) -> None:
        try:
            play()
        except Exception as exc:  # handed to wait(), in the thread that asked
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class PiMicrophone:
    """``firmware.hardware.Microphone`` from what the camera's audio thread delivers (the
    ALSA device is the encoder's; opening it a second time is not needed): unhealthy when
    the microphone path failed, when no audio came for ``window_s`` while the camera ran,
    or when the last packets decode to digital silence (a dead I2S microphone sends zeros)."""

    def __init__(self, camera: PiCamera, window_s: float = 1.0, grace_s: float = 2.0) -> None:
        self.camera = camera
        self.window_ns = int(window_s * NS)
        self.grace_ns = int(grace_s * NS)

    def healthy(self) -> bool:
        tap = self.camera.tap
        if not self.camera.audio:
            return True
        if tap.failure is not None:
            return False
        since = tap.running_since_ns
        now = self.camera.clock.monotonic_ns()
        if since is None or now - since < self.grace_ns:
            return True  # not running (the camera check covers it), or just started
        packets = tap.recent(now, self.window_ns)
        if not packets:
            return False
        codec = av.CodecContext.create("aac", "r")
        codec.extradata = aac_config(tap.rate, tap.channels)
        peak = 0.0
        for data in packets:
            try:
                for frame in codec.decode(av.Packet(data)):
                    peak = max(peak, float(np.abs(frame.to_ndarray()).max(initial=0)))
            except av.error.FFmpegError:
                return False
        return peak > 0.0


def _sysroot() -> str:
    """``BODYCAM_SYSROOT``: a folder standing for ``/`` when looking for the RTC and the
    SoC's thermal zone (bring-up on a bench, tests on a PC); empty on a camera."""
    return os.environ.get("BODYCAM_SYSROOT", "").rstrip("/")


def make_backend(config: dict[str, Any], options: BackendOptions) -> HardwareParts:
    """The device's hardware: the camera, power (fuel gauge + SoC temperature), speaker,
    microphone, clock (the system clock backed by the DS3231 RTC, restored from it now,
    through the clock helper bodycam-clock: this is the boot path) and gpiozero's default
    pin factory."""
    from .controls import GpioIndicators
    from .drivers import RtcError, device_clock, device_power

    _picamera2()  # no picamera2, no camera: say so now (the camera itself opens at start)
    root = _sysroot()
    clock = device_clock(f"{root}/dev/rtc0")
    try:
        if clock.restore():
            _log.warning("system clock was off by more than 2 s: set from the RTC")
    except RtcError as exc:  # the dock sets the time at the next docking
        _log.error("RTC not usable, system clock kept as it is: %s", exc)
    except OSError as exc:  # bodycam-clock refused or is not there: the same, logged
        _log.error("the clock helper did not restore the system clock from the RTC: %s", exc)
    cam = config["camera"]
    camera = PiCamera(
        clock,
        width=cam["width"],
        height=cam["height"],
        fps=cam["fps"],
        bitrate=cam["bitrate"],
        keyframe_period_s=cam["keyframe_period_s"],
        audio=cam["audio"],
        audio_sample_rate=cam["audio_sample_rate"],
        audio_channels=cam["audio_channels"],
        device_id=options.device_id,
        officer_id=options.officer_id,
    )
    try:
        power = device_power(thermal_path=f"{root}/sys/class/thermal/thermal_zone0/temp")
    except ImportError as exc:
        raise BackendError(str(exc)) from None
    return HardwareParts(
        clock=clock,
        camera=camera,
        power=power,
        speaker=PiSpeaker(),
        microphone=PiMicrophone(camera),
        indicators=GpioIndicators(),
        pin_factory=None,
    )
