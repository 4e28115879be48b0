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
    hours: float


def judge_media(row: dict[str, Any], now_ns: int, limit_h: int = LIMIT_H) -> Verdict:
    closed = parse_utc(row["closed_utc"])
    stored = row.get("stored_utc")
    if stored:
        hours = (parse_utc(stored) - closed) / HOUR_NS
        status = "on_time" if hours <= limit_h else "late"
    else:
        hours = (now_ns - closed) / HOUR_NS
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
    pending: Pending, now_ns: int, warn_h: int = WARN_H, limit_h: int = LIMIT_H
) -> str | None:
    """``violation`` after ``limit_h`` hours undocked, ``warning`` after ``warn_h``."""
    hours = (now_ns - parse_utc(pending.since_utc)) / HOUR_NS
    if hours >= limit_h:
        return "violation"
    if hours >= warn_h:
        return "warning"
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
    media_rows: list[dict[str, Any]], pending: list[Pending], officers: dict[str, str], now_ns: int
) -> dict[str, Any]:
    """Per officer: counts and the recordings that are not on time."""
    by_officer: dict[str, dict[str, Any]] = {}

    def slot(officer: str) -> dict[str, Any]:
        return by_officer.setdefault(
            officer or "(no officer)",
            {"on_time": 0, "late": 0, "missing": 0, "overdue": 0, "problems": [], "undocked": []},
        )

    for row in media_rows:
        v = judge_media(row, now_ns)
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
                }
            )
    for p in pending:
        level = alert_level(p, now_ns)
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
