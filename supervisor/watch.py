"""The supervisor's MQTT side: watch alerts, read statuses, send acks.

Threads: paho's network thread (``loop_start``) calls :meth:`Watcher._on_message`, which
judges and hands each verdict to ``emit`` under a lock; the command's main thread only
waits and saves the seen-state every half second and at the end.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from evidence.broker import ConnectionSettings, make_client
from evidence.registry import Registry
from firmware.alerts import TOPIC_ROOT, Ack, ack_topic, parse_topic

from .judge import AlertJudge, Verdict

_log = logging.getLogger(__name__)

ALERTS = f"{TOPIC_ROOT}/+/+/alert"
DOCK_ALERTS = f"{TOPIC_ROOT}/+/dock/+/alert"
STATUSES = f"{TOPIC_ROOT}/+/+/status"


@dataclass(frozen=True)
class BrokerSettings(ConnectionSettings):
    """The supervisor's ``[mqtt]`` table: the broker connection and a fixed client id."""

    host: str = "localhost"
    client_id: str = ""  # "" = the command's own (a persistent session for the watch)

    def client(self, client_id: str, *, clean: bool = True) -> mqtt.Client:
        """The watch's persistent session logs in as ``username``; a one-off (clean)
        connection as ``<username>.cmd``: the broker makes the user name the client id, so
        ``status`` or ``ack`` under the same name would take over the watch's session."""
        settings = (
            replace(self, username=f"{self.username}.cmd") if clean and self.username else self
        )
        client = make_client(
            settings, self.client_id or client_id, protocol=mqtt.MQTTv311, clean_session=clean
        )
        client.reconnect_delay_set(0.1, 5)
        return client


class Watcher:
    """Subscribes to every alert and status, judges each, emits verdicts worth showing.

    The session is persistent (``clean_session=False``, a fixed client id): alerts published
    while the watch was not running are delivered when it comes back, as long as the broker
    kept the session; the seen-state drops those it had already shown."""

    def __init__(
        self,
        settings: BrokerSettings,
        judge: AlertJudge,
        emit: Callable[[Verdict], None],
        *,
        client_id: str = "bodycam-supervisor",
    ) -> None:
        self.settings = settings
        self.judge = judge
        self.emit = emit
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = settings.client(client_id, clean=False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.counts: dict[str, int] = {}
        self._failing = False
        self._stopping = False

    def start(self) -> None:
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        with self.lock:  # let a message being shown finish (and be acknowledged)
            pass
        self.client.disconnect()
        self.client.loop_stop()
        with self.lock:
            self.judge.state.save()

    def save(self) -> None:
        with self.lock:
            self.judge.state.save()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            _log.error("broker refused the supervisor: %s", reason_code)
            return
        if self._failing:
            _log.warning("connected to %s:%d again", self.settings.host, self.settings.port)
        else:
            _log.info("connected to %s:%d", self.settings.host, self.settings.port)
        self._failing = False
        client.subscribe([(ALERTS, 1), (DOCK_ALERTS, 1), (STATUSES, 1)])

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._failing:  # once per outage; paho keeps retrying with backoff
            self._failing = True
            _log.warning(
                "cannot reach the broker at %s:%d; retrying", self.settings.host, self.settings.port
            )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            _log.error("broker refused the subscription: %s", reason_codes)
            return
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()
        if not self._stopping:
            _log.warning("disconnected from the broker (%s); reconnecting", reason_code)
            self._failing = True

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        parts = parse_topic(message.topic)
        leaf = parts[2] if parts else message.topic.rsplit("/", 1)[-1]
        with self.lock:
            if leaf == "status":
                _, problem = self.judge.status(message.topic, message.payload)
                if problem:
                    _log.warning("%s: %s", message.topic, problem)
                return
            verdict = self.judge.alert(message.topic, message.payload)
            self.counts[verdict.verdict] = self.counts.get(verdict.verdict, 0) + 1
            if verdict.shown:
                self.emit(verdict)


def collect_status(
    settings: BrokerSettings,
    judge: AlertJudge,
    registry: Registry,
    *,
    wait_s: float,
    connect_timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Read the retained status of every device and return one row per device.

    Devices in the registry that never published a status are listed too (online ``None``),
    so a camera that was never switched on is visible."""
    statuses: dict[str, dict[str, Any]] = {}
    last = [time.monotonic()]
    subscribed = threading.Event()
    client = settings.client(f"bodycam-supervisor-status-{os.getpid()}", clean=True)

    def on_connect(c, u, flags, rc, props):
        if not rc.is_failure:
            c.subscribe(STATUSES, 1)

    def on_subscribe(c, u, mid, rcs, props):
        last[0] = time.monotonic()
        subscribed.set()

    def on_message(c, u, message):
        parts = parse_topic(message.topic)
        if not parts:
            return
        msg, problem = judge.status(message.topic, message.payload)
        row: dict[str, Any] = {"device": parts[1], "unit": parts[0], "problem": problem}
        if msg is not None:
            row.update(
                online=msg.online,
                state=msg.body.get("state"),
                battery=msg.body.get("battery"),
                head=msg.body.get("head"),
                utc=msg.utc,
            )
        statuses[parts[1]] = row
        last[0] = time.monotonic()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    try:
        if not subscribed.wait(connect_timeout):
            raise OSError(f"cannot reach the broker at {settings.host}:{settings.port}")
        # Retained messages follow the SUBACK at once; stop when they have stopped coming.
        end = time.monotonic() + wait_s
        while time.monotonic() < end and time.monotonic() - last[0] < min(0.3, wait_s):
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    rows = []
    for device in sorted(set(statuses) | {e.device_id for e in registry}):
        row = statuses.get(device) or {"device": device, "online": None, "problem": ""}
        entry = registry.get(device)
        row.setdefault("unit", entry.unit if entry else "")
        row["officer"] = entry.officer if entry else ""
        seen = judge.state.devices.get(device)
        if seen and seen.status and seen.status.get("body", {}).get("head"):
            # The last will was signed at connect time; the watch may have seen a newer head.
            newest = seen.status["body"]["head"]
            if not row.get("head") or newest["seq"] > row["head"]["seq"]:
                row["head_seen"] = newest
        rows.append(row)
    return rows


def send_ack(
    settings: BrokerSettings,
    unit: str,
    device: str,
    alert_seq: int,
    by: str,
    *,
    timeout: float = 5.0,
) -> None:
    """Publish an ack (QoS 1) and wait for the broker's PUBACK."""
    ack = Ack(alert_seq, by)
    Ack.from_bytes(ack.to_bytes())  # validates ``by``
    connected = threading.Event()
    client = settings.client(f"bodycam-supervisor-ack-{os.getpid()}", clean=True)
    client.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and connected.set()
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise OSError(f"cannot reach the broker at {settings.host}:{settings.port}")
        info = client.publish(ack_topic(unit, device), ack.to_bytes(), qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise OSError("the broker did not acknowledge the ack in time")
    finally:
        client.disconnect()
        client.loop_stop()
