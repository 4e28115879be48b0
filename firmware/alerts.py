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
import threading
from pathlib import Path

from evidence.exc import RecordError
from evidence.record import Record
from evidence.storage import atomic_write_bytes
from wire.topics import ALERT_KINDS

_log = logging.getLogger(__name__)

CURSOR_NAME = "alerts.cursor"
# Canonical JSON always spells a record's kind exactly so (a body string cannot: its
# quotes would be escaped), which lets a long journal be skimmed without parsing it.
_MARKERS = tuple(b'"kind":"%s"' % k.encode() for k in (*ALERT_KINDS, "alert_ack"))
CURSOR_FORMAT = "bodycam-alert-cursor-v1"


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
        """Write the cursor if it moved; True if it tried (written, or refused by a full
        card, then tried again next time). The worker calls it now and then, so a burst
        of PUBACKs costs one fsync; after a crash the unsaved ones are resent and the
        supervisor drops them as duplicates."""
        acked = self._acked
        if acked == self._saved:
            return False
        try:
            self.cursor.save(acked)
        except OSError as exc:  # a full card: the alert link goes on, saved next time
            _log.warning("alert cursor not saved (%s); retried later", exc)
            return True
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
