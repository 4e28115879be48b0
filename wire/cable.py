"""The dock cable protocol: frames and messages, pure (no I/O), shared by camera and dock.

A frame is ``magic(2) version(1) type(1) seq(4) length(4) payload(length) crc32(4)``,
big-endian; the CRC covers header and payload. Each direction numbers its frames from 0
and a receiver refuses a gap or repeat ("out of order"). Control messages carry canonical
JSON; ``DATA`` frames carry raw media bytes and ``RECORDS`` frames raw journal lines.
See ``docs/dock.md`` for the session flow.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from evidence.canonical import canonical_bytes, parse_canonical
from evidence.exc import CanonicalError, EvidenceError
from evidence.journal import TORN_FILE
from evidence.record import HEX64, Record

MAGIC = b"BK"
VERSION = 1
HEADER = struct.Struct(">2sBBII")
TRAILER = struct.Struct(">I")
CHUNK = 256 * 1024
"""Media bytes per DATA frame: big, so the serial line (not Python) is the bottleneck."""
MAX_PAYLOAD = CHUNK + 4096
RESPONSE_PURPOSE = "bodycam-dock-response-v1"
CLOCK_PURPOSE = "bodycam-dock-clock-v1"
PROTOCOL = 2
"""Session protocol (``CHALLENGE.proto``): 2 = the dock signs its CLOCK and RECEIPT over
both nonces. A camera refuses any other, so a dock that cannot prove its key never sets a
clock or orders a wipe."""
NONCE = re.compile(r"\A[0-9a-f]{32,128}\Z", re.ASCII)
"""A session nonce: 16 to 64 random bytes in lowercase hex."""


class FrameType(IntEnum):
    CHALLENGE = 1  # dock -> camera {dock, dock_key, nonce, proto}
    RESPONSE = 2  # camera -> dock {device, head, utc, sig, public_key, camera_nonce}
    REFUSE = 3  # either way {reason}: the session ends
    CLOCK = 4  # dock -> camera {utc_ns, dock_sig}
    CLOCK_SET = 5  # camera -> dock {offset_ns, old_utc, new_utc, set, reason}
    SYNC = 6  # dock -> camera {after: {seq, hash} | null}
    RECORDS = 7  # camera -> dock: journal lines joined by newlines
    RECORDS_END = 8  # camera -> dock {head: {seq, hash} | null, count}
    GET = 9  # dock -> camera {seq, file, offset}
    DATA = 10  # camera -> dock: raw bytes of the file asked for
    DATA_END = 11  # camera -> dock {seq, size} or {seq, missing: reason}
    RECEIPT = 12  # dock -> camera {dock, device, upto_seq, upto_hash, dock_sig}
    WIPED = 13  # camera -> dock {files, wiped_seq, receipt_seq, reason}
    BYE = 14  # dock -> camera {outcome, flags}


class CableError(EvidenceError):
    """Root of cable errors."""


class FrameError(CableError, ValueError):
    """A frame broke the protocol: bad magic, version, type, length, checksum or order."""


class LinkClosed(CableError):
    """The cable was pulled or the peer closed the line."""


class LinkTimeout(CableError):
    """The peer stalled: no bytes arrived within the timeout."""


class Refused(CableError):
    """The peer refused the session with a reason."""


@dataclass(frozen=True)
class Frame:
    type: FrameType
    seq: int
    payload: bytes

    def json(self) -> dict[str, Any]:
        """The payload of a control frame as a dict (raises :class:`FrameError`)."""
        try:
            value = parse_canonical(bytes(self.payload))
        except CanonicalError as exc:
            raise FrameError(f"{self.type.name} payload is not canonical JSON: {exc}") from None
        if not isinstance(value, dict):
            raise FrameError(f"{self.type.name} payload is not a JSON object")
        return value


def encode_frame(type_: FrameType, seq: int, payload: bytes | memoryview = b"") -> bytes:
    """One frame as bytes (raises :class:`FrameError` for an oversized payload)."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    header = HEADER.pack(MAGIC, VERSION, int(type_), seq & 0xFFFFFFFF, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(header))
    return b"".join((header, payload, TRAILER.pack(crc)))


def parse_header(
    header: bytes, expected_seq: int | None, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameType, int, int]:
    """``(type, seq, length)`` of a 12-byte header, or :class:`FrameError` with the reason."""
    magic, version, type_, seq, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r} (not a bodycam cable frame)")
    if version != VERSION:
        raise FrameError(f"unsupported protocol version {version} (this side speaks {VERSION})")
    try:
        ftype = FrameType(type_)
    except ValueError:
        raise FrameError(f"unknown frame type {type_}") from None
    if length > max_payload:
        raise FrameError(f"oversized frame: {length} bytes, at most {max_payload}")
    if expected_seq is not None and seq != expected_seq:
        raise FrameError(f"out-of-order frame: sequence {seq}, expected {expected_seq}")
    return ftype, seq, length


def check_crc(header: bytes, body: bytes | memoryview, trailer: bytes) -> None:
    (crc,) = TRAILER.unpack(trailer)
    if zlib.crc32(body, zlib.crc32(header)) != crc:
        raise FrameError("garbled frame: checksum mismatch")


class FrameDecoder:
    """Push-style strict decoder: ``feed`` bytes, get whole frames back.

    The first error poisons the decoder (a session never resynchronises mid-stream: the
    side that sees garbage refuses and the session restarts from a new challenge).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.expected_seq = 0
        self._buf = bytearray()
        self._error: FrameError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        self._buf += data
        frames = []
        try:
            while len(self._buf) >= HEADER.size:
                header = bytes(self._buf[: HEADER.size])
                ftype, seq, length = parse_header(header, self.expected_seq, self.max_payload)
                end = HEADER.size + length + TRAILER.size
                if len(self._buf) < end:
                    break
                body = bytes(self._buf[HEADER.size : end - TRAILER.size])
                check_crc(header, body, bytes(self._buf[end - TRAILER.size : end]))
                del self._buf[:end]
                self.expected_seq = (seq + 1) & 0xFFFFFFFF
                frames.append(Frame(ftype, seq, body))
        except FrameError as exc:
            self._error = exc
            raise
        return frames

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole frame yet."""
        return len(self._buf)


def clock_message(dock: str, device: str, session: tuple[str, str], utc_ns: int) -> bytes:
    """The bytes a dock signs to set a camera's clock in one session (``CLOCK.dock_sig``):
    bound to both nonces, so it is good for that session only."""
    return canonical_bytes(
        {
            "purpose": CLOCK_PURPOSE,
            "dock": dock,
            "device": device,
            "nonce": session[0],
            "camera_nonce": session[1],
            "utc_ns": utc_ns,
        }
    )


def response_message(dock: str, nonce: str, device: str, head: dict | None, utc: str) -> bytes:
    """The bytes a camera signs to answer a dock's challenge (binds its journal head)."""
    return canonical_bytes(
        {
            "purpose": RESPONSE_PURPOSE,
            "dock": dock,
            "nonce": nonce,
            "device": device,
            "head": head,
            "utc": utc,
        }
    )


def head_dict(head: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if head is None else {"seq": head[0], "hash": head[1]}


def require(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """A field of a control message, type-checked (raises :class:`FrameError`)."""
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FrameError(f"message field {name!r} missing or of the wrong type")
    return value


def record_file(record: Record) -> tuple[str, int, str] | None:
    """``(file, size, sha256)`` of the file a record binds: media, or a torn-tail side file."""
    if record.media is not None:
        return record.media
    if record.kind == "torn_tail":
        f, size, digest = (record.body.get(k) for k in ("file", "size", "sha256"))
        if (
            isinstance(f, str)
            and TORN_FILE.match(f)
            and type(size) is int
            and (isinstance(digest, str) and HEX64.match(digest))
        ):
            return f, size, digest
    return None
