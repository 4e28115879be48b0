"""The 24-hour rule (Art. 34), as pure decisions over what the index knows.

For every media record the dock has seen it knows when the recording was closed (the
segment's end, signed by the camera) and when the dock stored it. A recording is *on
time* if stored within 24 hours of closing, *late* if stored after, *missing* if not
stored yet (``overdue`` once 24 hours have passed). Devices whose signed status messages
show a journal head beyond what the dock has stored are *pending* since the first such
message; the supervisor gets a warning at 20 hours and a violation at 24.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evidence.clock import parse_utc
from wire.topics import DOCK_VIOLATION, DOCK_WARNING

HOUR_NS = 3600 * 1_000_000_000
WARN_H = 20
LIMIT_H = 24


@dataclass(frozen=True)
class Verdict:
    device: str
    officer: str
    seq: int
    file: str
    closed_utc: str
    stored_utc: str | None
    status: str  # on_time | late | missing | overdue
    hours: float  # never negative (see clock_ahead_h)
    # The camera's clock ran ahead of the dock's by this much (hours), so its signed
    # closing time lies after the dock's stored time or "now". ``hours`` is then counted
    # from the closing time corrected by the clock offset the dock measured when it set
    # the camera's clock (``corrected``), or is 0 when no offset was measured.
    clock_ahead_h: float = 0.0
    corrected: bool = False


def judge_media(
    row: dict[str, Any], now_ns: int, limit_h: float = LIMIT_H, clock_offset_ns: int | None = None
) -> Verdict:
    """``clock_offset_ns``: dock time minus camera time, as measured at the device's last
    docking (negative: the camera ran ahead); used only when the camera's closing time is
    later than the dock's reference time, which only a clock running ahead explains."""
    closed = parse_utc(row["closed_utc"])
    stored = row.get("stored_utc")
    until = parse_utc(stored) if stored else now_ns
    hours = (until - closed) / HOUR_NS
    ahead, corrected = 0.0, False
    if hours < 0:
        ahead = -hours
        if clock_offset_ns is not None and clock_offset_ns < 0:
            hours = max((until - (closed + clock_offset_ns)) / HOUR_NS, 0.0)
            ahead, corrected = max(ahead, -clock_offset_ns / HOUR_NS), True
        else:
            hours = 0.0
    if stored:
        status = "on_time" if hours <= limit_h else "late"
    else:
        status = "missing" if hours <= limit_h else "overdue"
    return Verdict(
        row["device"],
        row.get("officer", ""),
        row["seq"],
        row["file"],
        row["closed_utc"],
        stored,
        status,
        hours,
        ahead,
        corrected,
    )


@dataclass(frozen=True)
class Pending:
    device: str
    since_utc: str
    head_seq: int
    head_hash: str
    stored_seq: int


def pending_devices(status_rows: list[dict[str, Any]], heads: dict[str, int]) -> list[Pending]:
    """Devices whose last signed status head is beyond what the dock stored."""
    out = []
    for row in status_rows:
        stored = heads.get(row["device"], -1)
        if row["seq"] > stored and row.get("pending_since"):
            out.append(
                Pending(row["device"], row["pending_since"], row["seq"], row["hash"], stored)
            )
    return out


def alert_level(
    pending: Pending, now_ns: int, warn_h: float = WARN_H, limit_h: float = LIMIT_H
) -> str | None:
    """``violation`` after ``limit_h`` hours undocked, ``warning`` after ``warn_h``."""
    hours = (now_ns - parse_utc(pending.since_utc)) / HOUR_NS
    if hours >= limit_h:
        return DOCK_VIOLATION
    if hours >= warn_h:
        return DOCK_WARNING
    return None


def next_pending_since(
    previous: dict[str, Any] | None, stored_seq: int, seq: int, utc: str
) -> str | None:
    """When a device's undocked evidence started, after a new status with head ``seq``.

    Pending starts at the first status whose head is beyond the stored head, and is kept
    (not moved later) by further statuses until a docking stores past it.
    """
    if seq <= stored_seq:
        return None
    if previous and previous.get("pending_since") and previous["seq"] > stored_seq:
        return previous["pending_since"]
    return utc


def report(
    media_rows: list[dict[str, Any]],
    pending: list[Pending],
    officers: dict[str, str],
    now_ns: int,
    clock_offsets: dict[str, int] | None = None,
    *,
    warn_h: float = WARN_H,
    limit_h: float = LIMIT_H,
) -> dict[str, Any]:
    """Per officer: counts and the recordings that are not on time. ``clock_offsets``:
    per device, the clock offset measured at its last docking (see :func:`judge_media`)."""
    offsets = clock_offsets or {}
    by_officer: dict[str, dict[str, Any]] = {}

    def slot(officer: str) -> dict[str, Any]:
        return by_officer.setdefault(
            officer or "(no officer)",
            {"on_time": 0, "late": 0, "missing": 0, "overdue": 0, "problems": [], "undocked": []},
        )

    for row in media_rows:
        v = judge_media(row, now_ns, limit_h, offsets.get(row["device"]))
        s = slot(v.officer)
        s[v.status] += 1
        if v.status != "on_time":
            s["problems"].append(
                {
                    "device": v.device,
                    "seq": v.seq,
                    "file": v.file,
                    "status": v.status,
                    "closed_utc": v.closed_utc,
                    "stored_utc": v.stored_utc,
                    "hours": round(v.hours, 1),
                    "clock_ahead_h": round(v.clock_ahead_h, 1),
                    "clock_corrected": v.corrected,
                }
            )
    for p in pending:
        level = alert_level(p, now_ns, warn_h, limit_h)
        slot(officers.get(p.device, ""))["undocked"].append(
            {
                "device": p.device,
                "since_utc": p.since_utc,
                "head_seq": p.head_seq,
                "stored_seq": p.stored_seq,
                "level": level or "ok",
                "hours": round((now_ns - parse_utc(p.since_utc)) / HOUR_NS, 1),
            }
        )
    return {"officers": dict(sorted(by_officer.items()))}
