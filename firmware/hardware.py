"""The small interfaces between the recorder and the hardware.

The device implements them with Picamera2, pyaudio, gpiozero's default pin factory and
I2C drivers (``firmware/pi.py``, device-only); the simulator implements them in
``simulator/``. Nothing above these interfaces asks which backend it has.

Threads: a camera calls ``Output.outputframe`` from its own capture/encoder thread. An
Output must not write files, sign or publish in that call: it hands work to a queue.
"""

from __future__ import annotations

from typing import Any, Protocol


class Output(Protocol):
    """picamera2's ``Output`` shape: what an encoder feeds with encoded frames."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """One encoded frame. ``timestamp`` is in microseconds on the camera's monotonic
        clock; ``audio=True`` marks an encoded audio frame (AAC, ADTS-free raw packet),
        otherwise ``frame`` is one H.264 access unit in Annex B form, SPS/PPS repeated
        before every keyframe."""


class Camera(Protocol):
    """A camera with an H.264 encoder (and, when ``audio`` is on, an AAC audio encoder)."""

    width: int
    height: int
    fps: int
    audio: bool  # whether audio frames are delivered to the output too
    audio_sample_rate: int
    audio_channels: int

    def start(self, output: Output) -> None:
        """Start delivering encoded frames to ``output`` from the camera's own thread."""

    def stop(self) -> None:
        """Stop delivering frames; returns once no more ``outputframe`` calls will come."""

    def capture_jpeg(self) -> bytes:
        """A still photo as JPEG bytes, taken while video keeps running."""


class Indicators(Protocol):
    """LEDs and buzzer (gpiozero LED/Buzzer devices on the pins of ``hw.pinmap``)."""

    def show(self, state: str) -> None:
        """Set the LEDs for a recorder state: ``ready``, ``recording``, ``stopping``,
        ``fault``, ``stoppage`` or ``docked``."""

    def beep(self, pattern: str) -> None:
        """Buzz a pattern: ``start``, ``stop``, ``reminder``, ``mark``, ``fault``, ``ack``."""


class Power(Protocol):
    """Battery, temperature and free storage, as the fuel gauge and the SoC report them."""

    def battery_percent(self) -> float: ...

    def temperature_c(self) -> float: ...

    def free_bytes(self, path: str) -> int: ...


class Speaker(Protocol):
    def play_wav(self, path: str) -> None:
        """Play a WAV file to the end (the Art. 6 announcement)."""


class Microphone(Protocol):
    """Raw PCM from the microphone, for health checks (the encoder records audio itself)."""

    def healthy(self) -> bool: ...


class SettableClock(Protocol):
    """The time source of :mod:`evidence.clock` plus what the dock needs to correct it."""

    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def set_time_ns(self, utc_ns: int) -> None:
        """Set wall-clock time (the RTC on the device); monotonic time is unaffected."""
