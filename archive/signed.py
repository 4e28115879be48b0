"""The archive's signed messages (journal-format.md section 4's form: ``v``, ``kind``,
``device``, ``utc``, ``body``, ``sig``), one class per kind: an alert over MQTT, the
derivation record of a party's copy. The archive's key signs them; a receiver parses them
with :meth:`ArchiveMessage.from_bytes` and checks them with ``verify``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from evidence import FORMAT_VERSION
from evidence.clock import UTC_PATTERN
from evidence.exc import RecordError
from evidence.identity import DEVICE_ID_PATTERN, DeviceIdentity
from evidence.record import HEX128, SignedPayload, check_fields, parse_payload
from wire.topics import ARCHIVE_ALERT_KIND, ARCHIVE_ALERT_LEVELS

FIELDS = ("v", "kind", "device", "utc", "body", "sig")
M = TypeVar("M", bound="ArchiveMessage")


@dataclass(frozen=True)
class ArchiveMessage(SignedPayload):
    """A signed message of one ``KIND``; ``device`` is the signer's (the archive's) id."""

    FIELDS = FIELDS
    KIND: ClassVar[str] = ""
    MAX_BYTES: ClassVar[int] = 1 << 16
    WHAT: ClassVar[str] = "archive message"
    v: int
    kind: str
    device: str
    utc: str
    body: dict[str, Any]
    sig: str = field(default="")

    @classmethod
    def from_bytes(cls: type[M], data: bytes) -> M:
        """Parse a payload as a receiver does (the signature is :meth:`verify`'s)."""
        value = parse_payload(data, cls.MAX_BYTES, cls.WHAT)
        checks = (
            ("v", lambda x: x == FORMAT_VERSION, f"must be {FORMAT_VERSION}"),
            ("kind", lambda x: x == cls.KIND, f"must be {cls.KIND!r}"),
            ("device", lambda x: isinstance(x, str) and DEVICE_ID_PATTERN.match(x), "bad id"),
            ("utc", lambda x: isinstance(x, str) and UTC_PATTERN.match(x), "bad UTC stamp"),
            ("body", lambda x: isinstance(x, dict), "must be an object"),
            ("sig", lambda x: isinstance(x, str) and HEX128.match(x), "must be 128 hex digits"),
        )
        check_fields(value, FIELDS, checks, cls.WHAT)
        return cls(**{f: value[f] for f in FIELDS})

    @classmethod
    def sign(cls: type[M], identity: DeviceIdentity, utc: str, body: dict[str, Any]) -> M:
        """Signed by ``identity``, then read back as a receiver would."""
        unsigned = cls(FORMAT_VERSION, cls.KIND, identity.device_id, utc, body)
        sig = identity.sign(unsigned.signing_bytes()).hex()
        return cls.from_bytes(cls(**{**unsigned.unsigned_dict(), "sig": sig}).to_bytes())


class ArchiveAlert(ArchiveMessage):
    """A signed message of kind ``archive_alert`` (``archive.alerts`` sends it, the
    supervisor's console checks it): ``device`` is the archive's id; the body names the
    case, the ``level`` (``wire.topics.ARCHIVE_ALERT_LEVELS``), the day of the 30, the
    deadline and a sentence for people. Here, not in ``archive.alerts``, so that a reader
    needs nothing of the archive but this format."""

    KIND = ARCHIVE_ALERT_KIND
    WHAT = "archive alert"

    @classmethod
    def from_bytes(cls: type[M], data: bytes) -> M:
        message = super().from_bytes(data)
        body = message.body
        for name in ("level", "case", "deadline_utc", "text"):
            if not isinstance(body.get(name), str):
                raise RecordError(f"archive alert body lacks a string {name!r}")
        if body["level"] not in ARCHIVE_ALERT_LEVELS:
            raise RecordError(
                f"archive alert level must be one of {', '.join(ARCHIVE_ALERT_LEVELS)}: "
                f"{body['level']!r:.40}"
            )
        if type(body.get("day")) is not int:
            raise RecordError("archive alert body lacks an integer 'day'")
        return message
