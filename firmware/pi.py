"""The device backend: Picamera2 + H264Encoder, pyaudio, the board's I2C drivers.

Device-only. ``picamera2`` needs libcamera (Raspberry Pi OS), so it is imported lazily,
inside :class:`PiCamera`; importing this module on a PC is harmless, using it is not.
Written against picamera2's documented API (the Picamera2 manual, ch. 7 "Capturing
videos": ``H264Encoder(bitrate, repeat, iperiod)``, ``start_recording(encoder, output)``,
custom ``Output.outputframe(frame, keyframe, timestamp, packet, audio)``, audio through
``encoder.audio = True``); it cannot run here.
"""

from __future__ import annotations

import io
import logging
import wave
from typing import Any

from .exc import BackendError

_log = logging.getLogger(__name__)


def _picamera2():
    try:
        from picamera2 import Picamera2
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output
    except ImportError as exc:
        raise BackendError(
            f"BODYCAM_CAMERA=pi needs picamera2 and libcamera (Raspberry Pi OS): {exc}"
        ) from exc
    return Picamera2, H264Encoder, Output


class PiCamera:
    """``firmware.hardware.Camera`` on the camera module. picamera2's encoder thread calls
    the recorder's Output (through a thin ``picamera2.outputs.Output`` subclass, which
    picamera2 requires) with SPS/PPS repeated before every keyframe (``repeat=True``) and a
    keyframe every ``keyframe_period_s`` (``iperiod``), so segments and the pre-event
    buffer can start at any keyframe."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        keyframe_period_s: float,
        audio: bool,
        audio_sample_rate: int,
        audio_channels: int,
    ) -> None:
        Picamera2, H264Encoder, _ = _picamera2()
        self.width, self.height, self.fps = width, height, fps
        self.audio = audio
        self.audio_sample_rate = audio_sample_rate
        self.audio_channels = audio_channels
        self._picam2 = Picamera2()
        config = self._picam2.create_video_configuration(
            main={"size": (width, height)}, controls={"FrameRate": fps}
        )
        self._picam2.configure(config)
        iperiod = max(1, round(keyframe_period_s * fps))
        self._encoder = H264Encoder(bitrate=bitrate, repeat=True, iperiod=iperiod)
        if audio:
            self._encoder.audio = True
            self._encoder.audio_sample_rate = audio_sample_rate
            self._encoder.audio_codec = "aac"
        self._adapter = None

    def start(self, output: Any) -> None:
        _, _, Output = _picamera2()

        class _Forward(Output):  # picamera2 insists on its own Output class
            def __init__(self, target: Any) -> None:
                super().__init__()
                self.target = target

            def start(self) -> None:
                super().start()
                self.target.start()

            def stop(self) -> None:
                super().stop()
                self.target.stop()

            def outputframe(
                self, frame, keyframe=True, timestamp=None, packet=None, audio=False
            ):  # picamera2's encoder thread: enqueue only
                self.target.outputframe(frame, keyframe, timestamp, packet, audio)

        self._adapter = _Forward(output)
        self._picam2.start_recording(self._encoder, self._adapter)

    def stop(self) -> None:
        if self._adapter is not None:
            self._picam2.stop_recording()
            self._adapter = None

    def capture_jpeg(self) -> bytes:
        """A still from the running main stream (video keeps recording)."""
        buf = io.BytesIO()
        self._picam2.capture_file(buf, format="jpeg")
        return buf.getvalue()


class PiSpeaker:
    """``firmware.hardware.Speaker`` through pyaudio (the I2S amplifier's ALSA device)."""

    def play_wav(self, path: str) -> None:
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


class PiMicrophone:
    """``firmware.hardware.Microphone``: a dead I2S microphone delivers only zeros."""

    def __init__(self, rate: int = 16000) -> None:
        self.rate = rate

    def healthy(self) -> bool:
        import pyaudio  # device-only

        pa = pyaudio.PyAudio()
        try:
            stream = pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=self.rate,
                input=True,
                frames_per_buffer=1024,
            )
            try:
                data = stream.read(self.rate // 10, exception_on_overflow=False)
            finally:
                stream.close()
        except OSError as exc:
            _log.warning("microphone read failed: %s", exc)
            return False
        finally:
            pa.terminate()
        return any(data)


def make_backend(config: dict[str, Any]) -> dict[str, Any]:
    """The device's hardware: camera, power (fuel gauge + SoC temperature), speaker,
    microphone, clock (the system clock backed by the DS3231 RTC: a dock's correction
    sets both) and gpiozero's default pin factory."""
    from .controls import GpioIndicators
    from .drivers import MAX17048, BoardPower, SocThermal, device_clock, open_i2c_bus

    cam = config["camera"]
    camera = PiCamera(
        width=cam["width"],
        height=cam["height"],
        fps=cam["fps"],
        bitrate=cam["bitrate"],
        keyframe_period_s=cam["keyframe_period_s"],
        audio=cam["audio"],
        audio_sample_rate=cam["audio_sample_rate"],
        audio_channels=cam["audio_channels"],
    )
    power = BoardPower(MAX17048(open_i2c_bus()), SocThermal())
    return {
        "clock": device_clock(),
        "camera": camera,
        "power": power,
        "speaker": PiSpeaker(),
        "microphone": PiMicrophone(cam["audio_sample_rate"]),
        "indicators": GpioIndicators(),
        "pin_factory": None,
    }
