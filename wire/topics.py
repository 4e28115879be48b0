"""MQTT topics and alert kinds: the one place camera, dock and supervisor take them from.

A camera publishes on ``bodycam/<unit>/<device>/<leaf>`` (``alert``, ``status``) and reads
``.../ack``; a dock on ``bodycam/<unit>/dock/<dock>/<leaf>``; an archive its case-file
deadline alerts on ``bodycam/<unit>/archive/<archive>/alert``. Unit and device ids become
topic levels only when they cannot be wildcards, separators or empty.
"""

from __future__ import annotations

import re

ALERT_KINDS = ("stoppage", "resumed", "battery_low", "journal_damaged", "reserve_spent")
"""Journal record kinds a camera sends as alerts (every other kind stays in the journal)."""
DOCK_WARNING, DOCK_VIOLATION, DOCK_FLAG = "warning", "violation", "flag"
DOCK_ALERT_LEVELS = (DOCK_WARNING, DOCK_VIOLATION, DOCK_FLAG)
"""The ``level`` of a dock's ``dock_alert`` message: the 24-hour rule's warning (20 h) and
violation (24 h), and a flag a docking raised. The dock's code takes its levels from here."""
ARCHIVE_ALERT_KIND = "archive_alert"
ARCHIVE_DUE_SOON, ARCHIVE_OVERDUE = "due_soon", "overdue"
ARCHIVE_ALERT_LEVELS = (ARCHIVE_DUE_SOON, ARCHIVE_OVERDUE)
"""The ``level`` of an archive's ``archive_alert`` message: a case file's 30-day rule at
day 25 (due soon) and at day 30 (overdue). The archive's code takes its levels from here."""
TOPIC_ROOT = "bodycam"
_TOPIC_PART = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)


def alert_topic(unit: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{_part(device)}/alert"


def status_topic(unit: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{_part(device)}/status"


def ack_topic(unit: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{_part(device)}/ack"


def _part(value: str) -> str:
    """Unit and device ids become topic levels: no wildcards, no slashes, no empties."""
    if not isinstance(value, str) or not _TOPIC_PART.match(value):
        raise ValueError(f"{value!r} cannot be an MQTT topic level (letters, digits, . _ -)")
    return value


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """``(unit, device, leaf)`` for ``bodycam/<unit>/<device>/<leaf>``, else None."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT:
        return None
    return parts[1], parts[2], parts[3]


DOCK_LEVEL = "dock"
"""The second level that marks a dock's topics: ``bodycam/<unit>/dock/<dock>/<leaf>``."""


def dock_alert_topic(unit: str, dock: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{DOCK_LEVEL}/{_part(dock)}/alert"


def dock_status_topic(unit: str, dock: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{DOCK_LEVEL}/{_part(dock)}/status"


def parse_dock_topic(topic: str) -> tuple[str, str, str] | None:
    """``(unit, dock, leaf)`` for ``bodycam/<unit>/dock/<dock>/<leaf>``, else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT or parts[2] != DOCK_LEVEL:
        return None
    return parts[1], parts[3], parts[4]


ARCHIVE_LEVEL = "archive"
"""The second level that marks an archive's topics: ``bodycam/<unit>/archive/<id>/alert``."""


def archive_alert_topic(unit: str, archive: str) -> str:
    return f"{TOPIC_ROOT}/{_part(unit)}/{ARCHIVE_LEVEL}/{_part(archive)}/alert"


def parse_service_topic(topic: str) -> tuple[str, str, str, str] | None:
    """``(unit, level, id, leaf)`` for ``bodycam/<unit>/<level>/<id>/<leaf>`` where level
    is ``dock`` or ``archive``, else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT or parts[2] not in (DOCK_LEVEL, ARCHIVE_LEVEL):
        return None
    return parts[1], parts[2], parts[3], parts[4]


#: Subscriptions: every camera's alerts, every dock's and archive's alerts, every camera's
#: status.
ALERTS = f"{TOPIC_ROOT}/+/+/alert"
DOCK_ALERTS = f"{TOPIC_ROOT}/+/{DOCK_LEVEL}/+/alert"
ARCHIVE_ALERTS = f"{TOPIC_ROOT}/+/{ARCHIVE_LEVEL}/+/alert"
STATUSES = f"{TOPIC_ROOT}/+/+/status"
