"""The 30-day alerts: a signed MQTT message to the supervisor at day 25 and at day 30.

The decision is pure (:func:`due`): an open case whose deadline is 5 days away or less
gets its ``due_soon`` alert once, an open case past its deadline its ``overdue`` alert
once (only that one, if both fall due at once). :class:`CaseAlerter` publishes each on
``bodycam/<unit>/archive/<archive>/alert`` (QoS 1; ``wire.topics``) as a signed message of
kind ``archive_alert`` (:class:`archive.signed.ArchiveAlert`: the shape of journal-format.md
section 4's signed messages, Ed25519 by the archive's key, which the registry's
``archives`` lists; ``bodycam-supervisor watch`` checks it so), waits for the broker's
acknowledgement, then records that it was
sent (``cases.alerted_days`` = 25 or 30) and audits it; an unacknowledged alert is
retried at the next check. Threads: paho's network thread only; checks run in the
caller's thread (``bodycam-archive alerts`` loops with a stop Event).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa

from evidence.clock import format_utc, parse_utc
from evidence.identity import DeviceIdentity
from wire.broker import ConnectionSettings, make_client
from wire.topics import ARCHIVE_DUE_SOON, ARCHIVE_OVERDUE, archive_alert_topic

from .cases import LIMIT_DAYS, SOON_DAYS
from .schema import cases, entries
from .session import SYSTEM
from .signed import ArchiveAlert

__all__ = ["LEVELS", "ArchiveAlert", "CaseAlerter", "Due", "archive_alert_topic", "due"]

_log = logging.getLogger(__name__)
_DAY_NS = 86_400 * 10**9
LEVELS = {LIMIT_DAYS - SOON_DAYS: ARCHIVE_DUE_SOON, LIMIT_DAYS: ARCHIVE_OVERDUE}  # day -> level
KIND = ArchiveAlert.KIND


def sign_alert(identity: DeviceIdentity, utc: str, body: dict[str, Any]) -> ArchiveAlert:
    return ArchiveAlert.sign(identity, utc, body)


@dataclass(frozen=True)
class Due:
    number: str
    day: int  # 25 or 30
    deadline_utc: str


def due(rows: list[dict[str, Any]], deadlines: dict[str, str | None], now_ns: int) -> list[Due]:
    """Which alerts are due now: ``rows`` are cases (``number``, ``status``,
    ``alerted_days``), ``deadlines`` their deadline stamps."""
    out = []
    for row in rows:
        deadline = deadlines.get(row["number"])
        if row["status"] != "open" or deadline is None:
            continue
        left = parse_utc(deadline) - now_ns
        if left <= 0 and row["alerted_days"] < LIMIT_DAYS:
            out.append(Due(row["number"], LIMIT_DAYS, deadline))
        elif 0 < left <= SOON_DAYS * _DAY_NS and row["alerted_days"] < LIMIT_DAYS - SOON_DAYS:
            out.append(Due(row["number"], LIMIT_DAYS - SOON_DAYS, deadline))
    return out


class CaseAlerter:
    """Publishes the due alerts of one archive to a broker."""

    def __init__(self, archive, settings: ConnectionSettings, unit: str) -> None:
        self.archive = archive
        self.unit = unit
        self.topic = archive_alert_topic(unit, archive.identity.device_id)  # ValueError: one line
        self.connected = threading.Event()
        self.client = make_client(
            settings,
            archive.identity.device_id,
            protocol=mqtt.MQTTv311,
            default_username=archive.identity.device_id,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.settings = settings

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            _log.warning("broker refused the archive: %s", reason)
            return
        self.connected.set()

    def start(self) -> None:
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _due(self, now_ns: int) -> list[Due]:
        arch = self.archive
        with arch.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(cases)).mappings()]
            items: dict[int, list[dict[str, Any]]] = {}
            for e in conn.execute(sa.select(entries).order_by(entries.c.id)).mappings():
                items.setdefault(e["case_id"], []).append(dict(e))
        deadlines = {r["number"]: arch.deadline_of(r, items.get(r["id"], [])) for r in rows}
        return due(rows, deadlines, now_ns)

    def check(self, now_ns: int | None = None, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Publish every alert due now, each once; the bodies sent."""
        arch = self.archive
        now_ns = arch.clock.time_ns() if now_ns is None else now_ns
        sent = []
        for d in self._due(now_ns):
            level = LEVELS[d.day]
            body = {
                "level": level,
                "case": d.number,
                "day": d.day,
                "deadline_utc": d.deadline_utc,
                "text": f"case {d.number}: day {d.day} of {LIMIT_DAYS}; it must be archived "
                f"by {d.deadline_utc} (Archives Law Art. 34)",
            }
            message = sign_alert(arch.identity, format_utc(now_ns), body)
            info = self.client.publish(self.topic, message.to_bytes(), qos=1)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass
            if not info.is_published():
                _log.warning("alert for case %s not acknowledged; will retry", d.number)
                continue
            with arch.engine.begin() as conn:
                conn.execute(
                    cases.update().where(cases.c.number == d.number).values(alerted_days=d.day)
                )
                arch._audit(conn, "case", SYSTEM, f"case {d.number}", {"event": "alert", **body})
            _log.warning("alert: %s", body["text"])
            sent.append(body)
        return sent
