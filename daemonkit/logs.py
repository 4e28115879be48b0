"""Log lines for people, or JSON lines for machines, from one kind of message.

Code that logs an event with fields passes an :class:`Event` as the one ``%s`` argument::

    _log.info("%s", Event("recording_started", {"pre_event_s": 30}))

As text it reads ``recording started (pre-event 30 s)``; with ``BODYCAM_LOG_FORMAT=json``
(every command, see :func:`daemonkit.cli.setup_logging`) each line is one JSON object with
the message and the event's fields: ``{"time": ..., "level": "info", "logger": ...,
"message": "recording started (pre-event 30 s)", "event": "recording_started",
"pre_event_s": 30}``. The wording of each event kind lives here, in one place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

LOG_FORMAT_ENV = "BODYCAM_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_STOPPED_BY = {
    "button": "by the button",
    "fault": "by a stoppage",
    "shutdown": "at shutdown",
    "battery": "the battery is empty",
}


def _recording_started(f: Mapping[str, Any]) -> str:
    return f"recording started (pre-event {f.get('pre_event_s', 0)} s)"


def _recording_stopped(f: Mapping[str, Any]) -> str:
    by = f.get("by", "")
    return "recording stopped" + (f" ({_STOPPED_BY.get(by, f'by {by}')})" if by else "")


def _resumed(f: Mapping[str, Any]) -> str:
    return f"stoppage over: {f.get('reason', '?')}"


def _indicators(f: Mapping[str, Any]) -> str:
    lights = ", ".join(f"{name} {how}" for name, how in f.get("leds", {}).items())
    return f"LEDs: {lights} ({f.get('state', '?')})"


def _buzzer(f: Mapping[str, Any]) -> str:
    count = f.get("count", 1)
    return (
        f"buzzer: {count} beep{'s' if count != 1 else ''} of {f.get('on_s', 0):g} s "
        f"({f.get('pattern', '?')})"
    )


WORDING: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "recording_started": _recording_started,
    "recording_stopped": _recording_stopped,
    "resumed": _resumed,
    "indicators": _indicators,
    "buzzer": _buzzer,
}


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def describe(kind: str, fields: Mapping[str, Any]) -> str:
    """An event in words: its own wording, else ``kind in words (field value, ...)``."""
    wording = WORDING.get(kind)
    if wording is not None:
        return wording(fields)
    text = kind.replace("_", " ")
    if fields:
        text += " (" + ", ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in fields.items())
        text += ")"
    return text


class Event:
    """A logged event: :func:`describe` as text, its fields in a JSON line."""

    __slots__ = ("kind", "fields")

    def __init__(self, kind: str, fields: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.fields = dict(fields or {})

    def __str__(self) -> str:
        return describe(self.kind, self.fields)

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {self.fields!r})"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and an event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, Event):
                out["event"] = arg.kind
                for key, value in arg.fields.items():
                    out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter_for(name: str) -> logging.Formatter:
    """``text`` (the default) or ``json``; anything else is a ValueError naming both."""
    if name in ("", "text"):
        return logging.Formatter(TEXT_FORMAT)
    if name == "json":
        return JsonFormatter()
    raise ValueError(f"{LOG_FORMAT_ENV} must be 'text' or 'json', not {name!r}")
