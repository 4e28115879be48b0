"""What comes back on a camera's ``ack`` topic: a person's :class:`Ack` (the camera buzzes)
or a console's signed :class:`Receipt` that it has shown the alert (the camera stops
resending it). Pure parsing and checking, shared by the camera and the supervisor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from evidence.canonical import canonical_bytes
from evidence.clock import UTC_PATTERN
from evidence.exc import CanonicalError, SignatureError
from evidence.identity import DEVICE_ID_PATTERN, DeviceIdentity, verify_signature
from evidence.record import HEX64, HEX128


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
