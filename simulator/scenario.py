"""Shift scenarios: what the officer and the world do, and when (TOML, or the built-in one).

A scenario file::

    [shift]                        # all optional
    duration = "8h"                # --duration overrides it
    device = "cam-0001"            # used when the output folder has no device key yet
    officer = "A1024"
    unit = "unit-1"
    battery_percent = 100.0
    drain_percent_per_hour = 11.0
    width = 160                    # the simulated camera
    height = 120
    fps = 10
    start = "2026-12-07T08:00:00+08:00"   # when the shift begins (ISO 8601 with its offset;
                                   # default now, or after the journal's last record)
    dock_after = "25h"             # with --dock: how long after the shift it is docked
    network = true                 # as --network: dock each segment over loopback TLS
    room_gain_db = -12.0           # the speaker as the microphone hears it
    noise_db = -45.0               # the room's noise floor, dBFS RMS

    [config.recording]             # overlays firmware/recorder.toml, table by table
    segment_max_s = 60

    [[event]]
    at = "5m"                      # simulated time since the shift began
    do = "start"                   # see ACTIONS
    [[event]]
    at = "20m"
    do = "fault"
    fault = "camera"               # camera | microphone | storage_full | overheat |
                                   # battery_critical | speaker_covered | speaker
                                   # (simulator.faults)
    [[event]]
    at = "30m"
    do = "power_cut"               # the battery is pulled: the camera dies as it is
    seconds = 120                  # and is switched on again this much later
    [[event]]
    at = "21m"
    do = "clear"
    fault = "camera"

Durations are ``"8h"``, ``"90m"``, ``"45s"``, ``"1h30m"`` or a number of seconds.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evidence.exc import ConfigError
from evidence.procedures import load_procedures

ACTIONS = {
    "start": "press the record button briefly",
    "stop": "hold the record button (stop_hold_s + 0.5 s)",
    "mark": "press the mark button",
    "choose": "while ready, choose `procedure` (an id of evidence/procedures.toml; '' = none) "
    "with the mark button",
    "photo": "press the function button briefly",
    "weather": "hold the function button (weather_hold_s + 0.5 s): declare or end weather",
    "press": "press `button` for `seconds`",
    "fault": "inject `fault`",
    "clear": "end `fault`",
    "battery": "set the battery to `percent`",
    "power_cut": "the power fails at once (the battery pulled): the disk keeps what it held "
    "at that instant; the camera boots again `seconds` later (default 60)",
}
FAULTS = (
    "camera",
    "microphone",
    "storage_full",
    "overheat",
    "battery_critical",
    "speaker_covered",
    "speaker",
)
BUTTONS = ("record", "mark", "function")
SHIFT_KEYS = {
    "duration": (str, int, float),
    "device": str,
    "officer": str,
    "unit": str,
    "battery_percent": (int, float),
    "drain_percent_per_hour": (int, float),
    "width": int,
    "height": int,
    "fps": int,
    "start": str,
    "dock_after": (str, int, float),
    "room_gain_db": (int, float),
    "noise_db": (int, float),
    "network": bool,
}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``"8h"``, ``"1h30m"``, ``"45s"``, ``"2.5m"`` or a number."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            m = _DURATION.match(text)
            if not text or not m or not any(m.groups()):
                raise ValueError(f"not a duration: {value!r} (use e.g. 8h, 90m, 45s)") from None
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r} (a finite number of seconds >= 0)")
    return seconds


def parse_start(text: str) -> int:
    """UTC ns of an ISO 8601 time with its offset (``2026-12-07T08:00:00+08:00``)."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ValueError(
            f"not a time with its UTC offset: {text!r} (e.g. 2026-12-07T08:00:00+08:00)"
        )
    return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the shift began
    do: str
    button: str = ""
    seconds: float = 0.0
    fault: str = ""
    percent: float = 0.0
    procedure: str = ""


@dataclass
class Scenario:
    shift: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    name: str = "built-in"


def _event(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an event must be a table")
    unknown = set(raw) - {"at", "do", "button", "seconds", "fault", "percent", "procedure"}
    if unknown:
        raise ConfigError(f"{where}: unknown event key(s) {', '.join(sorted(unknown))}")
    do = raw.get("do")
    if do not in ACTIONS:
        raise ConfigError(f"{where}: 'do' must be one of {', '.join(ACTIONS)}, not {do!r}")
    try:
        at = parse_duration(raw.get("at", 0))
        seconds = parse_duration(raw.get("seconds", 0))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    button, fault = raw.get("button", ""), raw.get("fault", "")
    if do == "press" and button not in BUTTONS:
        raise ConfigError(f"{where}: 'button' must be one of {', '.join(BUTTONS)}")
    if do in ("fault", "clear") and fault not in FAULTS:
        raise ConfigError(f"{where}: 'fault' must be one of {', '.join(FAULTS)}")
    percent = raw.get("percent", 0.0)
    if do == "battery" and not (isinstance(percent, int | float) and 0 <= percent <= 100):
        raise ConfigError(f"{where}: 'percent' must be 0-100")
    procedure = raw.get("procedure", "")
    if do == "choose" and procedure and procedure not in load_procedures():
        raise ConfigError(f"{where}: 'procedure' {procedure!r} is not in evidence/procedures.toml")
    return Event(at, do, button, seconds, fault, float(percent), procedure)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"shift", "config", "event"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}")
    shift = data.get("shift", {})
    for key, value in shift.items():
        if key not in SHIFT_KEYS:
            raise ConfigError(f"{path}: unknown setting shift.{key}")
        if not isinstance(value, SHIFT_KEYS[key]) or (
            isinstance(value, bool) and SHIFT_KEYS[key] is not bool
        ):
            raise ConfigError(f"{path}: shift.{key} has the wrong type")
        try:
            if key == "start":
                parse_start(value)
            elif key in ("duration", "dock_after"):
                parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: shift.{key}: {exc}") from None
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: [config] must be a table")
    events = [_event(raw, f"{path}: event {i + 1}") for i, raw in enumerate(data.get("event", []))]
    return Scenario(dict(shift), config, sorted(events, key=lambda e: e.at), path.name)


def default_scenario(duration_s: float) -> Scenario:
    """A working day in six enforcement acts spread over the shift: presses, marks, a
    photo, a declared weather stoppage, a camera hang, a microphone failure, storage
    filling up, overheating, and the battery running down towards the end (at 11 %/h the
    ``battery_low`` warning comes about 7.7 h in). Times scale with the duration."""
    d = duration_s
    ev: list[Event] = []

    def act(start: float, length: float, inner: list[tuple[float, str, str]]) -> None:
        t0 = start * d
        ev.append(Event(t0, "start"))
        ev.append(Event(t0 + 0.2 * length * d, "mark"))
        for frac, do, fault in inner:
            ev.append(Event(t0 + frac * length * d, do, fault=fault))
        ev.append(Event(t0 + length * d, "stop"))

    act(0.02, 0.05, [(0.5, "photo", "")])
    act(0.14, 0.06, [(0.3, "weather", ""), (0.6, "weather", "")])
    act(0.30, 0.06, [(0.4, "fault", "camera"), (0.6, "clear", "camera")])
    act(
        0.46,
        0.06,
        [
            (0.3, "fault", "microphone"),
            (0.5, "clear", "microphone"),
            (0.6, "fault", "storage_full"),
            (0.8, "clear", "storage_full"),
        ],
    )
    act(0.62, 0.05, [(0.4, "fault", "overheat"), (0.7, "clear", "overheat")])
    act(0.90, 0.08, [(0.5, "photo", "")])
    return Scenario({}, {}, sorted(ev, key=lambda e: e.at), "built-in")
