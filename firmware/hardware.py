"""The small interfaces between the recorder and the hardware, and how a backend is chosen.

The device implements them with Picamera2, pyaudio, gpiozero's default pin factory and
I2C drivers (``firmware/pi.py``, device-only); the simulator implements them in
``simulator/``. Nothing above these interfaces asks which backend it has.

A backend is picked by name, as gpiozero picks pin factories: ``BODYCAM_CAMERA=pi|sim``
names an entry point of the group ``bodycam.hardware`` (setup.cfg), a function
``(config, BackendOptions) -> HardwareParts``. So ``firmware`` never imports the simulator:
the ``sim`` entry point lives in the simulator's runner.

Threads: a camera calls ``Output.outputframe`` from its own capture/encoder threads (one
call at a time, never from the thread that called ``start``). An Output must not write
files, sign or publish in that call: it hands work to a queue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from .exc import BackendError

BACKEND_GROUP = "bodycam.hardware"


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
        """One encoded frame, always as ``bytes``. ``timestamp`` is in microseconds on the
        recorder clock's ``monotonic_ns`` (so a segment's UTC is its timestamps plus the
        clock's UTC offset; it keeps rising across camera restarts); ``audio=True`` marks an
        encoded audio frame (AAC-LC, ADTS-free raw packet, at the camera's declared
        ``audio_sample_rate`` and ``audio_channels``), otherwise ``frame`` is one H.264
        access unit in Annex B form, SPS/PPS repeated before every keyframe. ``packet``
        is backend-specific (None or a PyAV packet): the recorder never reads it."""


class Camera(Protocol):
    """A camera with an H.264 encoder (and, when ``audio`` is on, an AAC audio encoder)."""

    width: int
    height: int
    fps: int
    audio: bool  # whether audio frames are delivered to the output too
    audio_sample_rate: int
    audio_channels: int
    audio_extradata: bytes  # the AAC AudioSpecificConfig, or b"" for the declared layout

    def start(self, output: Output) -> None:
        """Start delivering encoded frames to ``output`` from the camera's own thread."""

    def stop(self) -> None:
        """Stop delivering frames; returns once no more ``outputframe`` calls will come."""

    def capture_jpeg(self) -> bytes:
        """A still photo as JPEG bytes (with the burned-in text), taken while video keeps
        running; raises (e.g. TimeoutError) when the camera delivers no frame."""


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


class Playback(Protocol):
    """A sound that has started; :meth:`wait` for its end."""

    def wait(self) -> None:
        """Block until the sound has played to the end; OSError if it could not be played."""


class Speaker(Protocol):
    def start_wav(self, path: str) -> Playback:
        """Start playing a WAV file (the Art. 6 announcement) and return at once.

        The sound starts at the instant of the call, which the recorder makes at the
        instant of the press: a helper thread only waits for the end, so a thread that
        starts late cannot make the announcement late. OSError if the speaker is dead."""


class Microphone(Protocol):
    """Raw PCM from the microphone, for health checks (the encoder records audio itself)."""

    def healthy(self) -> bool: ...


class SettableClock(Protocol):
    """The time source of :mod:`evidence.clock` plus what the dock needs to correct it and
    what the recorder's loop waits in (real seconds on the device, paced ones in the twin)."""

    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def wait_event(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait for ``event`` at most ``seconds`` of this clock's time; whether it is set."""

    def time_valid(self) -> bool:
        """False when the clock knows it lost its time (an RTC whose oscillator stopped)."""

    def set_time_ns(self, utc_ns: int) -> None:
        """Set wall-clock time (the RTC on the device); monotonic time is unaffected."""


@dataclass(frozen=True)
class BackendOptions:
    """What a backend needs besides the config: whose camera it is (burned into every
    frame) and, for the simulator, its clock speed (None: as fast as possible)."""

    device_id: str
    officer_id: str = ""
    speed: float | None = 1.0


@dataclass(frozen=True)
class HardwareParts:
    """One typed set of hardware parts, whichever backend made it."""

    clock: SettableClock
    camera: Camera
    power: Power
    speaker: Speaker
    microphone: Microphone
    indicators: Indicators
    pin_factory: Any = None  # gpiozero's: None = its default (the device's GPIO)


def backend_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=BACKEND_GROUP))


def load_backend(name: str):
    """The factory registered as ``name`` in ``bodycam.hardware``; BackendError if none."""
    found = entry_points(group=BACKEND_GROUP, name=name)
    if not found:
        known = ", ".join(backend_names()) or "none: reinstall the package (pip install -e .)"
        raise BackendError(f"no hardware backend {name!r} (installed: {known})")
    return next(iter(found)).load()
