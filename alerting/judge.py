"""Deciding what an MQTT message from a camera is: a genuine alert, a duplicate, or a forgery.

Pure domain logic (no sockets, no threads): :class:`AlertJudge` takes a topic, a payload and
the registry, and returns a :class:`Verdict`. It remembers, per device, the alerts it has
shown (:class:`SeenState`, persisted by the watch command) so that

- a retransmission of an alert already shown (same device, seq and bytes) is dropped
  silently: QoS 1 delivers at least once, the supervisor shows exactly once;
- a record at a seq already shown with other bytes, or older than the newest one shown, is
  flagged as a replay (the camera publishes in journal order, so it never does this);
- a payload that does not verify under the registered key, names another device than its
  topic, or comes from an unregistered device is flagged, never shown as genuine;
- a dock alert counts only under a *dock* key of the registry (a camera's key, however
  valid, never makes one), only for a unit this supervisor knows (the signed registry's
  unit, or a unit of one of its devices or docks), and only when fresh: stamped at most
  ``max_age_s`` ago and at most ``max_skew_s`` ahead of this clock. Dock alerts have no
  sequence number, so without the age bound an old one replayed after the seen-state has
  forgotten its hash would be shown as new. (Camera alerts are ordered by their journal
  seq instead, and may rightly arrive late: a camera out of reach queues them.)
- an archive's alert (a case file at day 25 or day 30) is judged exactly as a dock's
  (:class:`Sender`: the same steps, in the same order), under an *archive* key of the
  registry's ``archives``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archive.signed import ArchiveAlert
from evidence.canonical import sha256_hex
from evidence.clock import parse_utc
from evidence.exc import RecordError, SignatureError
from evidence.record import Record
from evidence.registry import Registry
from evidence.storage import atomic_write_bytes
from wire.message import Message
from wire.topics import (
    ALERT_KINDS,
    ARCHIVE_ALERT_KIND,
    ARCHIVE_LEVEL,
    DOCK_LEVEL,
    parse_service_topic,
    parse_topic,
)

STATE_FORMAT = "bodycam-supervisor-state-v1"
RECENT = 512  # per device: seq -> hash of the newest alerts shown
FLAGGED = 1024  # payload hashes of the newest flagged messages shown

VERIFIED = "verified"
DUPLICATE = "duplicate"  # not shown
FORGED = "forged"
REPLAY = "replay"
INVALID = "invalid"
UNKNOWN = "unknown-device"
REVOKED = "revoked-key"
WRONG_UNIT = "wrong-unit"
STALE = "stale"

MAX_AGE_S = 7 * 86400  # a dock alert stamped longer ago than this is not shown as verified
MAX_SKEW_S = 300  # nor one stamped further ahead of the supervisor's clock


@dataclass
class Verdict:
    verdict: str
    problem: str
    topic: str
    unit: str = ""
    device: str = ""
    officer: str = ""
    seq: int | None = None
    kind: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    utc: str = ""
    hash: str = ""

    @property
    def genuine(self) -> bool:
        return self.verdict == VERIFIED

    @property
    def shown(self) -> bool:
        return self.verdict != DUPLICATE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sender:
    """A signer of alerts that are signed messages without a sequence number (a dock, an
    archive): what differs between them, so that both are judged by one path."""

    level: str  # the topic's second level: dock, archive
    noun: str  # for the reasons: "dock", "archive"
    a_noun: str  # "a dock", "an archive"
    kind: str  # the message kind its alerts have
    parse: Callable[[bytes], Any]  # payload -> message; RecordError with the reason
    entry: Callable[[Registry, str], Any]  # its registry entry of an id, or None
    officer: Callable[[dict[str, Any]], str]  # who the alert is about, for the line


SENDERS = {
    DOCK_LEVEL: Sender(
        DOCK_LEVEL,
        "dock",
        "a dock",
        "dock_alert",
        Message.from_bytes,
        Registry.dock,
        lambda body: str(body.get("officer", "")),
    ),
    ARCHIVE_LEVEL: Sender(
        ARCHIVE_LEVEL,
        "archive",
        "an archive",
        ARCHIVE_ALERT_KIND,
        ArchiveAlert.from_bytes,
        Registry.archive,
        lambda body: "",
    ),
}


def _registered_as(registry: Registry, name: str) -> list[str]:
    """What the registry holds under ``name``: camera, dock, archive."""
    found = [("camera", registry.get(name)), ("dock", registry.dock(name))]
    found.append(("archive", registry.archive(name)))
    return [noun for noun, entry in found if entry is not None]


@dataclass
class DeviceSeen:
    max_seq: int = -1
    recent: dict[int, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None  # the last verified status message, as a dict
    key: str = ""  # the registered key these seqs were signed with


class SeenState:
    """What the supervisor has shown, per device; saved atomically as JSON."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else None
        self.devices: dict[str, DeviceSeen] = {}
        self.flagged: list[str] = []  # so a redelivered forgery is not shown twice either
        # hashes of the dock and archive alerts shown (the name is the state file's)
        self.dock_shown: list[str] = []
        self.dirty = False
        if self.path and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != STATE_FORMAT:
                raise ValueError("wrong format")
            for device, d in data["devices"].items():
                self.devices[device] = DeviceSeen(
                    int(d["max_seq"]),
                    {int(k): str(v) for k, v in d["recent"].items()},
                    d.get("status"),
                    str(d.get("key", "")),
                )
            self.flagged = [str(h) for h in data.get("flagged", [])][-FLAGGED:]
            self.dock_shown = [str(h) for h in data.get("dock_shown", [])][-FLAGGED:]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path}: not a supervisor state file ({exc})") from None

    def device(self, device: str) -> DeviceSeen:
        return self.devices.setdefault(device, DeviceSeen())

    def was_shown(self, device: str, seq: int) -> bool:
        """Whether alert ``seq`` of ``device`` was shown as genuine here (one of the last
        :data:`RECENT`): a console acknowledges only what it has shown."""
        seen = self.devices.get(device)
        return seen is not None and seq in seen.recent

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        devices = {
            dev: {
                "max_seq": d.max_seq,
                "recent": {str(k): v for k, v in d.recent.items()},
                "status": d.status,
                "key": d.key,
            }
            for dev, d in sorted(self.devices.items())
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.path,
            json.dumps(
                {
                    "format": STATE_FORMAT,
                    "devices": devices,
                    "flagged": self.flagged,
                    "dock_shown": self.dock_shown,
                },
                sort_keys=True,
            ).encode()
            + b"\n",
        )
        self.dirty = False


class AlertJudge:
    """Verifies alerts and statuses against the registry and what was already shown."""

    def __init__(
        self,
        registry: Registry,
        state: SeenState | None = None,
        *,
        unit: str = "",
        clock: Callable[[], int] = time.time_ns,
        max_age_s: float = MAX_AGE_S,
        max_skew_s: float = MAX_SKEW_S,
    ) -> None:
        self.registry = registry
        self.state = state or SeenState()
        self.unit = unit  # this supervisor's unit, besides the signed registry's
        self.clock = clock
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s

    def units(self) -> set[str]:
        """The units this supervisor knows: its own, the signed registry's, and those of
        the registry's devices and docks."""
        known = {
            self.unit,
            *(e.unit for e in self.registry),
            *(d.unit for d in self.registry.docks()),
        }
        if self.registry.signature is not None:
            known.add(self.registry.signature.unit)
        known.discard("")
        return known

    def _freshness_problem(self, utc: str) -> str | None:
        try:
            age_s = (self.clock() - parse_utc(utc)) / 1e9
        except ValueError:
            return f"unreadable time stamp {utc!r:.40}"
        if age_s > self.max_age_s:
            return (
                f"stamped {utc}, {age_s / 86400:.1f} days ago: older than the "
                f"{self.max_age_s / 86400:g}-day limit (a replay, or a dock clock gone wrong)"
            )
        if -age_s > self.max_skew_s:
            return (
                f"stamped {utc}, {-age_s:.0f} s ahead of this clock (more than the "
                f"{self.max_skew_s:g} s allowed skew)"
            )
        return None

    def alert(self, topic: str, payload: bytes) -> Verdict:
        verdict = self._alert(topic, payload)
        if verdict.verdict not in (VERIFIED, DUPLICATE):
            key = sha256_hex(topic.encode() + b"\n" + payload)
            if key in self.state.flagged:
                verdict.verdict = DUPLICATE
            else:
                self.state.flagged = [*self.state.flagged[-(FLAGGED - 1) :], key]
                self.state.dirty = True
        return verdict

    def _alert(self, topic: str, payload: bytes) -> Verdict:
        if topic.count("/") == 4:
            return self._signed_alert(topic, payload)
        parts = parse_topic(topic)
        if parts is None or parts[2] != "alert":
            return Verdict(INVALID, f"not an alert topic: {topic}", topic)
        unit, device, _ = parts
        v = Verdict(INVALID, "", topic, unit=unit, device=device)
        try:
            record = Record.from_bytes(payload)
        except RecordError as exc:
            v.problem = f"not a signed record: {exc}"
            return v
        v.seq, v.kind, v.body, v.utc, v.hash = (
            record.seq,
            record.kind,
            record.body,
            record.utc,
            record.hash,
        )
        entry = self.registry.get(record.device)
        if record.device != device:
            v.verdict, v.problem = (
                FORGED,
                (f"record names device {record.device!r} but came on {device!r}'s topic"),
            )
            return v
        if entry is None:
            v.verdict, v.problem = UNKNOWN, f"device {device!r} is not in the registry"
            return v
        v.officer = entry.officer
        try:
            record.verify(entry.public_key)
        except SignatureError:
            v.verdict, v.problem = FORGED, "signature does not verify under the registered key"
            return v
        if entry.unit and entry.unit != unit:
            v.verdict, v.problem = (
                FORGED,
                (f"device {device!r} belongs to unit {entry.unit!r}, not {unit!r}"),
            )
            return v
        if not entry.unit and unit not in self.units():
            v.verdict, v.problem = WRONG_UNIT, f"unit {unit!r:.80} is not one this supervisor knows"
            return v
        revoked = entry.problem_at(record.utc)
        if revoked:
            v.verdict, v.problem = REVOKED, f"device {device!r}: {revoked}"
            return v
        if record.kind not in ALERT_KINDS:
            v.problem = f"record kind {record.kind!r} is not an alert"
            return v
        seen = self.state.device(device)
        if seen.key != entry.public_key:
            # A device re-provisioned with a new key starts a new journal at seq 0; what
            # was shown under the old key says nothing about the new seqs.
            seen.key, seen.max_seq, seen.recent = entry.public_key, -1, {}
        old = seen.recent.get(record.seq)
        if old == record.hash:
            v.verdict = DUPLICATE
            return v
        if old is not None:
            v.verdict, v.problem = (
                REPLAY,
                (f"seq {record.seq} was already shown with other content"),
            )
            return v
        if record.seq <= seen.max_seq:
            v.verdict, v.problem = (
                REPLAY,
                (f"seq {record.seq} is not newer than the last alert shown ({seen.max_seq})"),
            )
            return v
        seen.max_seq = record.seq
        seen.recent[record.seq] = record.hash
        if len(seen.recent) > RECENT:
            for s in sorted(seen.recent)[: len(seen.recent) - RECENT]:
                del seen.recent[s]
        self.state.dirty = True
        v.verdict = VERIFIED
        return v

    def _signed_alert(self, topic: str, payload: bytes) -> Verdict:
        """``bodycam/<unit>/dock/<dock>/alert``: a dock's 24-hour-rule alert or flag;
        ``bodycam/<unit>/archive/<archive>/alert``: an archive's 30-day-rule alert. A signed
        message checked against the registry's entry of that id *of that kind*."""
        parts = parse_service_topic(topic)
        if parts is None or parts[3] != "alert":
            return Verdict(INVALID, f"not an alert topic: {topic}", topic)
        unit, level, sender_id, _ = parts
        sender = SENDERS[level]
        noun = sender.noun
        v = Verdict(INVALID, "", topic, unit=unit, device=sender_id)
        try:
            message = sender.parse(payload)
        except RecordError as exc:
            v.problem = f"not a signed {noun} alert: {exc}"
            return v
        if message.kind != sender.kind:
            v.problem = f"message kind {message.kind!r} is not {sender.a_noun} alert"
            return v
        v.kind, v.body, v.utc = message.kind, message.body, message.utc
        v.hash = sha256_hex(payload)
        v.officer = sender.officer(message.body)
        if message.device != sender_id:
            v.verdict, v.problem = (
                FORGED,
                (f"message names {noun} {message.device!r} but came on {sender_id!r}'s topic"),
            )
            return v
        entry = sender.entry(self.registry, sender_id)
        if entry is None:
            others = _registered_as(self.registry, sender_id)
            if others:
                v.verdict, v.problem = (
                    FORGED,
                    f"{sender_id!r} is a {' and a '.join(others)}, not {sender.a_noun}: "
                    f"{noun} alerts count only under {noun} keys",
                )
            else:
                v.verdict, v.problem = UNKNOWN, f"{noun} {sender_id!r} is not in the registry"
            return v
        try:
            message.verify(entry.public_key)
        except SignatureError:
            v.verdict, v.problem = FORGED, f"signature does not verify under the {noun}'s key"
            return v
        revoked = entry.problem_at(message.utc)
        if revoked:
            v.verdict, v.problem = REVOKED, f"{noun} {sender_id!r}: {revoked}"
            return v
        camera = self.registry.get(str(message.body.get("device", "")))
        if unit not in self.units():
            v.verdict, v.problem = WRONG_UNIT, f"unit {unit!r:.80} is not one this supervisor knows"
            return v
        if camera is not None and camera.unit and camera.unit != unit:
            v.verdict, v.problem = (
                WRONG_UNIT,
                f"camera {camera.device_id!r} belongs to unit {camera.unit!r}, not {unit!r:.80}",
            )
            return v
        stale = self._freshness_problem(message.utc)
        if stale:
            v.verdict, v.problem = STALE, stale
            return v
        if v.hash in self.state.dock_shown:
            v.verdict = DUPLICATE
            return v
        self.state.dock_shown = [*self.state.dock_shown[-(FLAGGED - 1) :], v.hash]
        self.state.dirty = True
        v.verdict = VERIFIED
        return v

    def status(self, topic: str, payload: bytes) -> tuple[Message | None, str]:
        """``(message, problem)``: the status if it verifies (problem ""), else why not.

        A verified status is remembered (its head is the tail evidence for the dock)."""
        parts = parse_topic(topic)
        if parts is None or parts[2] != "status":
            return None, f"not a status topic: {topic}"
        unit, device, _ = parts
        try:
            message = Message.from_bytes(payload)
        except RecordError as exc:
            return None, f"not a signed status: {exc}"
        if message.kind != "status":
            return None, f"message kind {message.kind!r} on a status topic"
        if message.device != device:
            return message, f"status names device {message.device!r} on {device!r}'s topic"
        entry = self.registry.get(device)
        if entry is None:
            return message, f"device {device!r} is not in the registry"
        try:
            message.verify(entry.public_key)
        except SignatureError:
            return message, "signature does not verify under the registered key"
        if entry.unit and entry.unit != unit:
            return message, f"device {device!r} belongs to unit {entry.unit!r}, not {unit!r}"
        seen = self.state.device(device)
        if seen.status is None or seen.status.get("utc", "") <= message.utc:
            seen.status = message.to_dict()
            self.state.dirty = True
        return message, ""
