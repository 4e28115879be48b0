"""Signed messages that are not journal records: a device's MQTT status and its last will.

A message is canonical JSON (``evidence.canonical``)::

    {"v": 1, "kind": "status", "device": "<id>", "utc": "<UTC stamp>",
     "body": {"online": bool, "state": str, "head": {"seq": int, "hash": hex} | null,
              "battery": int},
     "sig": "<128 hex>"}

``sig`` is Ed25519 over the canonical JSON without ``sig``, made with the device key, so a
supervisor or dock checks it against the registry exactly as it checks a journal record.
A dock's alert (kind ``dock_alert``, signed with the dock's key, ``device`` = the dock id)
has the same shape. Messages are not chained and not journalled: they say what the device claims *now*
(including its journal head, so that a tail cut off later can be detected by comparing the
last signed head seen with what reaches the dock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evidence import FORMAT_VERSION
from evidence.clock import UTC_PATTERN
from evidence.exc import RecordError
from evidence.identity import DEVICE_ID_PATTERN, DeviceIdentity
from evidence.record import HEX64, HEX128, SignedPayload, check_fields, parse_payload

FIELDS = ("v", "kind", "device", "utc", "body", "sig")
MESSAGE_KINDS = ("status", "dock_alert")
DOCK_ALERT_LEVELS = ("warning", "violation", "flag")
MAX_MESSAGE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Message(SignedPayload):
    FIELDS = FIELDS

    v: int
    kind: str
    device: str
    utc: str
    body: dict[str, Any]
    sig: str = field(default="")

    @property
    def online(self) -> bool:
        return bool(self.body.get("online"))

    @property
    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the journal head the device signed, or None."""
        head = self.body.get("head")
        return None if head is None else (head["seq"], head["hash"])

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Parse a payload; raise :class:`~evidence.exc.RecordError` with the reason."""
        return cls.from_dict(parse_payload(data, MAX_MESSAGE_BYTES, "message"))

    @classmethod
    def from_dict(cls, value: Any) -> Message:
        checks = (
            ("v", lambda x: type(x) is int and x == FORMAT_VERSION, f"must be {FORMAT_VERSION}"),
            ("kind", lambda x: x in MESSAGE_KINDS, f"must be one of {MESSAGE_KINDS}"),
            ("device", lambda x: isinstance(x, str) and DEVICE_ID_PATTERN.match(x), "bad id"),
            ("utc", lambda x: isinstance(x, str) and UTC_PATTERN.match(x), "bad UTC stamp"),
            ("body", lambda x: isinstance(x, dict), "must be an object"),
            ("sig", lambda x: isinstance(x, str) and HEX128.match(x), "must be 128 hex digits"),
        )
        check_fields(value, FIELDS, checks, "message")
        message = cls(**{f: value[f] for f in FIELDS})
        if message.kind == "status":
            check_status_body(message.body)
        elif message.kind == "dock_alert":
            check_dock_alert_body(message.body)
        return message


def status_body(
    *, online: bool, state: str, head: tuple[int, str] | None, battery: int
) -> dict[str, Any]:
    """The body of a ``status`` message (``head`` as :attr:`Journal.head` gives it)."""
    body = {
        "online": bool(online),
        "state": str(state),
        "head": None if head is None else {"seq": int(head[0]), "hash": str(head[1])},
        "battery": int(battery),
    }
    check_status_body(body)
    return body


def check_status_body(body: dict[str, Any]) -> None:
    want = {"online", "state", "head", "battery"}
    if set(body) != want:
        raise RecordError(f"status body must have exactly {sorted(want)}, has {sorted(body)}")
    if type(body["online"]) is not bool:
        raise RecordError("status 'online' must be true or false")
    if not isinstance(body["state"], str) or len(body["state"]) > 32:
        raise RecordError("status 'state' must be a short string")
    battery = body["battery"]
    if type(battery) is not int or not -1 <= battery <= 100:
        raise RecordError("status 'battery' must be an integer percent (-1 if unknown)")
    head = body["head"]
    if head is None:
        return
    if not (
        isinstance(head, dict)
        and set(head) == {"seq", "hash"}
        and type(head["seq"]) is int
        and 0 <= head["seq"] < 2**63
        and isinstance(head["hash"], str)
        and HEX64.match(head["hash"])
    ):
        raise RecordError(f"status 'head' must be {{seq, hash}} or null: {head!r:.80}")


def check_dock_alert_body(body: dict[str, Any]) -> None:
    """A dock's alert (``dock.alerts``): ``device`` is the dock's id; the body names the
    camera, the level (``warning`` at 20 h, ``violation`` at 24 h, ``flag`` for what a
    docking found wrong) and a sentence for people."""
    for name in ("level", "device", "text"):
        if not isinstance(body.get(name), str):
            raise RecordError(f"dock alert body lacks a string {name!r}")
    if body["level"] not in DOCK_ALERT_LEVELS:
        raise RecordError(
            f"dock alert level must be one of {', '.join(DOCK_ALERT_LEVELS)}: {body['level']!r}"
        )


def sign_message(identity: DeviceIdentity, *, kind: str, utc: str, body: dict[str, Any]) -> Message:
    """Build and sign a message; validates it as a receiver would."""
    unsigned = Message(FORMAT_VERSION, kind, identity.device_id, utc, body)
    signature = identity.sign(unsigned.signing_bytes()).hex()
    return Message.from_dict({**unsigned.unsigned_dict(), "sig": signature})


def sign_status(
    identity: DeviceIdentity,
    *,
    utc: str,
    online: bool,
    state: str,
    head: tuple[int, str] | None,
    battery: int,
) -> Message:
    """A signed status (``online=False`` is the last will, signed when connecting)."""
    body = status_body(online=online, state=state, head=head, battery=battery)
    return sign_message(identity, kind="status", utc=utc, body=body)
