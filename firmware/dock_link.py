"""The camera's side of the dock cable: serve the journal and media, honour receipts.

Only a dock of the camera's unit-signed registry (``trusted_docks``: dock id -> its
:class:`~evidence.registry.DockEntry`, or a bare public key hex), not revoked and valid now,
may set the clock or give a receipt, and it must prove it holds that key: the camera sends
a fresh ``camera_nonce`` in its RESPONSE, and the dock signs its CLOCK and RECEIPT over both
nonces (:func:`~wire.cable.clock_message`, :func:`~evidence.receipt.receipt_message`), so
an order copied from another session, or made by anyone without the key, is refused and
never journaled. A dock that claims a registered id with another key, or a revoked one, is
refused at the challenge. A dock the registry does not list may copy (as a camera without a
registry allows any dock to), but its clock and receipts are answered "not set" and
"nothing wiped", with the reason.

The camera never deletes anything unless such a receipt covers it, names a record of this
journal by sequence and hash, and has been journaled first. The clock moves at most
``max_clock_step_s`` unless the camera knows its own clock is wrong (its RTC lost power:
``clock.time_valid()`` is False, or the clock reads before :data:`CLOCK_FLOOR_NS`), and
never outside :data:`CLOCK_FLOOR_NS`..:data:`CLOCK_CEILING_NS`; ``clock_set`` is journaled,
with the verified dock's id, before the clock changes, and a clock that refuses the value
is journaled as ``clock_not_set``. At most :data:`MAX_CLOCK_FRAMES` CLOCK and one RECEIPT
per session; more is refused. See ``docs/dock.md``.

Threads: ``DockLink.run_session`` runs in the recorder's dock thread; it appends to the
same (thread-safe) :class:`~evidence.journal.Journal` the recorder uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.canonical import GENESIS_HASH
from evidence.clock import format_utc
from evidence.exc import RecordError, SignatureError
from evidence.identity import check_device_id, verify_signature
from evidence.journal import Journal, scan_journal
from evidence.receipt import receipt_message
from evidence.record import HEX64, HEX128, Record
from evidence.registry import DockEntry
from evidence.storage import fsync_dir
from wire.cable import (
    CHUNK,
    MAX_PAYLOAD,
    NONCE,
    PROTOCOL,
    FrameError,
    FrameType,
    clock_message,
    head_dict,
    record_file,
    require,
    response_message,
)
from wire.link import Link, Port

_log = logging.getLogger(__name__)

NS = 1_000_000_000
CLOCK_FLOOR_NS = 1_735_689_600 * NS  # 2025-01-01T00:00:00Z: older than this firmware
CLOCK_CEILING_NS = 4_102_444_799 * NS  # 2099-12-31T23:59:59Z: the RTC's last year
MAX_CLOCK_STEP_S = 300.0
MAX_CLOCK_FRAMES = 1


class UntrustedDock(FrameError):
    """The dock claims a registered id with another key, or its key is revoked or not
    valid: the camera refuses the session at the challenge."""


@dataclass
class _Dock:
    """The dock of one session: who it claims to be, and whether it may give orders."""

    id: str
    key: str
    session: tuple[str, str]  # (the dock's nonce, the camera's nonce)
    problem: str | None  # why it may not set the clock or give a receipt; None = trusted
    journaled: bool = False  # the ``docked`` record is written
    clocks: int = 0
    receipts: int = 0


def _utc_text(ns: int) -> str:
    """A stamp for any integer a dock may send (format_utc fails outside years 1-9999)."""
    try:
        return format_utc(ns)
    except (ValueError, OverflowError, OSError):
        return f"{ns} ns since 1970"


@dataclass
class SessionOutcome:
    dock: str = ""
    clock_offset_ns: int | None = None
    records_sent: int = 0
    bytes_sent: int = 0
    receipt_seq: int | None = None
    wiped: list[str] = field(default_factory=list)
    outcome: str = ""
    reason: str = ""


class DockLink:
    """Serves one dock session from a device storage folder and its open journal."""

    def __init__(
        self,
        storage_root: str | os.PathLike,
        journal: Journal,
        clock: Any,
        trusted_docks: Mapping[str, str | DockEntry] | None = None,
        timeout: float = 10.0,
        chunk: int = CHUNK,
        max_clock_step_s: float = MAX_CLOCK_STEP_S,
        pinned_key: str | None = None,
        clock_tolerance_s: float = 0.0,
    ) -> None:
        """``pinned_key``: the dock key this session's connection is already
        authenticated to (the TLS peer key, pinned by :mod:`firmware.netdock`); the dock's
        CHALLENGE must name it and be that key's dock of the registry, else it is refused.

        ``clock_tolerance_s``: a dock's time closer than this to the camera's is not
        stepped to (0 on the cable: always set). The network docks every minute while
        recording: a step of milliseconds each time would only add a record, and a step
        back may land between two records another thread appends."""
        self.root = Path(storage_root)
        self.pinned_key = pinned_key
        self.clock_tolerance_ns = int(clock_tolerance_s * NS)
        self.journal = journal
        self.clock = clock
        self.trusted_docks = dict(trusted_docks or {})
        self.max_clock_step_ns = int(max_clock_step_s * NS)
        self.timeout = timeout
        self.chunk = min(chunk, CHUNK)  # media bytes per DATA frame (the resume granularity)
        self._cache: tuple[tuple[int, str] | None, list[bytes]] | None = None

    # -- journal access ----------------------------------------------------------------
    def _lines(self) -> list[bytes]:
        """The journal's record lines, read again only when it has grown (a GET per media
        file must not read the whole journal each time)."""
        head = self.journal.head  # read before the file: a later append forces a re-read
        if self._cache is None or self._cache[0] != head:
            self._cache = (
                head,
                [line for _, line in scan_journal(self.journal.path).lines if line],
            )
        return self._cache[1]

    def _lines_after(self, after: dict | None) -> list[bytes]:
        lines = self._lines()
        if after is None:
            return lines
        seq, digest = require(after, "seq", int), require(after, "hash", str)
        if seq >= len(lines):
            raise FrameError(
                f"dock asks after seq {seq}, but this journal ends at {len(lines) - 1}"
            )
        if Record.from_bytes(lines[seq]).hash != digest:
            raise FrameError(f"dock's record {seq} differs from this journal's (another chain)")
        return lines[seq + 1 :]

    def _record(self, seq: int) -> Record:
        lines = self._lines()
        if not 0 <= seq < len(lines):
            raise FrameError(f"no record {seq} in this journal")
        return Record.from_bytes(lines[seq])

    # -- the session -------------------------------------------------------------------
    def run_session(self, port: Port) -> SessionOutcome:
        """Answer one dock: wait for its challenge, serve it, return what happened.

        Raises :class:`~wire.cable.CableError` when the line breaks; the journal and
        media stay as they were (nothing is deleted outside a verified receipt).
        """
        link = Link(port, self.timeout)
        link.expect_any_first_seq()
        try:
            return self._serve(link)
        except (FrameError, RecordError) as exc:
            link.refuse(str(exc))  # tell the dock why, then report it to the caller
            raise

    def _serve(self, link: Link) -> SessionOutcome:
        out = SessionOutcome()
        dock = self._challenge(link.expect(FrameType.CHALLENGE).json())
        out.dock = dock.id
        head = head_dict(self.journal.head)
        utc = format_utc(self.clock.time_ns())
        ident = self.journal.identity
        nonce = dock.session[0]
        sig = ident.sign(response_message(dock.id, nonce, ident.device_id, head, utc)).hex()
        link.send_json(
            FrameType.RESPONSE,
            {
                "device": ident.device_id,
                "head": head,
                "utc": utc,
                "sig": sig,
                "public_key": ident.public_key_hex,
                "camera_nonce": dock.session[1],
            },
        )
        while True:
            frame = link.expect(
                FrameType.CLOCK,
                FrameType.SYNC,
                FrameType.GET,
                FrameType.RECEIPT,
                FrameType.BYE,
                FrameType.REFUSE,
            )
            if frame.type is FrameType.REFUSE:
                out.outcome, out.reason = "refused", str(frame.json().get("reason", ""))[:500]
                _log.warning("dock %s refused the session: %s", dock.id, out.reason)
                return out
            if frame.type is FrameType.BYE:
                body = frame.json()
                out.outcome = str(body.get("outcome", ""))[:64]
                flags = body.get("flags", [])
                out.reason = (
                    "; ".join(str(f) for f in flags)[:2000] if isinstance(flags, list) else ""
                )
                _log.info("dock session with %s ended: %s", dock.id, out.outcome)
                return out
            body = frame.json()
            if frame.type is FrameType.CLOCK:
                self._on_clock(link, dock, body, out)
            elif frame.type is FrameType.SYNC:
                self._on_sync(link, body, out)
            elif frame.type is FrameType.GET:
                self._on_get(link, body, out)
            else:
                self._on_receipt(link, dock, body, out)

    # -- who the dock is -----------------------------------------------------------------
    def _challenge(self, challenge: dict) -> _Dock:
        """The dock of this session, from its CHALLENGE; raises :class:`UntrustedDock` for
        an impostor or a revoked key, :class:`FrameError` for a malformed challenge."""
        proto = challenge.get("proto")
        if proto != PROTOCOL:
            raise FrameError(
                f"dock speaks cable protocol {str(proto)[:16]}; this camera needs {PROTOCOL} "
                "(a dock signs what it orders): update the dock"
            )
        dock_id = require(challenge, "dock", str)
        nonce = require(challenge, "nonce", str)
        dock_key = require(challenge, "dock_key", str)
        try:
            check_device_id(dock_id)
        except ValueError:
            raise FrameError(f"dock id {dock_id[:70]!r} is not a valid id") from None
        if not NONCE.match(nonce):
            raise FrameError("the dock's nonce is not 32-128 lowercase hex digits")
        if not HEX64.match(dock_key):
            raise FrameError("the dock's key is not 64 lowercase hex digits")
        if self.pinned_key is not None and dock_key != self.pinned_key:
            raise UntrustedDock(
                f"dock {dock_id}'s challenge names key {dock_key[:16]}..., but the connection "
                f"is with key {self.pinned_key[:16]}... (a relay): refused"
            )
        session = (nonce, os.urandom(16).hex())
        problem = self._dock_problem(dock_id, dock_key)
        if self.pinned_key is not None and problem is not None:
            raise UntrustedDock(f"{problem}, though its network key is pinned: refused")
        return _Dock(dock_id, dock_key, session, problem)

    def _dock_problem(self, dock_id: str, dock_key: str) -> str | None:
        """None when ``dock_id`` is a dock of the registry whose key is ``dock_key`` and may
        sign now; the reason its orders are refused when the registry does not list it."""
        entry = self.trusted_docks.get(dock_id)
        if entry is None:
            if not self.trusted_docks:
                return f"dock {dock_id} is not trusted: this camera has no dock registry"
            return f"dock {dock_id} is not trusted: it is not in this camera's registry"
        public_key = entry if isinstance(entry, str) else entry.public_key
        if public_key != dock_key:
            raise UntrustedDock(
                f"dock {dock_id} offers a key that is not its key in this camera's registry "
                "(an impostor): refused"
            )
        if isinstance(entry, DockEntry):
            if entry.revoked:  # whatever this camera's clock says
                raise UntrustedDock(
                    f"dock {dock_id}: {entry.problem_at(entry.revoked_utc)}; refused"
                )
            if self._clock_problem() is None:  # a wrong clock cannot judge validity
                why = entry.problem_at(format_utc(self.clock.time_ns()))
                if why is not None:
                    raise UntrustedDock(f"dock {dock_id}: {why}; refused")
        return None

    def _clock_problem(self) -> str | None:
        """Why the camera knows its own clock is wrong, or None when it trusts it."""
        if not self.clock.time_valid():
            return "the camera's RTC lost its time (oscillator stopped)"
        now = self.clock.time_ns()
        if now < CLOCK_FLOOR_NS:
            return f"the camera's clock reads {_utc_text(now)}, before this firmware was made"
        return None

    def _verify(self, dock: _Dock, message: bytes, body: dict, what: str) -> str:
        """The dock's signature of this session's ``message``; refuses the session when
        it does not verify under the dock's registered key."""
        sig = body.get("dock_sig")
        try:
            if not (isinstance(sig, str) and HEX128.match(sig)):
                raise SignatureError("no signature")
            verify_signature(dock.key, message, bytes.fromhex(sig))
        except SignatureError:
            raise FrameError(
                f"{what} is not signed by dock {dock.id}'s key for this session "
                "(forged, or replayed from another session): refused"
            ) from None
        return sig

    def _journal_docked(self, dock: _Dock) -> None:
        if not dock.journaled:
            self.journal.append(
                "docked",
                {"dock": dock.id, "challenge": dock.session[0], "camera_nonce": dock.session[1]},
            )
            dock.journaled = True

    # -- what the dock orders ------------------------------------------------------------
    def _on_clock(self, link: Link, dock: _Dock, body: dict, out: SessionOutcome) -> None:
        dock.clocks += 1
        if dock.clocks > MAX_CLOCK_FRAMES:
            raise FrameError(
                f"dock sent more than {MAX_CLOCK_FRAMES} CLOCK frame(s) in one session: refused"
            )
        new_ns = require(body, "utc_ns", int)
        old_ns = self.clock.time_ns()
        offset = new_ns - old_ns
        reply = {
            "offset_ns": offset,
            "old_utc": format_utc(old_ns),
            "new_utc": _utc_text(new_ns),
            "set": False,
            "reason": "",
        }
        if dock.problem is None and abs(offset) < self.clock_tolerance_ns:
            # Close enough: not stepped, nothing journaled (the dock records the offset).
            self._verify(
                dock, clock_message(dock.id, self._device, dock.session, new_ns), body, "CLOCK"
            )
            self._journal_docked(dock)
            reply["reason"] = (
                f"within {self.clock_tolerance_ns / NS:g} s of the dock's time: not stepped"
            )
            link.send_json(FrameType.CLOCK_SET, reply)
            return
        reason = self._clock_refusal(dock, body, new_ns, offset)
        if not reason:
            reason = self._set_clock(dock, body["dock_sig"], old_ns, new_ns)
        if reason:
            _log.warning("clock not set (dock %s, step %+d s): %s", dock.id, offset // NS, reason)
            reply["reason"] = reason
        else:
            reply["set"] = True
            out.clock_offset_ns = offset
        link.send_json(FrameType.CLOCK_SET, reply)

    def _clock_refusal(self, dock: _Dock, body: dict, new_ns: int, offset: int) -> str:
        """Why this CLOCK may not set the clock ("" = it may). Journals ``docked`` for a
        verified dock, and ``clock_not_set`` when that dock's step is refused."""
        if dock.problem is not None:
            return f"{dock.problem}: clock not set"
        self._verify(
            dock, clock_message(dock.id, self._device, dock.session, new_ns), body, "CLOCK"
        )
        self._journal_docked(dock)
        reason = ""
        invalid = self._clock_problem()
        if not CLOCK_FLOOR_NS <= new_ns <= CLOCK_CEILING_NS:
            reason = (
                f"the dock's time {_utc_text(new_ns)} is outside "
                f"{format_utc(CLOCK_FLOOR_NS)[:10]}..{format_utc(CLOCK_CEILING_NS)[:10]}"
            )
        elif invalid is None and abs(offset) > self.max_clock_step_ns:
            reason = (
                f"a step of {offset / NS:+.0f} s exceeds the camera's limit of "
                f"{self.max_clock_step_ns / NS:g} s (its own clock is valid)"
            )
        if reason:
            self.journal.append(
                "clock_not_set",
                {
                    "by": dock.id,
                    "new_utc": _utc_text(new_ns),
                    "offset_ns": offset,
                    "reason": reason,
                },
            )
        return reason

    def _set_clock(self, dock: _Dock, dock_sig: str, old_ns: int, new_ns: int) -> str:
        """Journal ``clock_set`` (the verified dock), then set the clock; a clock that
        refuses is journaled (``clock_not_set``) and the reason returned."""
        record = self.journal.append(
            "clock_set",
            {
                "old_utc": format_utc(old_ns),
                "new_utc": format_utc(new_ns),
                "offset_ns": new_ns - old_ns,
                "by": dock.id,
                "dock_sig": dock_sig,
            },
        )
        try:
            self.clock.set_time_ns(new_ns)
        except (OSError, ValueError, OverflowError) as exc:  # the RTC refused: nothing set
            reason = f"the clock refused the time: {exc}"[:300]
            self.journal.append(
                "clock_not_set",
                {
                    "by": dock.id,
                    "new_utc": format_utc(new_ns),
                    "offset_ns": new_ns - old_ns,
                    "reason": reason,
                    "clock_set_seq": record.seq,
                },
            )
            return reason
        return ""

    @property
    def _device(self) -> str:
        return self.journal.identity.device_id

    def _on_sync(self, link: Link, body: dict, out: SessionOutcome) -> None:
        lines = self._lines_after(body.get("after"))
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if size + len(line) + 1 > MAX_PAYLOAD and batch:
                link.send(FrameType.RECORDS, b"\n".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line) + 1
        if batch:
            link.send(FrameType.RECORDS, b"\n".join(batch))
        out.records_sent += len(lines)
        link.send_json(
            FrameType.RECORDS_END, {"head": head_dict(self.journal.head), "count": len(lines)}
        )

    def _on_get(self, link: Link, body: dict, out: SessionOutcome) -> None:
        seq = require(body, "seq", int)
        offset = require(body, "offset", int)
        bound = record_file(self._record(seq))
        if bound is None or bound[0] != body.get("file"):
            raise FrameError(f"dock asked for a file record {seq} does not name")
        path = self.root / bound[0]
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            link.send_json(FrameType.DATA_END, {"seq": seq, "missing": "file not on the card"})
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                raise FrameError(f"dock asked for offset {offset} of a {size}-byte file")
            f.seek(offset)
            buf = bytearray(self.chunk)
            view = memoryview(buf)
            while n := f.readinto(buf):
                link.send(FrameType.DATA, view[:n])
                out.bytes_sent += n
        link.send_json(FrameType.DATA_END, {"seq": seq, "size": size})

    def _on_receipt(self, link: Link, dock: _Dock, body: dict, out: SessionOutcome) -> None:
        dock.receipts += 1
        if dock.receipts > 1:
            raise FrameError("dock sent a second RECEIPT in one session: refused")
        upto_seq = require(body, "upto_seq", int)
        upto_hash = require(body, "upto_hash", str)
        require(body, "dock_sig", str)
        reason = ""
        if dock.problem is not None:
            reason = f"{dock.problem}: receipt not honoured"
        else:
            message = receipt_message(dock.id, self._device, upto_seq, upto_hash, dock.session)
            dock_sig = self._verify(dock, message, body, "RECEIPT")
            try:
                if self._record(upto_seq).hash != upto_hash:
                    reason = f"receipt names record {upto_seq} with another hash"
            except (RecordError, FrameError) as exc:
                reason = f"receipt rejected: {exc}"
        if reason:
            _log.warning("%s; keeping every file", reason)
            link.send_json(FrameType.WIPED, {"files": 0, "reason": reason})
            return
        self._journal_docked(dock)
        receipt = self.journal.append(
            "receipt",
            {
                "dock": dock.id,
                "upto_seq": upto_seq,
                "upto_hash": upto_hash,
                "dock_sig": dock_sig,
                "nonce": dock.session[0],
                "camera_nonce": dock.session[1],
            },
        )
        out.receipt_seq = receipt.seq
        files = self._covered_files(upto_seq)
        wiped_seq = None
        if files:
            # Journal the wipe first: a power cut after it leaves files the journal says
            # are wiped (harmless, removed at the next receipt), never the other way round.
            wiped_seq = self.journal.append(
                "wiped", {"files": files, "receipt_seq": receipt.seq}
            ).seq
            folders = set()
            for rel in files:
                path = self.root / rel
                path.unlink(missing_ok=True)
                folders.add(path.parent)
            for folder in folders:
                fsync_dir(folder)
                try:
                    folder.rmdir()  # an emptied day folder
                    fsync_dir(folder.parent)
                except OSError:
                    pass
        out.wiped = files
        _log.info("receipt from %s up to seq %d: wiped %d file(s)", dock.id, upto_seq, len(files))
        link.send_json(
            FrameType.WIPED,
            {"files": len(files), "receipt_seq": receipt.seq, "wiped_seq": wiped_seq, "reason": ""},
        )

    def _covered_files(self, upto_seq: int) -> list[str]:
        """Media files named by records up to ``upto_seq`` that are still on the card."""
        files = []
        prev = GENESIS_HASH
        for line in self._lines():
            record = Record.from_bytes(line)
            if record.seq > upto_seq:
                break
            if record.prev != prev:
                raise FrameError(f"journal chain broken at {record.seq}: not wiping")
            prev = record.hash
            if record.media is not None and (self.root / record.media[0]).exists():
                files.append(record.media[0])
        return files
