"""The dock's supervisor alerts: devices that recorded but have not docked in time.

Listens to devices' retained, signed status messages (``bodycam/+/+/status``), keeps the
last verified journal head of each in the index, and publishes a signed alert on
``bodycam/<unit>/dock/<dock>/alert`` (QoS 1) when a device's undocked evidence is 20 hours
old (``warning``) and 24 hours old (``violation``); each alert is sent once per pending
period. Decisions are in :mod:`dock.deadlines`; this module is the thin MQTT service.

Threads: paho's network thread only queues messages; the watcher's own daemon thread
verifies them, writes the index and publishes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from evidence.clock import format_utc
from evidence.dockjournal import MAX_TEXT, bounded
from evidence.exc import RecordError
from evidence.identity import DeviceIdentity
from evidence.registry import DeviceEntry, Registry
from wire.broker import ConnectionSettings, make_client
from wire.message import Message, sign_message
from wire.topics import DOCK_FLAG, STATUSES, dock_alert_topic, dock_status_topic

from . import deadlines
from .store import Store

_log = logging.getLogger(__name__)
STATUS_TOPIC = STATUSES
# Far below the broker's max_packet_size (65536): every text in an alert body is bounded
# (evidence.dockjournal.bounded: ids 64 characters, texts 512), so a 200 kB device id cannot
# make the broker drop the dock's connection ("oversize packet") and block every later flag
# behind the one that never goes out.
MAX_ALERT_BYTES = 16 * 1024
MAX_ID = 64  # characters of an id in an alert body (registered ids are at most 64)


@dataclass(frozen=True)
class MqttConfig(ConnectionSettings):
    """The dock's broker connection plus its unit and alert deadlines."""

    unit: str = ""
    warn_h: int = deadlines.WARN_H
    limit_h: int = deadlines.LIMIT_H
    check_s: float = 60.0


def dock_alert(identity: DeviceIdentity, utc: str, body: dict[str, Any]) -> bytes:
    """A dock alert, signed like a status message (Ed25519 over canonical JSON sans sig)."""
    return sign_message(identity, kind="dock_alert", utc=utc, body=body).to_bytes()


class StatusHeads:
    """Domain side: record verified status heads; decide which alerts are due."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def note(self, topic: str, payload: bytes) -> str | None:
        """Take one status message; returns why it was ignored, or None."""
        try:
            msg = Message.from_bytes(payload)
        except RecordError as exc:
            return f"unreadable status on {topic}: {exc}"
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] != msg.device:
            return f"status on {topic} is from device {msg.device}"
        entry = self.store.registry().get(msg.device)
        if entry is None:
            return f"status from unregistered device {msg.device}"
        try:
            msg.verify(entry.public_key)
        except RecordError:
            return f"status from {msg.device} has a bad signature"
        head = msg.head
        if head is None:
            return None
        stored = self.store.head(msg.device)
        stored_seq = stored[0] if stored else -1
        rows = self.store.index.query("SELECT * FROM status_heads WHERE device=?", (msg.device,))
        previous = rows[0] if rows else None
        if previous and previous["seq"] > head[0]:
            return None  # an older retained message
        since = deadlines.next_pending_since(previous, stored_seq, head[0], msg.utc)
        self.store.index.execute(
            "INSERT INTO status_heads(device, seq, hash, utc, pending_since) VALUES (?,?,?,?,?)"
            " ON CONFLICT(device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash,"
            " utc=excluded.utc, pending_since=excluded.pending_since",
            (msg.device, head[0], head[1], msg.utc, since),
        )
        return None

    def due(self, now_ns: int, warn_h: int, limit_h: int) -> list[tuple[deadlines.Pending, str]]:
        heads = {r["device"]: r["seq"] for r in self.store.index.query("SELECT * FROM heads")}
        rows = self.store.index.query("SELECT * FROM status_heads")
        out = []
        for p in deadlines.pending_devices(rows, heads):
            level = deadlines.alert_level(p, now_ns, warn_h, limit_h)
            if level is None:
                continue
            sent = self.store.index.query(
                "SELECT 1 FROM alerts WHERE device=? AND level=? AND since_utc=?",
                (p.device, level, p.since_utc),
            )
            if not sent:
                out.append((p, level))
        return out


class DeadlineWatcher:
    """The MQTT service around :class:`StatusHeads`."""

    def __init__(
        self, store: Store, identity: DeviceIdentity, config: MqttConfig, clock: Any = None
    ) -> None:
        self.store = store
        self.identity = identity
        self.config = config
        self.clock = clock or store.clock
        self.heads = StatusHeads(store)
        self.sent: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.connected = threading.Event()
        self._check_lock = threading.Lock()
        self.heard = threading.Event()  # set after each status message is handled
        self._published_head: tuple[int, str] | None = None
        self._thread: threading.Thread | None = None
        self.disconnects = 0  # connections lost (an oversize publish would be one)
        self.client = make_client(
            config,
            identity.device_id,  # the broker makes the user name the client id anyway
            protocol=mqtt.MQTTv311,
            default_username=identity.device_id,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self._queue.put((m.topic, bytes(m.payload)))

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            _log.warning("broker refused the dock: %s", reason)
            return
        client.subscribe(STATUS_TOPIC, qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self.disconnects += 1
            _log.warning("disconnected from the broker (%s); reconnecting", reason)

    def start(self) -> None:
        self.client.connect_async(
            self.config.host, self.config.port, keepalive=self.config.keepalive_s
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="dock-deadlines", daemon=True)
        self._thread.start()

    def check_now(self) -> None:
        """Ask the worker to check deadlines at once (tests, and after each docking)."""
        self._wake.set()

    def _run(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            try:
                topic, payload = self._queue.get(timeout=0.1)
                why = self.heads.note(topic, payload)
                if why:
                    _log.warning("%s", why)
                self.heard.set()
            except queue.Empty:
                pass
            if self._wake.is_set() or time.monotonic() >= next_check:
                self._wake.clear()
                try:
                    self.check()
                except Exception:  # keep watching; the next check retries
                    _log.exception("deadline check failed")
                next_check = time.monotonic() + self.config.check_s

    def check(self) -> list[dict[str, Any]]:
        """Publish the alerts now due (each once); called by the worker or directly."""
        with self._check_lock:
            return self._check()

    def _check(self) -> list[dict[str, Any]]:
        now = self.clock.time_ns()
        published = []
        registry = self.store.registry()
        for pending, level in self.heads.due(now, self.config.warn_h, self.config.limit_h):
            entry = registry.get(pending.device)
            unit = self._unit(entry, registry)
            device = bounded(pending.device, MAX_ID)
            body = {
                "level": level,
                "device": device,
                "officer": bounded(entry.officer if entry else "", MAX_ID),
                "since_utc": bounded(pending.since_utc, MAX_ID),
                "head": {
                    "seq": pending.head_seq,
                    "hash": bounded(pending.head_hash, MAX_ID),
                },
                "stored_seq": pending.stored_seq,
                "text": bounded(
                    f"{device} has held undocked recordings since "
                    f"{pending.since_utc} ({level}: the limit is {self.config.limit_h} h)",
                    MAX_TEXT,
                ),
            }
            if not self._publish(unit, body, now):
                _log.warning("alert for %s not acknowledged yet; will retry", pending.device)
                continue
            self.store.index.execute(
                "INSERT OR IGNORE INTO alerts(device, level, since_utc, sent_utc) VALUES (?,?,?,?)",
                (pending.device, level, pending.since_utc, format_utc(now)),
            )
            _log.warning("alert: %s", body["text"])
            published.append(body)
        published += self._publish_flags(now, registry)
        self._publish_head(registry)
        self.sent += published
        return published

    def _publish_head(self, registry: Registry | None = None) -> None:
        """The dock journal's head, signed and retained, so that a store rolled back later
        is caught against the last head a supervisor saw (as a camera's cut tail is)."""
        journal = self.store.journal
        if journal is None:
            return
        head = journal.head
        if head == self._published_head:
            return
        info = self.client.publish(
            dock_status_topic(self._unit(None, registry), self.identity.device_id),
            journal.signed_head().to_bytes(),
            qos=1,
            retain=True,
        )
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            return
        if info.is_published():
            self._published_head = head

    def _publish(self, unit: str, body: dict[str, Any], now: int) -> bool:
        payload = dock_alert(self.identity, format_utc(now), body)
        if len(payload) > MAX_ALERT_BYTES:  # cannot happen with bounded bodies; never send
            _log.error("dock alert of %d bytes not sent (limit %d)", len(payload), MAX_ALERT_BYTES)
            return True  # marked sent: retrying it would block every later alert
        info = self.client.publish(dock_alert_topic(unit, self.identity.device_id), payload, qos=1)
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass
        return info.is_published()

    def _unit(self, entry: DeviceEntry | None, registry: Registry | None = None) -> str:
        """The topic unit of a camera's alert: its registry unit, else the dock's, else the
        signed registry's (a supervisor refuses a unit it does not know)."""
        if entry and entry.unit:
            return entry.unit
        signed = registry.signature.unit if registry and registry.signature else ""
        return self.config.unit or signed or "unassigned"

    def _publish_flags(self, now: int, registry: Registry) -> list[dict[str, Any]]:
        """Each flag a docking raised (unregistered camera, altered media, cut journal
        tail, ...) goes to the supervisor once."""
        published = []
        rows = self.store.index.query(
            "SELECT * FROM flags WHERE id NOT IN (SELECT flag_id FROM flag_alerts) ORDER BY id"
        )
        for row in rows:
            entry = registry.get(row["device"])
            unit = self._unit(entry, registry)
            body = {  # the device id and detail may be a hostile camera's: bounded
                "level": DOCK_FLAG,
                "kind": bounded(row["kind"], MAX_ID),
                "device": bounded(row["device"], MAX_ID),
                "officer": bounded(entry.officer if entry else "", MAX_ID),
                "flagged_utc": bounded(row["utc"], MAX_ID),
                "text": bounded(row["detail"], MAX_TEXT),
            }
            if not self._publish(unit, body, now):
                _log.warning("flag %d not acknowledged yet; will retry", row["id"])
                break
            self.store.index.execute(
                "INSERT OR IGNORE INTO flag_alerts(flag_id, sent_utc) VALUES (?,?)",
                (row["id"], format_utc(now)),
            )
            published.append(body)
        return published

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.loop_stop()
        self.client.disconnect()
