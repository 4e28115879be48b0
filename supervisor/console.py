"""How the supervisor console shows verdicts: one line per alert for people, JSON for machines."""

from __future__ import annotations

import json
from typing import Any

from alerting.judge import Verdict
from alerting.watch import StatusEvent
from evidence.clock import parse_utc
from wire.topics import ARCHIVE_ALERT_KIND

ALERT_LABELS: dict[str, str] = {
    "stoppage": "STOPPAGE",
    "resumed": "RESUMED",
    "battery_low": "BATTERY LOW",
    "journal_damaged": "JOURNAL DAMAGED",
    "reserve_spent": "RESERVE SPENT",
}
"""What a person reads for each kind of a camera's alert (``wire.topics.ALERT_KINDS``:
tests/test_supervisor_labels.py fails for a kind without a label here)."""
DOCK_LABELS: dict[str, str] = {
    "warning": "DOCK WARNING",
    "violation": "DOCK VIOLATION",
    "flag": "DOCK FLAG",
}
"""The same for each level of a dock's alert (``wire.topics.DOCK_ALERT_LEVELS``)."""
ARCHIVE_LABELS: dict[str, str] = {
    "due_soon": "案卷即将到期 CASE DUE SOON",
    "overdue": "案卷已逾期 CASE OVERDUE",
}
"""The same for each level of an archive's alert (``wire.topics.ARCHIVE_ALERT_LEVELS``), zh-CN
first: the case files' 30-day rule is read in the office."""


def _archive(body: dict[str, Any]) -> str:
    """An archive alert's words, from its fields (a flagged one's body may be anything)."""
    level = str(body.get("level", "?"))[:40]
    label = ARCHIVE_LABELS.get(level) or f"案卷 ARCHIVE {level.upper()}"
    case = str(body.get("case", "?"))[:80]
    day = body.get("day") if type(body.get("day")) is int else "?"
    deadline = str(body.get("deadline_utc", "?"))[:40]
    if len(deadline) > 16 and deadline[10:11] == "T":
        deadline = deadline[:10] + " " + deadline[11:16] + "Z"
    if level == "overdue":
        zh, en = f"期限 {deadline} 已过，尚未归档", f"deadline {deadline} passed, not archived"
    else:
        zh, en = f"须于 {deadline} 前归档", f"to be archived by {deadline}"
    return f"{label}: 案卷 {case} 第 {day}/30 天，{zh} / case {case}: day {day} of 30, {en}"


def _damage(body: dict[str, Any]) -> str:
    lines = body.get("lines") if isinstance(body.get("lines"), list) else []
    more = body.get("more") if type(body.get("more")) is int else 0
    first = lines[0] if lines and isinstance(lines[0], dict) else {}
    text = f": {len(lines) + max(0, more)} line(s) not in the chain"
    if first:
        text += f", first at byte {first.get('offset', '?')}: {str(first.get('problem', ''))[:160]}"
    return text


_DETAILS = {
    "stoppage": lambda b: (
        f" {b.get('reason', '?')}" + (f": {b['detail']}" if b.get("detail") else "")
    ),
    "resumed": lambda b: f" after {b.get('reason', '?')}",
    "battery_low": lambda b: f" {b.get('percent', '?')}% (~{b.get('minutes_left', '?')} min left)",
    "journal_damaged": _damage,
    "reserve_spent": lambda b: (
        f": card full, {b.get('left_bytes', '?')} of {b.get('reserve_bytes', '?')} bytes of "
        "journal room left"
    ),
}


def describe(kind: str, body: dict[str, Any]) -> str:
    """The alert in words: its label, then what the body says (``STOPPAGE weather: rain on
    the lens``). A kind that is no alert (shown only on a flagged line) stays as it is."""
    if kind == "dock_alert":
        level = str(body.get("level", "?"))
        return f"{DOCK_LABELS.get(level) or 'DOCK ' + level.upper()}: {body.get('text', '')}"
    if kind == ARCHIVE_ALERT_KIND:
        return _archive(body)
    label = ALERT_LABELS.get(kind)
    if label is None:
        return kind.upper() or "?"
    detail = _DETAILS.get(kind)
    return label + (detail(body) if detail else "")


def age_seconds(utc: str, now_ns: int) -> float | None:
    try:
        return (now_ns - parse_utc(utc)) / 1e9
    except ValueError:
        return None


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "at an unknown time"
    if seconds < 0:
        return f"in {-seconds:.0f}s (device clock ahead)"
    return f"{format_duration(seconds)} ago"


def format_duration(seconds: float) -> str:
    """``7h59m``, ``3m05s``, ``2d04h``: a clock offset for people."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_status_line(e: StatusEvent) -> str:
    """``-- 2026-11-27 05:10:03Z  cam-0001 (A1024)  recording started``: a status, not an
    alert (no verdict, never ``!!``); only verified statuses become lines."""
    when = e.utc.replace("T", " ")[:19] + "Z" if e.utc else "????-??-?? ??:??:??Z"
    return f"-- {when}  {e.device} ({e.officer or 'no officer'})  {e.text}"


def format_line(v: Verdict, now_ns: int) -> str:
    """One line: time, device, officer, reason, how long ago, and the verdict last.

    ``now_ns`` is "now" on the device's clock (``Watcher.clocks``), so a device whose
    clock runs ahead, such as a fast simulated shift, does not read "in N s".

    A flagged alert starts with ``!!`` and never reads as genuine."""
    when = v.utc.replace("T", " ")[:19] + "Z" if v.utc else "????-??-?? ??:??:??Z"
    who = f"{v.device or '?'} ({v.officer or 'no officer'})"
    if v.kind == "dock_alert":
        who = f"{v.device} (dock, camera {v.body.get('device', '?')} of {v.officer or '?'})"
    elif v.kind == ARCHIVE_ALERT_KIND:
        who = f"{v.device} (archive 档案系统)"
    age = format_age(age_seconds(v.utc, now_ns)) if v.utc else ""
    what = describe(v.kind, v.body) if v.kind else "unreadable message"
    unsequenced = v.kind in ("dock_alert", ARCHIVE_ALERT_KIND)
    seq = f"#{v.seq}" if v.seq is not None else ("" if unsequenced else "#?")
    if v.genuine:
        return f"{when}  {who}  {what}  {age}  [verified{' ' + seq if seq else ''}]"
    return f"!! {when}  {who}  {what}  {age}  [NOT GENUINE {v.verdict} {seq}: {v.problem}]"


def format_json(v: Verdict, now_ns: int) -> str:
    data = v.to_dict()
    age = age_seconds(v.utc, now_ns) if v.utc else None
    data["genuine"] = v.genuine
    data["reason"] = v.body.get("reason", "") if isinstance(v.body, dict) else ""
    data["text"] = describe(v.kind, v.body) if v.kind else ""
    data["age_s"] = None if age is None else round(age, 3)
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def format_status_rows(rows: list[dict[str, Any]]) -> list[str]:
    """A fixed-width table of device statuses (rows as ``alerting.watch.collect_status``)."""
    header = ("DEVICE", "OFFICER", "UNIT", "ONLINE", "STATE", "BATT", "HEAD", "SINCE", "CHECK")
    table = [header]
    for r in rows:
        head = r.get("head")
        table.append(
            (
                r["device"],
                r.get("officer") or "-",
                r.get("unit") or "-",
                {True: "online", False: "OFFLINE", None: "?"}[r.get("online")],
                r.get("state") or "-",
                "-" if r.get("battery") in (None, -1) else f"{r['battery']}%",
                ("-" if not head else f"{head['seq']}:{head['hash'][:12]}")
                + (f" (seen {r['head_seen']['seq']})" if r.get("head_seen") else ""),
                (r.get("utc") or "-").replace("T", " ")[:19],
                f"!! {r['problem']}"
                if r.get("problem")
                else ("no status yet" if r.get("online") is None else "verified"),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
