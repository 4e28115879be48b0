"""The supervisor's MQTT side: watch alerts, read statuses, send acks and receipts.

Threads: paho's network thread (``loop_start``) calls :meth:`Watcher._on_message`, which
judges and hands each verdict to ``emit`` under a lock, then (with a console key) sends the
camera a signed :class:`~wire.ack.Receipt` for the alert it has just shown; the
command's main thread only waits and saves the seen-state every half second and at the end.
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

from evidence.clock import format_utc, parse_utc
from evidence.identity import DeviceIdentity
from evidence.registry import Registry
from wire.ack import Ack, Receipt
from wire.broker import ConnectionSettings, make_client
from wire.message import Message
from wire.topics import (
    ALERT_KINDS,
    ALERTS,
    ARCHIVE_ALERTS,
    DOCK_ALERTS,
    STATUSES,
    ack_topic,
    parse_topic,
)

from .judge import DUPLICATE, VERIFIED, AlertJudge, Verdict

_log = logging.getLogger(__name__)

# The console's reconnect backoff (paho's default goes up to 120 s): a console that was
# cut off is back within RECONNECT_MAX_S of the broker's return.
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0


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
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.enable_logger(logging.getLogger("paho"))  # shown with -v (DEBUG)
        return client


@dataclass
class StatusEvent:
    """A change in what a camera says it is doing, worth one line (not an alert)."""

    device: str
    unit: str
    officer: str
    online: bool
    state: str
    utc: str
    text: str  # "recording started", "shift ended", "dock finished", ...


def describe_status(previous: tuple[bool, str] | None, online: bool, state: str) -> str | None:
    """The line for a status change, or None when nothing a supervisor cares about changed.

    ``state`` is the camera's indicator state, or one of the event states the camera's link
    publishes (``recording_stopped``; ``docked``: a dock receipted its media;
    ``shift_ended``: switched off cleanly; ``connection_lost``: its last will)."""
    now = (online, state)
    if previous == now:
        return None
    if online and state == "recording_stopped":
        if previous is not None and previous[0] and previous[1] != "recording":
            # The indicator's state left "recording" in a periodic status published
            # before the stop's own event status: that line already said it.
            return None
        return "recording stopped"
    if not online:
        if state == "shift_ended":
            return "shift ended (camera switched off)"
        return "offline (connection lost)" if state == "connection_lost" else f"offline ({state})"
    if state == "recording" and (previous is None or previous[1] != "recording"):
        return "recording started"
    if state == "docked":
        return "dock finished (the dock has receipted its media)"
    if previous is None:
        return f"online, {state}"
    if previous[1] == "recording":  # a camera whose link does not say recording_stopped
        return f"recording stopped ({state})"
    if not previous[0]:
        return f"online again, {state}"
    return None  # e.g. ready -> stoppage: the stoppage alert says it


class DeviceClocks:
    """Each camera's clock as its own signed messages give it, so an alert's age is judged
    on the clock that stamped it: a simulated shift running faster than real time, or a
    camera whose clock is off, shows how long ago *by its clock*, and the offset is said
    once, not taken for a fault on every line."""

    def __init__(self) -> None:
        self._ref: dict[str, tuple[int, int]] = {}  # device -> (device utc ns, wall ns)

    def observe(self, device: str, utc: str, wall_ns: int) -> None:
        try:
            device_ns = parse_utc(utc)
        except ValueError:
            return
        old = self._ref.get(device)
        if old is None or device_ns - old[0] >= wall_ns - old[1]:
            self._ref[device] = (device_ns, wall_ns)  # the newest reading wins

    def now_ns(self, device: str, wall_ns: int) -> int:
        """The device's clock now, estimated; the wall clock when the device's runs behind
        or is unknown (a clock behind is still shown as such: ancient alerts look old)."""
        ref = self._ref.get(device)
        return wall_ns if ref is None else max(wall_ns, ref[0] + (wall_ns - ref[1]))

    def offset_s(self, device: str, wall_ns: int) -> float:
        return (self.now_ns(device, wall_ns) - wall_ns) / 1e9


class Watcher:
    """Subscribes to every alert (cameras', docks', archives') and status, judges each,
    emits verdicts worth showing.

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
        console: DeviceIdentity | None = None,
        on_status: Callable[[StatusEvent], None] | None = None,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        # Called under the lock for a message from a camera the registry does not hold:
        # a new edition may have just been written (a simulated shift registers its camera
        # and connects within milliseconds), so it is read before the camera is judged.
        self.refresh = refresh
        self.judge = judge
        self.emit = emit
        self.console = console
        self.on_status = on_status
        self.clocks = DeviceClocks()
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connect_failed = threading.Event()  # the first attempt (or a later one) failed
        self.connect_error = ""
        self.receipts_sent = 0
        self._states: dict[str, tuple[bool, str]] = {}
        self.client = settings.client(client_id, clean=False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.counts: dict[str, int] = {}
        self._failing = False
        self._stopping = False
        self._connected_once = False  # before that, the command reports a failure itself

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
            self.connect_error = f"the broker refused the connection: {reason_code}"
            self.connect_failed.set()
            return
        if self._failing:
            _log.warning("connected to %s:%d again", self.settings.host, self.settings.port)
        else:
            _log.info("connected to %s:%d", self.settings.host, self.settings.port)
        self._failing = False
        self._connected_once = True
        client.subscribe([(ALERTS, 1), (DOCK_ALERTS, 1), (ARCHIVE_ALERTS, 1), (STATUSES, 1)])

    def _on_connect_fail(self, client, userdata) -> None:
        self.connect_error = "connection refused or host unreachable"
        self.connect_failed.set()
        # Once per outage (paho keeps retrying with backoff); before the first connection
        # the command itself reports the failure.
        if self._connected_once and not self._failing:
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
        wall_ns = time.time_ns()
        with self.lock:
            if self.refresh is not None and parts and self.judge.registry.get(parts[1]) is None:
                self.refresh()
            if leaf == "status":
                msg, problem = self.judge.status(message.topic, message.payload)
                if problem:
                    _log.warning("%s: %s", message.topic, problem)
                elif msg is not None and parts is not None:
                    self.clocks.observe(msg.device, msg.utc, wall_ns)
                    self._status_event(parts[0], msg)
                return
            verdict = self.judge.alert(message.topic, message.payload)
            self.counts[verdict.verdict] = self.counts.get(verdict.verdict, 0) + 1
            if verdict.genuine:
                self.clocks.observe(verdict.device, verdict.utc, wall_ns)
            if verdict.shown:
                self.emit(verdict)
            # Shown now, or shown before (a resend: our receipt was lost): say so to the camera.
            self._receipt(verdict)

    def _status_event(self, unit: str, msg: Message) -> None:
        state = str(msg.body.get("state", ""))
        text = describe_status(self._states.get(msg.device), msg.online, state)
        self._states[msg.device] = (msg.online, state)
        if text is None or self.on_status is None:
            return
        entry = self.judge.registry.get(msg.device)
        self.on_status(
            StatusEvent(
                msg.device, unit, entry.officer if entry else "", msg.online, state, msg.utc, text
            )
        )

    def _receipt(self, v: Verdict) -> None:
        """Publish a signed receipt for a camera alert this console has shown."""
        if self.console is None or v.seq is None or v.kind not in ALERT_KINDS:
            return
        if v.verdict == DUPLICATE:
            seen = self.judge.state.devices.get(v.device)
            if v.problem or seen is None or seen.recent.get(v.seq) != v.hash:
                return  # a repeated forgery, not a genuine alert shown before
        elif v.verdict != VERIFIED:
            return
        receipt = Receipt.sign(self.console, v.device, v.seq, v.hash, format_utc(time.time_ns()))
        info = self.client.publish(ack_topic(v.unit, v.device), receipt.to_bytes(), qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.receipts_sent += 1
        else:  # the camera resends the alert; it is shown as a duplicate and receipted then
            _log.warning("receipt for %s #%d not sent: %s", v.device, v.seq, info.rc)


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
