"""The alert outbox: which journal records still have to reach a person, in order, once.

The journal already holds every alert durably, so the outbox adds only a *cursor*: the
sequence number below which every alert is done, kept in a small file next to the journal
(``alerts.cursor``, replaced atomically). An alert is done when a supervisor console that
the unit-signed registry lists sends a signed :class:`Receipt` saying it has shown it (end
to end: a broker that acknowledged an alert and then crashed cannot lose it), or, on a
camera that knows no console, when the broker acknowledged it (PUBACK). Pending alerts
are the alert-kind records after the cursor that are not yet done: read from the journal
at start (so a reboot loses nothing) and fed by
:meth:`evidence.journal.Journal.add_listener` while running.

This module is domain logic only: no sockets, no threads of its own. ``firmware.mqtt``
drives it. Thread safety: :meth:`Outbox.offer` is called from whichever thread appends
to the journal; everything else from the MQTT worker. One lock guards the shared state.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from evidence.canonical import canonical_bytes
from evidence.clock import UTC_PATTERN
from evidence.exc import CanonicalError, RecordError, SignatureError
from evidence.identity import DEVICE_ID_PATTERN, DeviceIdentity, verify_signature
from evidence.record import HEX64, HEX128, Record
from evidence.storage import atomic_write_bytes

_log = logging.getLogger(__name__)

ALERT_KINDS = ("stoppage", "resumed", "battery_low")
CURSOR_NAME = "alerts.cursor"
# Canonical JSON always spells a record's kind exactly so (a body string cannot: its
# quotes would be escaped), which lets a long journal be skimmed without parsing it.
_MARKERS = tuple(b'"kind":"%s"' % k.encode() for k in (*ALERT_KINDS, "alert_ack"))
CURSOR_FORMAT = "bodycam-alert-cursor-v1"
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


@dataclass(frozen=True)
class Ack:
    """A supervisor's acknowledgement of one alert: ``{"alert_seq": n, "by": name}``."""

    alert_seq: int
    by: str

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"alert_seq": self.alert_seq, "by": self.by}, sort_keys=True, separators=(",", ":")
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Ack:
        """Parse an ack payload; raise ValueError with the reason."""
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"ack is not JSON: {exc}") from None
        if not isinstance(value, dict) or set(value) != {"alert_seq", "by"}:
            raise ValueError("ack must be exactly {alert_seq, by}")
        seq, by = value["alert_seq"], value["by"]
        if type(seq) is not int or not 0 <= seq < 2**63:
            raise ValueError(f"ack alert_seq must be an integer >= 0: {seq!r:.40}")
        if not isinstance(by, str) or not 0 < len(by) <= 64 or not by.isprintable():
            raise ValueError(f"ack 'by' must be a short printable name: {by!r:.40}")
        return cls(seq, by)


RECEIPT_KIND = "alert_receipt"
RECEIPT_FIELDS = ("v", "kind", "console", "device", "seq", "hash", "utc", "sig")
MAX_RECEIPT_BYTES = 1024


@dataclass(frozen=True)
class Receipt:
    """A supervisor console's signed word that it has *shown* one alert to a person.

    Canonical JSON ``{"v":1,"kind":"alert_receipt","console","device","seq","hash","utc",
    "sig"}``; ``sig`` is Ed25519 by the console's key over the canonical JSON without
    ``sig``; ``hash`` is the alert record's hash, so a receipt covers those very bytes.
    Sent on the camera's ``ack`` topic (the camera already reads it, the broker's ACL
    already lets supervisors write it); unlike an :class:`Ack` it does not buzz."""

    console: str
    device: str
    seq: int
    hash: str
    utc: str
    sig: str = ""

    def _unsigned(self) -> dict:
        return {
            "v": 1,
            "kind": RECEIPT_KIND,
            "console": self.console,
            "device": self.device,
            "seq": self.seq,
            "hash": self.hash,
            "utc": self.utc,
        }

    @classmethod
    def sign(cls, key: DeviceIdentity, device: str, seq: int, hash: str, utc: str) -> Receipt:
        unsigned = cls(key.device_id, device, seq, hash, utc)
        return cls(
            **{**unsigned.__dict__, "sig": key.sign(canonical_bytes(unsigned._unsigned())).hex()}
        )

    def to_bytes(self) -> bytes:
        return canonical_bytes({**self._unsigned(), "sig": self.sig})

    def verify(self, public_key_hex: str) -> None:
        """Raise :class:`~evidence.exc.SignatureError` unless the console key signed it."""
        verify_signature(public_key_hex, canonical_bytes(self._unsigned()), bytes.fromhex(self.sig))

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        """Parse a receipt; raise ValueError with the reason."""
        if len(data) > MAX_RECEIPT_BYTES:
            raise ValueError(f"receipt is {len(data)} bytes (limit {MAX_RECEIPT_BYTES})")
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"receipt is not JSON: {exc}") from None
        if not isinstance(value, dict) or set(value) != set(RECEIPT_FIELDS):
            raise ValueError(f"receipt must be exactly {{{', '.join(RECEIPT_FIELDS)}}}")
        if value["v"] != 1 or type(value["v"]) is not int or value["kind"] != RECEIPT_KIND:
            raise ValueError("not an alert_receipt of format 1")
        for name in ("console", "device"):
            if not isinstance(value[name], str) or not DEVICE_ID_PATTERN.match(value[name]):
                raise ValueError(f"receipt {name} is not an id: {value[name]!r:.40}")
        seq = value["seq"]
        if type(seq) is not int or not 0 <= seq < 2**63:
            raise ValueError(f"receipt seq must be an integer >= 0: {seq!r:.40}")
        if not isinstance(value["hash"], str) or not HEX64.match(value["hash"]):
            raise ValueError("receipt hash must be 64 lowercase hex digits")
        if not isinstance(value["utc"], str) or not UTC_PATTERN.match(value["utc"]):
            raise ValueError("receipt utc must be a UTC stamp")
        if not isinstance(value["sig"], str) or not HEX128.match(value["sig"]):
            raise ValueError("receipt sig must be 128 lowercase hex digits")
        receipt = cls(*(value[f] for f in RECEIPT_FIELDS[2:]))
        try:
            if receipt.to_bytes() != data:
                raise ValueError("receipt is not canonical JSON")
        except CanonicalError as exc:
            raise ValueError(f"receipt is not canonical JSON: {exc}") from None
        return receipt


def parse_ack_payload(data: bytes) -> Ack | Receipt:
    """What came on a camera's ``ack`` topic: a person's :class:`Ack` or a console's
    :class:`Receipt`; raise ValueError with the reason."""
    if b'"kind":"alert_receipt"' in data[:MAX_RECEIPT_BYTES]:
        return Receipt.from_bytes(data)
    return Ack.from_bytes(data)


def check_receipt(receipt: Receipt, device: str, consoles: dict[str, str]) -> str | None:
    """Why ``receipt`` does not count for ``device`` (None if it does): the console must be
    one the trusted registry lists (``consoles``: id -> public key) and its key must sign."""
    if receipt.device != device:
        return f"receipt names device {receipt.device!r}"
    key = consoles.get(receipt.console)
    if key is None:
        return f"console {receipt.console!r} is not in the trusted registry"
    try:
        receipt.verify(key)
    except SignatureError:
        return f"receipt does not verify under console {receipt.console!r}'s key"
    return None


class AlertCursor:
    """The last alert seq the broker acknowledged, durable across power cuts."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> int:
        """-1 when nothing was ever acknowledged (or no cursor file yet)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return -1
        except (OSError, ValueError) as exc:
            # Atomic writes make this unlikely; resending everything is the safe side
            # (the supervisor drops duplicates), losing alerts is not.
            _log.warning("%s unreadable (%s); resending all alerts", self.path, exc)
            return -1
        seq = data.get("acked_seq") if isinstance(data, dict) else None
        if data.get("format") != CURSOR_FORMAT or type(seq) is not int or seq < -1:
            _log.warning("%s is not an alert cursor; resending all alerts", self.path)
            return -1
        return seq

    def save(self, seq: int) -> None:
        text = json.dumps({"format": CURSOR_FORMAT, "acked_seq": seq})
        atomic_write_bytes(self.path, text.encode() + b"\n")


class Outbox:
    """Alerts after the cursor, in journal order. Thread-safe (see module docstring)."""

    def __init__(self, cursor: AlertCursor) -> None:
        self.cursor = cursor
        self._lock = threading.Lock()
        self._acked = cursor.load()
        self._saved = self._acked
        self._seqs: list[int] = []  # queued alert seqs, ascending
        self._records: dict[int, Record] = {}
        self._acks_seen: set[int] = set()
        self._alerts: set[int] = set()  # every alert seq journalled, acked or not
        self._beyond: set[int] = set()  # settled by a receipt, but after an unsettled one

    @property
    def acked_seq(self) -> int:
        return self._acked

    def offer(self, record: Record) -> bool:
        """Take a freshly journalled record (a journal listener); True if it is a new alert.

        Called in the appending thread: only enqueues."""
        if record.kind == "alert_ack":
            seq = record.body.get("alert_seq")
            if type(seq) is int:
                with self._lock:
                    self._acks_seen.add(seq)
            return False
        if record.kind not in ALERT_KINDS:
            return False
        with self._lock:
            self._alerts.add(record.seq)
            if (
                record.seq <= self._acked
                or record.seq in self._records
                or record.seq in self._beyond
            ):
                return False
            self._records[record.seq] = record
            bisect.insort(self._seqs, record.seq)
        return True

    def load_journal(self, journal_path: str | os.PathLike) -> int:
        """Queue the unacknowledged alerts found in the journal on disk; return how many.

        Safe to call after the listener is attached: a record seen twice is queued once.
        The journal is read line by line and only lines naming an alert kind (or an
        ``alert_ack``) are parsed, since a camera's journal grows for months. A torn last
        line is skipped (the recorder repairs it when it opens the journal)."""
        path = Path(journal_path)
        if not path.exists():
            return 0
        queued = 0
        offset = 0
        with path.open("rb") as f:
            for raw in f:
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n") or not any(m in raw for m in _MARKERS):
                    continue
                try:
                    record = Record.from_bytes(raw[:-1])
                except RecordError as exc:
                    _log.warning("%s: skipping unreadable record at byte %d: %s", path, start, exc)
                    continue
                queued += self.offer(record)
        if queued:
            _log.info("%d alert(s) after seq %d waiting to be sent", queued, self._acked)
        return queued

    def pending(self, after_seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` queued alerts with seq > ``after_seq``, oldest first."""
        with self._lock:
            start = bisect.bisect_right(self._seqs, after_seq)
            return [self._records[s] for s in self._seqs[start : start + max(limit, 0)]]

    def count(self) -> int:
        with self._lock:
            return len(self._seqs)

    def acknowledge(self, seq: int) -> None:
        """The broker acknowledged the alert ``seq`` and all before it (QoS 1 is in order
        on one connection, and the worker never acknowledges out of order)."""
        with self._lock:
            if seq <= self._acked:
                return
            self._acked = seq
            done = bisect.bisect_right(self._seqs, seq)
            for s in self._seqs[:done]:
                del self._records[s]
            del self._seqs[:done]

    def record(self, seq: int) -> Record | None:
        """The queued (not yet done) alert ``seq``, or None."""
        with self._lock:
            return self._records.get(seq)

    def settle(self, seq: int) -> bool:
        """A console has shown the alert ``seq``: it is done. True if it was pending.

        Receipts may come in any order; the cursor moves only over a prefix with nothing
        pending, and a settled alert after a pending one is remembered until then (after
        a reboot it is resent, shown as a duplicate and receipted again)."""
        with self._lock:
            if seq not in self._records:
                return False
            del self._records[seq]
            del self._seqs[bisect.bisect_left(self._seqs, seq)]
            self._beyond.add(seq)
            first = self._seqs[0] if self._seqs else None
            done = {s for s in self._beyond if first is None or s < first}
            if done:
                self._acked = max(self._acked, *done)
                self._beyond -= done
            return True

    @property
    def cursor_dirty(self) -> bool:
        return self._acked != self._saved

    def save_cursor(self) -> bool:
        """Write the cursor if it moved; True if written. The worker calls it now and then,
        so a burst of PUBACKs costs one fsync; after a crash the unsaved ones are resent
        and the supervisor drops them as duplicates."""
        acked = self._acked
        if acked == self._saved:
            return False
        self.cursor.save(acked)
        self._saved = acked
        return True

    def first_ack(self, alert_seq: int) -> bool:
        """True the first time a supervisor ack for ``alert_seq`` is seen (journal
        ``alert_ack`` records count as seen, so a re-sent ack does not buzz twice)."""
        with self._lock:
            if alert_seq in self._acks_seen:
                return False
            self._acks_seen.add(alert_seq)
            return True

    def is_alert(self, seq: int) -> bool:
        """Whether ``seq`` names an alert this device journalled (acks for anything else
        are ignored). Known from :meth:`load_journal` and :meth:`offer`, so an ack costs
        no journal read in the MQTT thread."""
        with self._lock:
            return seq in self._alerts
