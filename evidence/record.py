"""A journal record: its fields, its canonical bytes, its signature and its hash.

The signed message is the canonical JSON of the record without ``sig``; the record's hash
(what the next record's ``prev`` names) is SHA-256 over the canonical JSON with ``sig``,
which is exactly the record's line in ``journal.jsonl`` without the newline.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any

from . import FORMAT_VERSION
from .canonical import canonical_bytes, parse_canonical, sha256_hex
from .clock import UTC_PATTERN
from .exc import CanonicalError, RecordError
from .identity import DEVICE_ID_PATTERN, DeviceIdentity, verify_signature

FIELDS = ("v", "device", "seq", "prev", "utc", "mono_ns", "kind", "body", "sig")
HEX64 = re.compile(r"\A[0-9a-f]{64}\Z", re.ASCII)
HEX128 = re.compile(r"\A[0-9a-f]{128}\Z", re.ASCII)
KIND_PATTERN = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z", re.ASCII)
MAX_RECORD_BYTES = 64 * 1024

# Kinds the firmware writes; the format admits any kind matching KIND_PATTERN so that
# old verifiers can still check chains written by newer firmware.
KINDS = (
    "boot",
    "recording_started",
    "announcement",
    "procedure",
    "marker",
    "segment",
    "photo",
    "recording_stopped",
    "stoppage",
    "resumed",
    "battery_low",
    "torn_tail",
    "docked",
    "clock_set",
    "receipt",
    "wiped",
    "alert_ack",
    "writer_restarted",
    "writer_gave_up",
    "journal_damaged",
    "schedule",
    "reserve_spent",
)
MEDIA_KINDS = ("segment", "photo")


class SignedPayload:
    """What a signed record and a signed message share: the signature covers the canonical
    JSON of every field but ``sig``; the payload is the canonical JSON of all of them."""

    FIELDS: tuple[str, ...] = ()
    sig: str

    def unsigned_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS if name != "sig"}

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_dict(), "sig": self.sig}

    def signing_bytes(self) -> bytes:
        """The exact bytes the device signs."""
        return canonical_bytes(self.unsigned_dict())

    def to_bytes(self) -> bytes:
        """The payload: a journal line without its newline, or an MQTT message."""
        return canonical_bytes(self.to_dict())

    def verify(self, public_key_hex: str) -> None:
        """Raise :class:`~evidence.exc.SignatureError` unless signed by ``public_key_hex``."""
        verify_signature(public_key_hex, self.signing_bytes(), bytes.fromhex(self.sig))


@dataclass(frozen=True)
class Record(SignedPayload):
    FIELDS = FIELDS
    v: int
    device: str
    seq: int
    prev: str
    utc: str
    mono_ns: int
    kind: str
    body: dict[str, Any]
    sig: str = field(default="")

    @property
    def hash(self) -> str:
        return sha256_hex(self.to_bytes())

    @property
    def media(self) -> tuple[str, int, str] | None:
        """``(file, size, sha256)`` for records that bind a media file, else None."""
        if self.kind not in MEDIA_KINDS:
            return None
        return (self.body["file"], self.body["size"], self.body["sha256"])

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        """Parse one line (without newline); raise :class:`RecordError` with the reason."""
        return cls.from_dict(parse_payload(data, MAX_RECORD_BYTES, "record"))

    @classmethod
    def from_dict(cls, value: Any) -> Record:
        checks = (
            ("v", lambda x: type(x) is int and x == FORMAT_VERSION, f"must be {FORMAT_VERSION}"),
            ("device", lambda x: isinstance(x, str) and DEVICE_ID_PATTERN.match(x), "bad id"),
            ("seq", lambda x: type(x) is int and 0 <= x < 2**63, "must be an integer >= 0"),
            ("prev", lambda x: isinstance(x, str) and HEX64.match(x), "must be 64 hex digits"),
            ("utc", lambda x: isinstance(x, str) and UTC_PATTERN.match(x), "bad UTC stamp"),
            ("mono_ns", lambda x: type(x) is int and 0 <= x < 2**63, "must be an integer >= 0"),
            ("kind", lambda x: isinstance(x, str) and KIND_PATTERN.match(x), "bad kind"),
            ("body", lambda x: isinstance(x, dict), "must be an object"),
            ("sig", lambda x: isinstance(x, str) and HEX128.match(x), "must be 128 hex digits"),
        )
        check_fields(value, FIELDS, checks, "record")
        record = cls(**{f: value[f] for f in FIELDS})
        if record.kind in MEDIA_KINDS:
            check_media_body(record.body, record.kind)
        return record


def parse_payload(data: bytes, max_bytes: int, noun: str) -> Any:
    """Canonical JSON of at most ``max_bytes``, or :class:`RecordError` with the reason."""
    if len(data) > max_bytes:
        raise RecordError(f"{noun} is {len(data)} bytes, more than {max_bytes}")
    try:
        return parse_canonical(data)
    except CanonicalError as exc:
        raise RecordError(str(exc)) from None


def check_fields(
    value: Any, fields: tuple[str, ...], checks: tuple[tuple[str, Any, str], ...], noun: str
) -> None:
    """Raise :class:`RecordError` unless ``value`` is an object with exactly ``fields``,
    each passing its ``(name, predicate, why)`` check."""
    if not isinstance(value, dict):
        raise RecordError(f"{noun} is not a JSON object")
    missing = [f for f in fields if f not in value]
    extra = sorted(set(value) - set(fields))
    if missing:
        raise RecordError(f"{noun} lacks field(s): {', '.join(missing)}")
    if extra:
        raise RecordError(f"{noun} has unknown field(s): {', '.join(extra)}")
    for name, ok, why in checks:
        if not ok(value[name]):
            raise RecordError(f"field {name!r} {why}: {value[name]!r:.80}")


# media/YYYYMMDD/<name>.<ext>: a real calendar day, a name of safe ASCII characters (no
# dot-name, no control character), the extension of the record's kind.
MEDIA_PATH = re.compile(
    r"\Amedia/(?P<day>[0-9]{8})/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.(?P<ext>ts|jpg)\Z",
    re.ASCII,
)
MEDIA_EXTENSIONS = {"segment": "ts", "photo": "jpg"}


def media_path_error(kind: str, path: Any) -> str | None:
    """Why ``path`` is not a media path a ``kind`` record may bind, or None if it is."""
    if not isinstance(path, str):
        return "the file name is not a string"
    match = MEDIA_PATH.match(path)
    if match is None:
        return f"the file {path!r:.80} is not media/YYYYMMDD/<name>.ts|jpg"
    try:
        _dt.date(int(match["day"][:4]), int(match["day"][4:6]), int(match["day"][6:]))
    except ValueError:
        return f"the file {path!r:.80} names no calendar day"
    if match["ext"] != MEDIA_EXTENSIONS.get(kind, match["ext"]):
        return f"a {kind} record binds a .{match['ext']} file"
    return None


def check_media_body(body: dict[str, Any], kind: str = "segment") -> None:
    f, size, digest = body.get("file"), body.get("size"), body.get("sha256")
    why = media_path_error(kind, f)
    if why is not None:
        raise RecordError(f"media record: {why}")
    if not (type(size) is int and 0 <= size < 2**63):
        raise RecordError(f"media record has a bad size: {size!r:.40}")
    if not (isinstance(digest, str) and HEX64.match(digest)):
        raise RecordError(f"media record has a bad sha256: {digest!r:.80}")


def sign_record(
    identity: DeviceIdentity,
    *,
    seq: int,
    prev: str,
    utc: str,
    mono_ns: int,
    kind: str,
    body: dict[str, Any],
) -> Record:
    """Build and sign a record; validates it as a verifier would."""
    unsigned = Record(FORMAT_VERSION, identity.device_id, seq, prev, utc, mono_ns, kind, body)
    signature = identity.sign(unsigned.signing_bytes()).hex()
    return Record.from_dict({**unsigned.unsigned_dict(), "sig": signature})
