"""Time sources. The journal stamps records with UTC and monotonic time from a clock object.

A clock has ``time_ns()`` (UTC, nanoseconds since the epoch) and ``monotonic_ns()``.
The simulator supplies a clock that can run faster than real time; the device uses this one.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import Protocol

UTC_PATTERN = re.compile(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z", re.ASCII
)


class Clock(Protocol):
    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...


class SystemClock:
    """The machine's own clocks."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


_NAIVE_EPOCH = _dt.datetime(1970, 1, 1)
_MICROSECOND = _dt.timedelta(microseconds=1)


def format_utc(ns: int) -> str:
    """``2026-11-27T04:57:58.123456Z``: fixed width, so strings sort as times do."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def parse_utc(text: str) -> int:
    """Inverse of :func:`format_utc` (microsecond precision); raises ValueError."""
    if not UTC_PATTERN.match(text):
        raise ValueError(f"not a UTC time stamp: {text!r}")
    # The pattern fixes the layout, so the C parser reads exactly what strptime would (and
    # rejects the same impossible dates), ten times faster: reports parse every record's.
    stamp = _dt.datetime.fromisoformat(text[:-1])
    return (stamp - _NAIVE_EPOCH) // _MICROSECOND * 1000
