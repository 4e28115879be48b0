"""The camera's MQTT link: alerts out (QoS 1, in order, until a console has shown them),
status retained, acks and console receipts in.

Layers: :class:`firmware.alerts.Outbox` decides *what* is pending (pure, durable cursor);
:class:`DeviceSession` is one device's MQTT conversation (paho client, in-flight window,
status and last will, acks) without a thread of its own; :class:`LinkDriver` runs the
network I/O of one or many sessions in a single thread with a selector (the camera has one
session; ``scripts/bench-alerts`` puts 1,000 in a few drivers); :class:`AlertLink` is what
the recorder starts: one session on one daemon driver thread.

Threads: the journal listener (:meth:`DeviceSession._on_record`) runs in whichever thread
appends to the journal and only enqueues and wakes the driver. Everything else, including
paho callbacks and the ``on_ack`` callback, runs in the driver thread.
"""

from __future__ import annotations

import logging
import random
import select
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from evidence.clock import format_utc
from evidence.journal import Journal
from evidence.record import Record
from wire.ack import Receipt, check_receipt, parse_ack_payload
from wire.broker import ConnectionSettings, make_client
from wire.message import sign_status
from wire.topics import ack_topic, alert_topic, status_topic

from .alerts import CURSOR_NAME, AlertCursor, Outbox

_log = logging.getLogger(__name__)

# The [mqtt] table of the recorder's config. host "" means: no alerts link.
MQTT_DEFAULTS: dict[str, Any] = {
    "host": "",
    "port": 8883,
    "unit": "",
    "ca_file": "",  # CA that signed the broker's certificate; required (TLS) ...
    "insecure": False,  # ... unless this is true: plain TCP, for test brokers only
    "cert_file": "",  # optional client certificate
    "key_file": "",
    "username": "",  # "" = the device id
    "password_file": "",  # one line, mode 0600, written by scripts/issue-broker-credential
    "keepalive_s": 30,
    "status_interval_s": 60.0,
    "reconnect_max_s": 30.0,
    "inflight": 16,  # below the broker's max_inflight_messages (20)
    # With consoles in the trusted registry: resend what no console has receipted, first
    # after receipt_resend_s, doubling up to receipt_resend_max_s (and at each reconnect).
    "receipt_resend_s": 2.0,
    "receipt_resend_max_s": 120.0,
}


@dataclass(frozen=True)
class MqttSettings(ConnectionSettings):
    """The camera's link: the broker connection plus its topics, status and window."""

    unit: str = ""
    status_interval_s: float = 60.0
    reconnect_max_s: float = 30.0
    inflight: int = 16
    status_min_interval_s: float = 1.0
    cursor_path: str = ""  # "" = alerts.cursor next to the journal
    receipt_resend_s: float = 2.0
    receipt_resend_max_s: float = 120.0

    @classmethod
    def from_config(cls, table: dict[str, Any]) -> MqttSettings:
        """Build from the ``[mqtt]`` table of a config loaded with :data:`MQTT_DEFAULTS`."""
        names = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in table.items() if k in names})
        if not settings.host:
            raise ValueError("mqtt.host is empty: no broker configured")
        if not settings.unit:
            raise ValueError("mqtt.unit is empty: the unit names the topics")
        if not settings.receipt_resend_s > 0:
            raise ValueError("mqtt.receipt_resend_s must be > 0 (seconds before a resend)")
        if not settings.receipt_resend_max_s >= settings.receipt_resend_s:
            raise ValueError("mqtt.receipt_resend_max_s must be >= mqtt.receipt_resend_s")
        return settings


CURSOR_SAVE_S = 0.25
# Journal records that the supervisor sees as status lines: the next status published
# carries this state once (then the indicator's state again). Recording starting shows in
# the indicator state too, but a short recording could fall between two statuses.
STATUS_EVENTS = {"recording_started": "recording", "receipt": "docked"}

StatusSource = Callable[[], tuple[str, int]]  # -> (state, battery percent or -1)
AckCallback = Callable[[int, str], None]  # (alert_seq, by) in the driver thread


class DeviceSession:
    """One device's MQTT conversation; driven by a :class:`LinkDriver`."""

    def __init__(
        self,
        journal: Journal,
        settings: MqttSettings,
        *,
        on_ack: AckCallback | None = None,
        status_source: StatusSource | None = None,
        consoles: dict[str, str] | None = None,
    ) -> None:
        self.journal = journal
        self.settings = settings
        self.identity = journal.identity
        self.device = self.identity.device_id
        self.unit = settings.unit
        self.on_ack = on_ack
        self.status_source = status_source or (lambda: ("unknown", -1))
        cursor = Path(settings.cursor_path or journal.path.with_name(CURSOR_NAME))
        self.outbox = Outbox(AlertCursor(cursor))
        # Console id -> public key (from the trusted registry). With none, an alert is done
        # when the broker PUBACKs it; with some, only when a console's receipt says shown.
        self.consoles = dict(consoles or {})
        # alert seq -> (when, publish number) of its last publish, until it is receipted
        self._sent_at: dict[int, tuple[float, int]] = {}
        self._pub_no = 0  # publishes of alerts so far (orders them)
        self._last_new_no = -1  # publish number of the newest first-time publish
        self._resend_wait = settings.receipt_resend_s
        self._events: deque[str] = deque(maxlen=8)  # event states the next statuses carry
        # A clean stop says shift_ended; a simulated camera that goes on to its dock in
        # another process step says nothing, and the dock step's link speaks next.
        self.say_offline = True
        self.receipts = 0  # receipts that settled an alert (for tests and logs)
        self.resent = 0  # alerts published again because no receipt came
        self.topics = (
            alert_topic(self.unit, self.device),
            status_topic(self.unit, self.device),
            ack_topic(self.unit, self.device),
        )
        self.driver: LinkDriver | None = None
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()
        self.idle = threading.Event()  # set when nothing is pending or in flight
        self._inflight: dict[int, int] = {}  # mid -> alert seq, this connection only
        self._order: list[int] = []  # seqs in flight, in publish order
        self._done: set[int] = set()  # seqs PUBACKed but not yet contiguous
        self._sent_upto = self.outbox.acked_seq
        self._next_connect = 0.0
        self._backoff = 0.0
        self._status_due = 0.0
        self._status_last = 0.0
        self._status_dirty = True
        self._last_misc = 0.0
        self._last_save = 0.0
        self.published = 0
        # Listener first, then the disk: a record appended in between is seen twice and
        # queued once, never missed.
        journal.add_listener(self._on_record)
        self.outbox.load_journal(journal.path)

    @property
    def inflight(self) -> int:
        """Alerts published on this connection that the broker has not yet PUBACKed."""
        return len(self._order)

    # -- appending thread ------------------------------------------------------------
    def _on_record(self, record: Record) -> None:
        """Journal listener: enqueue and wake the driver; never blocks, never publishes."""
        self.outbox.offer(record)
        event = STATUS_EVENTS.get(record.kind)
        if event is not None:
            self._events.append(event)
        self._status_dirty = True
        self.idle.clear()
        if self.driver is not None:
            self.driver.wake(self)

    # -- driver thread ----------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        """A fresh client per connection: after a drop we resend from our own cursor, so
        paho must not also replay its in-flight copies (that would reorder)."""
        s = self.settings
        client = make_client(
            s, f"bodycam-{self.device}", protocol=mqtt.MQTTv5, default_username=self.device
        )
        client.max_inflight_messages_set(max(s.inflight, 1) + 4)
        client.max_queued_messages_set(0)
        will = self._status(online=False)
        client.will_set(self.topics[1], will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = lambda c, u, sock: self.driver and self.driver.watch(self, sock)
        client.on_socket_close = lambda c, u, sock: self.driver and self.driver.unwatch(sock)
        client.on_socket_register_write = lambda c, u, sock: (
            self.driver and self.driver.want_write(sock, True)
        )
        client.on_socket_unregister_write = lambda c, u, sock: (
            self.driver and self.driver.want_write(sock, False)
        )
        return client

    def _status(self, *, online: bool, state: str | None = None) -> bytes:
        """A signed status. Offline without a ``state`` is the last will: its state says
        ``connection_lost`` (a clean stop says ``shift_ended``)."""
        try:
            source_state, battery = self.status_source()
            source_state, battery = str(source_state)[:32], max(-1, min(100, int(battery)))
        except Exception:  # noqa: BLE001 - a broken sensor must not silence the alerts
            _log.exception("%s: status source failed; reporting unknown", self.device)
            source_state, battery = "unknown", -1
        if state is None:
            state = source_state if online else "connection_lost"
        return sign_status(
            self.identity,
            utc=format_utc(self.journal.clock.time_ns()),
            online=online,
            state=state,
            head=self.journal.head,
            battery=battery,
        ).to_bytes()

    def service(self, now: float) -> None:
        """Connect when due, publish what the window allows, status, keepalive, cursor."""
        if self.client is None:
            if now >= self._next_connect:
                self._connect(now)
            return
        if self.connected.is_set():
            self._pump()
            # An event (recording started, a dock's receipt) goes out at once: they are
            # rare, and the supervisor's line should come when it happened.
            if (
                now >= self._status_due
                or self._events
                or (
                    self._status_dirty
                    and now - self._status_last >= self.settings.status_min_interval_s
                )
            ):
                self.publish_status(now)
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost("keepalive")
                return
        # The cursor is saved at most every CURSOR_SAVE_S: its fsyncs would otherwise
        # compete with the journal's. A power cut loses at most that much progress, which
        # only means resending alerts the supervisor then drops as duplicates.
        if now - self._last_save >= CURSOR_SAVE_S and self.outbox.save_cursor():
            self._last_save = now
        if self.connected.is_set() and not self._order and self.outbox.count() == 0:
            self.idle.set()

    def next_deadline(self, now: float) -> float:
        if self.client is None:
            return self._next_connect
        if self.outbox.cursor_dirty:
            return min(self._status_due, self._last_save + CURSOR_SAVE_S)
        return min(self._status_due, now + 1.0)

    def _connect(self, now: float) -> None:
        s = self.settings
        try:
            client = self._make_client()  # reads the password file, loads TLS files
            self.client = client
            client.connect(s.host, s.port, keepalive=s.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.client = None
            self._backoff = min(max(self._backoff * 2, 0.1), s.reconnect_max_s)
            delay = self._backoff * (0.5 + random.random() / 2)
            self._next_connect = now + delay
            _log.warning(
                "%s: broker %s:%d unreachable (%s); retrying in %.1f s",
                self.device,
                s.host,
                s.port,
                exc,
                delay,
            )
            return
        self._last_misc = now

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            _log.error("%s: broker refused the connection: %s", self.device, reason_code)
            return  # paho closes the socket; on_disconnect reschedules
        _log.info("%s: connected to %s:%d", self.device, self.settings.host, self.settings.port)
        self._backoff = 0.0
        self._inflight.clear()
        self._order.clear()
        self._done.clear()
        self._sent_upto = self.outbox.acked_seq
        client.subscribe(self.topics[2], qos=1)
        self.connected.set()
        self.publish_status(time.monotonic())
        self._pump()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is self.client:
            self._lost(str(reason_code))

    def _lost(self, why: str) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        was = self.connected.is_set()
        self.connected.clear()
        self.idle.clear()
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass
        sock = client.socket()
        if sock is not None and self.driver is not None:
            self.driver.unwatch(sock)
        self._inflight.clear()
        self._order.clear()
        self._done.clear()
        self._sent_upto = self.outbox.acked_seq
        self._backoff = min(max(self._backoff * 2, 0.1), self.settings.reconnect_max_s)
        self._next_connect = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
        if was:
            _log.warning(
                "%s: connection lost (%s); %d alert(s) waiting",
                self.device,
                why,
                self.outbox.count(),
            )

    def _resend_check(self, now: float) -> bool:
        """Receipt mode: restart the round from the oldest unreceipted alert when it is due.

        Due (a) when the oldest unreceipted alert was last published ``_resend_wait`` ago
        (the wait doubles up to ``receipt_resend_max_s`` while no receipt comes), or (b)
        when a new alert is about to go out for the first time while older ones await
        their receipt (and were not re-published since the last new one went out). Then
        the older ones go again first, so a console always sees journal order: a broker that restarted,
        or a console that subscribed, between an old alert and a new one would otherwise
        show the new one first and then flag the old one as a replay. In an outage that
        costs O(alerts^2) duplicates, which the console drops. False means: publish
        nothing now (let the PUBACKs of what is in flight come in first)."""
        oldest = self.outbox.pending(-1, 1)
        if not oldest:
            self._resend_wait = self.settings.receipt_resend_s
            return True
        first = oldest[0].seq
        if first > self._sent_upto:
            return True  # not yet published on this connection: the round is under way
        upcoming = self.outbox.pending(self._sent_upto, 1)
        if upcoming and upcoming[0].seq in self._sent_at:
            return True  # a round is under way (re-publishing older alerts)
        last_at, last_no = self._sent_at.get(first, (0.0, -1))
        timer = not upcoming and now - last_at >= self._resend_wait
        if not (timer or (upcoming and last_no <= self._last_new_no)):
            return True
        if self._order:
            return False
        if timer:
            self._resend_wait = min(self._resend_wait * 2, self.settings.receipt_resend_max_s)
        _log.info(
            "%s: no receipt yet for %d alert(s) from seq %d; sending them again",
            self.device,
            self.outbox.count(),
            first,
        )
        self._sent_upto = self.outbox.acked_seq
        return True

    def _pump(self) -> None:
        client = self.client
        room = self.settings.inflight - len(self._order)
        if client is None or room <= 0:
            return
        now = time.monotonic()
        if self.consoles and not self._resend_check(now):
            return
        for record in self.outbox.pending(self._sent_upto, room):
            info = client.publish(self.topics[0], record.to_bytes(), qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(f"publish failed: {info.rc}")
                return
            self._inflight[info.mid] = record.seq
            self._order.append(record.seq)
            self._sent_upto = record.seq
            self.published += 1
            if record.seq in self._sent_at:
                self.resent += 1
            elif self.consoles:
                self._last_new_no = self._pub_no
            if self.consoles:
                self._sent_at[record.seq] = (now, self._pub_no)
            self._pub_no += 1
        if client.want_write() and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._lost("write failed")

    def publish_status(self, now: float) -> None:
        if self.client is None:
            return
        event = self._events.popleft() if self._events else None
        self._status_dirty = bool(self._events)
        self._status_last = now
        self._status_due = now + self.settings.status_interval_s
        self.client.publish(
            self.topics[1], self._status(online=True, state=event), qos=1, retain=True
        )

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return  # a status message
        if reason_code.is_failure:
            # e.g. "Not authorized" from the ACL: not delivered, keep it and retry later.
            _log.error("%s: broker refused alert seq %d: %s", self.device, seq, reason_code)
            self._lost(f"alert refused: {reason_code}")
            return
        self._done.add(seq)
        while self._order and self._order[0] in self._done:
            first = self._order.pop(0)
            self._done.discard(first)
            if not self.consoles:  # receipt mode: a PUBACK is not delivery to a person
                self.outbox.acknowledge(first)
        if self.driver is not None:
            self.driver.wake(self)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != self.topics[2]:
            return
        try:
            ack = parse_ack_payload(message.payload)
        except ValueError as exc:
            _log.warning("%s: ignoring a malformed ack: %s", self.device, exc)
            return
        if isinstance(ack, Receipt):
            self._on_receipt(ack)
            return
        if not self.outbox.is_alert(ack.alert_seq):
            _log.warning(
                "%s: ignoring an ack for seq %d, which is not an alert of ours",
                self.device,
                ack.alert_seq,
            )
            return
        if not self.outbox.first_ack(ack.alert_seq):
            return
        _log.info("%s: alert %d acknowledged by %s", self.device, ack.alert_seq, ack.by)
        if self.on_ack is not None:
            try:
                self.on_ack(ack.alert_seq, ack.by)
            except Exception:  # noqa: BLE001 - a broken indicator must not stop the link
                _log.exception("%s: on_ack callback failed", self.device)

    def _on_receipt(self, receipt: Receipt) -> None:
        """A console says it has shown an alert: that alert is done (receipt mode only)."""
        if not self.consoles:
            _log.debug(
                "%s: receipt from %s ignored: no console is trusted", self.device, receipt.console
            )
            return
        problem = check_receipt(receipt, self.device, self.consoles)
        if problem is None:
            record = self.outbox.record(receipt.seq)
            if record is None:
                return  # already done (a receipt for a duplicate), or not a pending alert
            if record.hash != receipt.hash:
                problem = f"receipt for seq {receipt.seq} covers other bytes than our alert"
        if problem is not None:
            _log.warning("%s: ignoring a receipt: %s", self.device, problem)
            return
        if self.outbox.settle(receipt.seq):
            self.receipts += 1
            self._sent_at.pop(receipt.seq, None)
            self._resend_wait = self.settings.receipt_resend_s
            _log.debug(
                "%s: alert %d shown by console %s", self.device, receipt.seq, receipt.console
            )
            if self.driver is not None:
                self.driver.wake(self)

    def close(self, timeout: float = 2.0) -> None:
        """Say offline (retained, with the current head; unless ``say_offline`` was
        cleared) and disconnect cleanly."""
        client = self.client
        if client is None:
            self.outbox.save_cursor()
            return
        if self.connected.is_set():
            while self._events:  # an event journalled just before the stop still goes out
                self.publish_status(time.monotonic())
        if self.connected.is_set() and self.say_offline:
            offline = self._status(online=False, state="shift_ended")
            info = client.publish(self.topics[1], offline, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.client:
                if client.want_write():
                    client.loop_write()
                sock = client.socket()
                if sock is None:
                    break
                if _readable(sock, 0.05) and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self.client = None
        self.connected.clear()
        sock = client.socket()
        if sock is not None and self.driver is not None:
            self.driver.unwatch(sock)
        # With an external loop paho only queues DISCONNECT; write it, or the broker sees
        # a dropped connection and publishes the (older) will over our offline status.
        client.disconnect()
        if client.want_write():
            client.loop_write()
        self.outbox.save_cursor()


def _readable(sock: Any, timeout: float) -> bool:
    """poll, not select: a fleet of sessions has descriptors beyond select's 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class LinkDriver:
    """Network I/O of many sessions in one thread: a selector over their sockets plus a
    wake-up socket the journal listeners poke. ``run`` blocks until ``stop`` is set."""

    def __init__(self) -> None:
        self.sessions: list[DeviceSession] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._dirty: set[DeviceSession] = set()
        self._dirty_lock = threading.Lock()
        self.stop_event = threading.Event()

    def add(self, session: DeviceSession) -> None:
        session.driver = self
        self.sessions.append(session)
        self.wake(session)

    def wake(self, session: DeviceSession) -> None:
        """Any thread: have the driver service ``session`` soon."""
        with self._dirty_lock:
            self._dirty.add(session)
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closing

    # Called from paho callbacks, i.e. the driver thread.
    def watch(self, session: DeviceSession, sock: Any) -> None:
        try:
            self._selector.register(sock, selectors.EVENT_READ, session)
        except (KeyError, ValueError):
            pass

    def unwatch(self, sock: Any) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def want_write(self, sock: Any, on: bool) -> None:
        try:
            key = self._selector.get_key(sock)
        except (KeyError, ValueError):
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        if key.events != events:
            self._selector.modify(sock, events, key.data)

    def run(self) -> None:
        sweep = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            with self._dirty_lock:
                todo, self._dirty = self._dirty, set()
            if now >= sweep:
                todo.update(self.sessions)
                sweep = now + 0.2
            deadline = sweep
            for session in todo:
                try:
                    session.service(now)
                except Exception:  # noqa: BLE001 - one bad session must not stop the others
                    _log.exception("%s: alert link error; reconnecting", session.device)
                    session._lost("error")
                    session._next_connect = max(session._next_connect, now + 5.0)
            for session in todo:
                deadline = min(deadline, session.next_deadline(now))
            for key, mask in self._selector.select(max(0.0, deadline - time.monotonic())):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                self._io(key.data, mask)
        for session in self.sessions:
            try:
                session.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                _log.exception("%s: error while closing", session.device)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _io(self, session: DeviceSession, mask: int) -> None:
        client = session.client
        if client is None:
            return
        if mask & selectors.EVENT_READ:
            rc = client.loop_read()
            sock = client.socket()
            while (
                rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                and sock is not None
                and getattr(sock, "pending", lambda: 0)()
            ):
                rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                session._lost(f"read: {rc}")
                return
        if session.client is client and mask & selectors.EVENT_WRITE and client.want_write():
            if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                session._lost("write failed")
                return
        with self._dirty_lock:
            self._dirty.add(session)


class AlertLink:
    """The recorder's alert link: one session on one daemon thread.

    ``on_ack(alert_seq, by)`` is called in the link's thread when a supervisor acknowledges
    an alert (the recorder buzzes and journals ``alert_ack``); ``status_source()`` returns
    ``(state, battery_percent)`` for the status message."""

    def __init__(
        self,
        journal: Journal,
        settings: MqttSettings,
        *,
        on_ack: AckCallback | None = None,
        status_source: StatusSource | None = None,
        consoles: dict[str, str] | None = None,
    ) -> None:
        self.session = DeviceSession(
            journal, settings, on_ack=on_ack, status_source=status_source, consoles=consoles
        )
        self.driver = LinkDriver()
        self.driver.add(self.session)
        self._thread: threading.Thread | None = None

    @property
    def outbox(self) -> Outbox:
        return self.session.outbox

    def start(self) -> None:
        self._thread = threading.Thread(target=self.driver.run, name="alert-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, offline: bool = True) -> None:
        """Say offline (``shift_ended``; not with ``offline=False``, for a link that
        another takes over at once), save the cursor and end the thread (bounded)."""
        self.session.say_offline = offline
        self.driver.stop_event.set()
        self.driver.wake(self.session)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.warning("alert link did not stop within %.1f s", timeout)
            self._thread = None

    def wait_connected(self, timeout: float) -> bool:
        return self.session.connected.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """True once every journalled alert has been acknowledged by the broker."""
        return self.session.idle.wait(timeout)

    def __enter__(self) -> AlertLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def trusted_consoles(config: dict[str, Any]) -> dict[str, str]:
    """Console id -> public key of every supervisor console in the unit-signed registry the
    camera trusts its docks from (``dock.registry`` and its unit keys); {} when none is
    configured, and then an alert is done when the broker has it (PUBACK)."""
    from evidence.exc import EvidenceError
    from evidence.trust import load_trusted_registry, load_unit_keys

    dock = config.get("dock") or {}
    if not dock.get("registry"):
        return {}
    try:
        keys = load_unit_keys(dock.get("unit_keys") or [])
        if not keys:
            return {}  # firmware.config.trusted_docks refuses this configuration
        return load_trusted_registry(dock["registry"], keys).console_keys()
    except EvidenceError as exc:
        _log.error("no console receipts: %s", exc)
        return {}


def link_for_recorder(
    recorder: Any, settings: MqttSettings, *, consoles: dict[str, str] | None = None
) -> AlertLink:
    """The alert link of a recorder whose journal is open (after ``Recorder.open``).

    Acks go to ``recorder.acknowledge`` (it beeps ``ack`` and journals ``alert_ack``); the
    status carries the recorder's indicator state and battery. Start it after
    ``recorder.start()`` and stop it after the recorder has stopped, so the last records
    (``recording_stopped``, a final stoppage) still go out."""

    def status() -> tuple[str, int]:  # the link's thread: reads only
        try:
            battery = int(round(recorder.power.battery_percent()))
        except (OSError, ValueError):
            battery = -1
        return str(recorder.machine.indicator_state()), battery

    if consoles is None:
        consoles = trusted_consoles(getattr(recorder, "config", None) or {})
    return AlertLink(
        recorder.journal,
        settings,
        on_ack=recorder.acknowledge,
        status_source=status,
        consoles=consoles,
    )
