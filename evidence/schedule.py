"""Working hours of a fixed camera (Art. 9): when it must be recording, as pure time maths.

A service window or a hearing room records "in working time". A :class:`Schedule` is the
working days (ISO weekdays, Monday = 1), the daily windows in local time (``"08:30-12:00"``;
a lunch break is the gap between two windows) and the local time's fixed offset from UTC
(China keeps no daylight saving time, so an offset is exact). The camera journals the
schedule it runs by (a ``schedule`` record at boot) and the compliance report measures
what it recorded against that record, so both read the same definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .exc import ConfigError

NS = 1_000_000_000
MINUTE_NS = 60 * NS
DAY_NS = 86_400 * NS
_WINDOW = re.compile(r"\A([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z", re.ASCII)
_OFFSET = re.compile(r"\A([+-])(0\d|1[0-4]):([0-5]\d)\Z", re.ASCII)


@dataclass(frozen=True)
class Schedule:
    """Working days, daily windows (minutes after local midnight) and the UTC offset."""

    days: tuple[int, ...]
    windows: tuple[tuple[int, int], ...]
    utc_offset_min: int

    def body(self) -> dict[str, Any]:
        """The ``schedule`` record's body (and the config's form)."""
        return {
            "days": list(self.days),
            "hours": [f"{_hhmm(a)}-{_hhmm(b)}" for a, b in self.windows],
            "utc_offset": _offset(self.utc_offset_min),
        }

    def windows_between(self, start_ns: int, end_ns: int) -> Iterator[tuple[int, int, str]]:
        """``(open_ns, close_ns, "08:30-12:00")`` of every window overlapping the UTC span
        [start_ns, end_ns), in order, clipped to it."""
        offset = self.utc_offset_min * MINUTE_NS
        day = (start_ns + offset) // DAY_NS  # local days since 1970-01-01 (a Thursday)
        while day * DAY_NS - offset < end_ns:
            if (day + 3) % 7 + 1 in self.days:
                for a, b in self.windows:
                    lo = day * DAY_NS + a * MINUTE_NS - offset
                    hi = day * DAY_NS + b * MINUTE_NS - offset
                    if hi > start_ns and lo < end_ns:
                        yield max(lo, start_ns), min(hi, end_ns), f"{_hhmm(a)}-{_hhmm(b)}"
            day += 1

    def open_at(self, utc_ns: int) -> str | None:
        """The window open at ``utc_ns`` (its ``"HH:MM-HH:MM"``), or None."""
        for _lo, _hi, name in self.windows_between(utc_ns, utc_ns + 1):
            return name
        return None

    def next_change(self, utc_ns: int) -> int:
        """The first UTC instant after ``utc_ns`` at which a window opens or closes."""
        for lo, hi, _ in self.windows_between(utc_ns, utc_ns + 8 * DAY_NS):
            return lo if lo > utc_ns else hi  # opening later, or open now (lo is clipped)
        return utc_ns + 8 * DAY_NS  # no working day at all: nothing ever changes


def uncovered(
    window: tuple[int, int], covered: Sequence[tuple[int, int]], tolerance_ns: int
) -> list[tuple[int, int]]:
    """The parts of ``window`` that no interval of ``covered`` (sorted by start) covers,
    each longer than ``tolerance_ns`` (a segment boundary is not a gap)."""
    lo, hi = window
    gaps, at = [], lo
    for a, b in covered:
        if b <= at:
            continue
        if a >= hi:
            break
        if a > at:
            gaps.append((at, min(a, hi)))
        at = max(at, b)
        if at >= hi:
            break
    if at < hi:
        gaps.append((at, hi))
    return [(a, b) for a, b in gaps if b - a > tolerance_ns]


class ScheduleError(ConfigError):
    """A schedule that cannot be run: ``key`` names the setting, ``problem`` says why."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        super().__init__(f"{where}.{key}: {problem}" if key else f"{where}: {problem}")
        self.key, self.problem = key, problem


def parse_schedule(raw: Any, where: str = "schedule") -> Schedule:
    """A schedule from the config table or a ``schedule`` record's body; ScheduleError
    naming the key otherwise."""

    def bad(key: str, problem: str) -> ScheduleError:
        return ScheduleError(where, key, problem)

    if not isinstance(raw, dict):
        raise bad("", "must be a table with days, hours and utc_offset")
    unknown = set(raw) - {"days", "hours", "utc_offset"}
    if unknown:
        raise bad("", f"unknown key(s) {', '.join(sorted(unknown))}")
    days = raw.get("days", [1, 2, 3, 4, 5])
    if (
        not isinstance(days, list)
        or not days
        or any(type(d) is not int or not 1 <= d <= 7 for d in days)
        or len(set(days)) != len(days)
    ):
        raise bad("days", "must be a list of distinct ISO weekdays 1-7 (Monday = 1)")
    hours = raw.get("hours")
    if not isinstance(hours, list) or not hours:
        raise bad("hours", 'must be a list of windows such as "08:30-12:00"')
    windows = []
    for text in hours:
        m = _WINDOW.match(text) if isinstance(text, str) else None
        if m is None:
            raise bad("hours", f"{text!r} is not HH:MM-HH:MM")
        a = int(m[1]) * 60 + int(m[2])
        b = int(m[3]) * 60 + int(m[4])
        if b > 24 * 60 or b <= a:
            raise bad("hours", f"{text!r} must end after it starts, by 24:00")
        if windows and a <= windows[-1][1]:
            raise bad("hours", f"{text!r} must start after the window before ends")
        windows.append((a, b))
    offset = raw.get("utc_offset", "+08:00")
    m = _OFFSET.match(offset) if isinstance(offset, str) else None
    if m is None:
        raise bad("utc_offset", f"{offset!r} is not +HH:MM or -HH:MM")
    minutes = int(m[2]) * 60 + int(m[3])
    return Schedule(tuple(sorted(days)), tuple(windows), minutes if m[1] == "+" else -minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{_hhmm(abs(minutes))}"
