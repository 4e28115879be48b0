"""Faults injected into the hardware twin, now or at simulated times.

A fault is one of :data:`KINDS`, named like the journal's stoppage reasons:

============== =============================================== ==========================
kind           what the hardware does                          ended by
============== =============================================== ==========================
camera         the camera stops delivering frames (freeze)     ``camera.resume()``
storage_full   ``power.free_bytes()`` returns 0                clearing the flag
battery_crit.  the battery drops to ``critical_percent`` (3 %)  the level before (swap)
overheat       the SoC reads ``overheat_c`` (85 C)              the temperature before
microphone     ``microphone.healthy()`` is False, audio silent  ``microphone.recover()``
speaker_cove.  the speaker is covered: what it plays is muffled ``speaker.uncover()``
speaker        the speaker is dead: a play raises OSError         ``speaker.recover()``
============== =============================================== ==========================

``speaker_covered`` is no stoppage: the camera cannot tell, it plays the announcement and
journals it as usual; only the dock's check of the recorded audio notices. A dead
``speaker`` is no stoppage either: the recorder logs that the announcement was not played
and journals no ``announcement``, which the compliance report finds.

Schedules are written ``KIND@START[+DURATION]``, times in simulated time since the clock
was made, as seconds or with units: ``camera@2h+10m``, ``storage_full@7h30m``,
``microphone@90s+30s``, ``battery_critical@5400``. :func:`parse_fault` parses one (raises
ValueError with a one-line reason); :class:`Faults` applies them::

    faults = Faults(clock, camera=camera, power=power, microphone=mic)
    faults.schedule(parse_fault("camera@2h+10m"))   # uses clock.at(): runs on time
    faults.start("overheat"); faults.end("overheat")  # or by hand, now
    faults.active        # set of kinds in effect
    faults.log           # [(utc_ns, kind, "start" | "end"), ...]

Scheduled faults start and end in the thread that advances the clock past their time
(the camera, in as-fast-as-possible mode); starting/ending one only flips a flag.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from simulator.clock import NS, SimClock

_log = logging.getLogger(__name__)

KINDS = (
    "camera",
    "storage_full",
    "battery_critical",
    "overheat",
    "microphone",
    "speaker_covered",
    "speaker",
)
NEEDS = {
    "camera": "camera",
    "microphone": "microphone",
    "speaker_covered": "speaker",
    "speaker": "speaker",
}

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """``"1h30m"``, ``"90s"``, ``"90"``, ``"2.5h"`` -> seconds (ValueError otherwise)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 90s, 15m, 2h, 1h30m)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


@dataclass(frozen=True)
class Fault:
    kind: str
    start_s: float  # simulated seconds since the clock was made
    duration_s: float | None = None  # None: until ended by hand

    def __str__(self) -> str:
        tail = "" if self.duration_s is None else f"+{self.duration_s:g}s"
        return f"{self.kind}@{self.start_s:g}s{tail}"


def parse_fault(spec: str) -> Fault:
    """``KIND@START[+DURATION]`` -> Fault; ValueError with a one-line reason."""
    kind, at, when = spec.strip().partition("@")
    if not at:
        raise ValueError(f"fault {spec!r}: expected KIND@START[+DURATION], e.g. camera@2h+10m")
    if kind not in KINDS:
        raise ValueError(f"fault {spec!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    start, plus, length = when.partition("+")
    duration = parse_duration(length) if plus else None
    if duration is not None and duration <= 0:
        raise ValueError(f"fault {spec!r}: duration must be positive")
    return Fault(kind, parse_duration(start), duration)


class Faults:
    """Starts and ends faults on the twin's parts, now or on the simulated clock."""

    def __init__(
        self,
        clock: SimClock,
        *,
        camera=None,
        power=None,
        microphone=None,
        speaker=None,
        critical_percent: float = 3.0,
        overheat_c: float = 85.0,
    ) -> None:
        self.clock = clock
        self.camera = camera
        self.power = power
        self.microphone = microphone
        self.speaker = speaker
        self.critical_percent = critical_percent
        self.overheat_c = overheat_c
        self.log: list[tuple[int, str, str]] = []
        self._active: set[str] = set()
        self._saved: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def schedule(self, fault: Fault) -> None:
        """Start ``fault`` at its simulated time (and end it after its duration)."""
        self._check(fault.kind)
        at = self.clock.start_monotonic_ns + int(fault.start_s * NS)
        self.clock.at(at, lambda: self.start(fault.kind))
        if fault.duration_s is not None:
            self.clock.at(at + int(fault.duration_s * NS), lambda: self.end(fault.kind))
        _log.info("fault scheduled: %s", fault)

    def _check(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
        needs = NEEDS.get(kind, "power")
        if getattr(self, needs) is None:
            raise ValueError(f"fault {kind!r} needs a simulated {needs}")

    def start(self, kind: str) -> None:
        self._check(kind)
        with self._lock:
            if kind in self._active:
                return
            self._active.add(kind)
            self.log.append((self.clock.time_ns(), kind, "start"))
        _log.info("fault started: %s", kind)
        if kind == "camera":
            self.camera.freeze()
        elif kind == "microphone":
            self.microphone.fail()
        elif kind == "speaker_covered":
            self.speaker.cover()
        elif kind == "speaker":
            self.speaker.fail()
        elif kind == "storage_full":
            self.power.set_storage_full(True)
        elif kind == "battery_critical":
            self._saved[kind] = self.power.battery_percent()
            self.power.set_battery(min(self.critical_percent, self._saved[kind]))
        elif kind == "overheat":
            self._saved[kind] = self.power.temperature_c()
            self.power.set_temperature(self.overheat_c)

    def end(self, kind: str) -> None:
        self._check(kind)
        with self._lock:
            if kind not in self._active:
                return
            self._active.discard(kind)
            self.log.append((self.clock.time_ns(), kind, "end"))
        _log.info("fault ended: %s", kind)
        if kind == "camera":
            self.camera.resume()
        elif kind == "microphone":
            self.microphone.recover()
        elif kind == "speaker_covered":
            self.speaker.uncover()
        elif kind == "speaker":
            self.speaker.recover()
        elif kind == "storage_full":
            self.power.set_storage_full(False)
        elif kind == "battery_critical":
            self.power.set_battery(self._saved.pop(kind))
        elif kind == "overheat":
            self.power.set_temperature(self._saved.pop(kind))
