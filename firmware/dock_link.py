"""The camera's side of the dock cable: serve the journal and media, honour receipts.

The camera never deletes anything unless a receipt signed by a *trusted* dock key covers
it, names a record of this journal by sequence and hash, and has been journaled first.
The dock's key must be configured (``trusted_docks``: dock id -> public key hex); an
untrusted dock may copy data but its receipts are never honoured (the camera then keeps
everything). See ``docs/dock.md``.

Threads: ``DockLink.run_session`` runs in the recorder's dock thread; it appends to the
same (thread-safe) :class:`~evidence.journal.Journal` the recorder uses.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.cable import (
    CHUNK,
    MAX_PAYLOAD,
    FrameError,
    FrameType,
    head_dict,
    receipt_message,
    record_file,
    require,
    response_message,
)
from evidence.cable_link import Link, Port
from evidence.canonical import GENESIS_HASH
from evidence.clock import format_utc
from evidence.exc import RecordError, SignatureError
from evidence.identity import verify_signature
from evidence.journal import Journal, scan_journal
from evidence.record import Record
from evidence.storage import fsync_dir

_log = logging.getLogger(__name__)


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
        trusted_docks: dict[str, str] | None = None,
        timeout: float = 10.0,
        chunk: int = CHUNK,
    ) -> None:
        self.root = Path(storage_root)
        self.journal = journal
        self.clock = clock
        self.trusted_docks = dict(trusted_docks or {})
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

        Raises :class:`~evidence.cable.CableError` when the line breaks; the journal and
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
        challenge = link.expect(FrameType.CHALLENGE).json()
        dock = require(challenge, "dock", str)
        nonce = require(challenge, "nonce", str)
        dock_key = require(challenge, "dock_key", str)
        out.dock = dock
        head = head_dict(self.journal.head)
        utc = format_utc(self.clock.time_ns())
        ident = self.journal.identity
        sig = ident.sign(response_message(dock, nonce, ident.device_id, head, utc)).hex()
        link.send_json(
            FrameType.RESPONSE,
            {
                "device": ident.device_id,
                "head": head,
                "utc": utc,
                "sig": sig,
                "public_key": ident.public_key_hex,
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
                out.outcome, out.reason = "refused", str(frame.json().get("reason", ""))
                _log.warning("dock %s refused the session: %s", dock, out.reason)
                return out
            if frame.type is FrameType.BYE:
                body = frame.json()
                out.outcome = str(body.get("outcome", ""))
                out.reason = "; ".join(str(f) for f in body.get("flags", []))
                _log.info("dock session with %s ended: %s", dock, out.outcome)
                return out
            body = frame.json()
            if frame.type is FrameType.CLOCK:
                self._on_clock(link, dock, nonce, body, out)
            elif frame.type is FrameType.SYNC:
                self._on_sync(link, body, out)
            elif frame.type is FrameType.GET:
                self._on_get(link, body, out)
            else:
                self._on_receipt(link, dock, dock_key, body, out)

    def _on_clock(self, link: Link, dock: str, nonce: str, body: dict, out: SessionOutcome) -> None:
        new_ns = require(body, "utc_ns", int)
        self.journal.append("docked", {"dock": dock, "challenge": nonce})
        old_ns = self.clock.time_ns()
        setter = getattr(self.clock, "set_time_ns", None)
        if setter is not None:
            setter(new_ns)
            self.journal.append(
                "clock_set",
                {
                    "old_utc": format_utc(old_ns),
                    "new_utc": format_utc(new_ns),
                    "offset_ns": new_ns - old_ns,
                    "by": dock,
                },
            )
        out.clock_offset_ns = new_ns - old_ns
        link.send_json(
            FrameType.CLOCK_SET,
            {
                "offset_ns": new_ns - old_ns,
                "old_utc": format_utc(old_ns),
                "new_utc": format_utc(new_ns),
                "set": setter is not None,
            },
        )

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

    def _on_receipt(
        self, link: Link, dock: str, dock_key: str, body: dict, out: SessionOutcome
    ) -> None:
        upto_seq = require(body, "upto_seq", int)
        upto_hash = require(body, "upto_hash", str)
        dock_sig = require(body, "dock_sig", str)
        reason = ""
        trusted = self.trusted_docks.get(dock)
        if trusted is None or trusted != dock_key:
            reason = f"dock {dock} is not trusted by this camera: receipt not honoured"
        else:
            try:
                verify_signature(
                    trusted,
                    receipt_message(dock, self.journal.identity.device_id, upto_seq, upto_hash),
                    bytes.fromhex(dock_sig),
                )
                if self._record(upto_seq).hash != upto_hash:
                    reason = f"receipt names record {upto_seq} with another hash"
            except (SignatureError, ValueError, RecordError, FrameError) as exc:
                reason = f"receipt rejected: {exc}"
        if reason:
            _log.warning("%s; keeping every file", reason)
            link.send_json(FrameType.WIPED, {"files": 0, "reason": reason})
            return
        receipt = self.journal.append(
            "receipt",
            {"dock": dock, "upto_seq": upto_seq, "upto_hash": upto_hash, "dock_sig": dock_sig},
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
        _log.info("receipt from %s up to seq %d: wiped %d file(s)", dock, upto_seq, len(files))
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
