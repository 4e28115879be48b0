"""One docking, dock side: handshake, clock, offload with verification, receipt.

Runs in a bay worker thread. Verification happens while bytes stream in: each record's
signature and chain link are checked as it arrives; each media file is hashed while it is
written to ``.partial``; the receipt goes out only after :class:`~dock.store.Store` has made
everything durable. Anything suspicious is flagged in the index and withholds the receipt,
so the camera keeps its data.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from evidence import dockjournal
from evidence.cable import (
    NONCE,
    PROTOCOL,
    CableError,
    FrameError,
    FrameType,
    LinkClosed,
    clock_message,
    receipt_message,
    record_file,
    require,
    response_message,
)
from evidence.cable_link import Link, Port
from evidence.canonical import GENESIS_HASH
from evidence.exc import RecordError, SignatureError
from evidence.identity import DeviceIdentity, verify_signature
from evidence.record import HEX64, Record
from evidence.registry import DeviceEntry

from .exc import DockError, MediaMismatch
from .store import PartialFile, Store

_log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass
class SessionResult:
    device: str = ""
    outcome: str = "interrupted"  # stored | refused | flagged | interrupted
    reason: str = ""
    records: int = 0
    media: int = 0
    bytes: int = 0
    resumed_bytes: int = 0
    receipt_upto: int | None = None
    wiped: int = 0
    clock_offset_ns: int | None = None
    camera_head_seq: int | None = None  # the head the camera signed in the handshake
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Flagged(DockError):
    """Something on the camera is wrong; flagged, no receipt."""


class Committer:
    """Makes verified files and records durable in order, in its own thread, while the
    session already receives the next file (fsync would otherwise stall the line).

    Thread: one daemon thread per offload; ``close`` drains it (always, even when the line
    broke: whatever was verified is kept) and re-raises a store failure.
    """

    def __init__(self, store: Store, entry: DeviceEntry) -> None:
        self.store = store
        self.entry = entry
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[PartialFile | None, list[Record]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dock-commit", daemon=True)
        self._thread.start()

    def put(self, partial: PartialFile | None, batch: list[Record]) -> None:
        if self.error is not None:
            raise DockError(f"the store could not write: {self.error}")
        self._queue.put((partial, batch))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            partial, batch = item
            if self.error is not None:
                if partial is not None:
                    partial.suspend()
                continue
            try:
                if partial is not None:
                    partial.sync()
                    self.store.place(self.entry, partial)
                self.store.append(self.entry, batch)
            except BaseException as exc:  # reported by close(); nothing after it is stored
                _log.exception("store write failed")
                self.error = exc

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise DockError(f"the store could not write: {self.error}")


class DockSession:
    """Serve one camera on one line. ``run`` never raises for camera or line problems."""

    def __init__(
        self,
        store: Store,
        identity: DeviceIdentity,
        bay: str = "bay",
        timeout: float = 10.0,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.bay = bay
        self.timeout = timeout
        self.progress = progress or (lambda info: None)
        self.result = SessionResult()
        self._done = 0
        self._total = 0
        self._t0 = 0.0

    def _report(self, state: str, milestone: bool = True) -> None:
        """Progress for the bay's status; ``milestone`` marks a file boundary or a state
        change (always shown), the rest may be throttled by the bay."""
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        self.progress(
            {
                "state": state,
                "device": self.result.device,
                "done": self._done,
                "total": self._total,
                "rate": self.result.bytes / elapsed,
                "milestone": milestone,
            }
        )

    def run(self, port: Port) -> SessionResult:
        self._t0 = time.monotonic()
        link = Link(port, self.timeout, bulk_reader=True)
        docking = self.store.index.execute(
            "INSERT INTO dockings(bay, started_utc) VALUES (?,?)", (self.bay, self.store.now_utc())
        )
        r = self.result
        try:
            self._session(link)
        except Flagged as exc:
            r.outcome, r.reason = "flagged", str(exc)
            self._bye(link)
        except LinkClosed as exc:
            r.outcome, r.reason = "interrupted", str(exc)
        except (CableError, DockError, RecordError) as exc:
            r.outcome, r.reason = "refused", str(exc)
            link.refuse(str(exc))
        finally:
            r.seconds = time.monotonic() - self._t0
            self.store.index.execute(
                "UPDATE dockings SET device=?, ended_utc=?, clock_offset_ns=?, records=?, media=?,"
                " bytes=?, receipt_upto=?, outcome=?, reason=?, camera_head_seq=? WHERE id=?",
                (
                    r.device,
                    self.store.now_utc(),
                    r.clock_offset_ns,
                    r.records,
                    r.media,
                    r.bytes,
                    r.receipt_upto,
                    r.outcome,
                    r.reason,
                    r.camera_head_seq,
                    docking,
                ),
            )
            self._report(r.outcome)
        log = _log.info if r.outcome == "stored" else _log.warning
        log("bay %s: %s %s (%s)", self.bay, r.device or "?", r.outcome, r.reason or "ok")
        return r

    def _bye(self, link: Link) -> None:
        try:
            link.send_json(
                FrameType.BYE, {"outcome": self.result.outcome, "flags": self.result.flags}
            )
        except CableError:
            pass

    def _flag(self, kind: str, detail: str, block: bool = True) -> None:
        self.store.flag(self.result.device, kind, detail)
        self.result.flags.append(f"{kind}: {detail}")
        if block:
            raise Flagged(f"{kind}: {detail}")

    # -- the protocol ------------------------------------------------------------------
    def _session(self, link: Link) -> None:
        r = self.result
        nonce = os.urandom(16).hex()
        dock = self.identity.device_id
        link.send_json(
            FrameType.CHALLENGE,
            {
                "dock": dock,
                "dock_key": self.identity.public_key_hex,
                "nonce": nonce,
                "proto": PROTOCOL,
            },
        )
        self._report("handshake")
        resp = link.expect(FrameType.RESPONSE).json()
        device = require(resp, "device", str)
        r.device = device[:64]
        camera_nonce = resp.get("camera_nonce")
        if not (isinstance(camera_nonce, str) and NONCE.match(camera_nonce)):
            raise FrameError("the camera sent no camera_nonce (an older cable protocol)")
        self._nonces = (nonce, camera_nonce)  # what this session's CLOCK and RECEIPT sign
        head = resp.get("head")
        if head is not None:
            seq, digest = require(head, "seq", int), require(head, "hash", str)
            if not HEX64.match(digest) or seq < 0:
                raise FrameError("camera head is malformed")
        entry = self.store.registry().get(device)
        if entry is None:
            key = str(resp.get("public_key", "?"))[:64]
            reason = f"unregistered camera {device!r} (key {key}): not in this dock's registry"
            self.store.flag(r.device, "unregistered", reason)
            r.flags.append(reason)
            raise DockError(reason)
        try:
            verify_signature(
                entry.public_key,
                response_message(dock, nonce, device, head, require(resp, "utc", str)),
                bytes.fromhex(require(resp, "sig", str)),
            )
        except (SignatureError, ValueError) as exc:
            reason = f"camera {device} failed the challenge ({exc}): not its registered key"
            self.store.flag(device, "bad_handshake", reason)
            raise DockError(reason) from None
        revoked = entry.problem_at(self.store.now_utc())
        if revoked is not None:
            reason = f"camera {device}: {revoked}; not docking it"
            self.store.flag(device, "revoked", reason)
            raise DockError(reason)
        r.camera_head_seq = None if head is None else head["seq"]
        self.store.log(
            "docking",
            dockjournal.docking_body(device, self.bay, nonce, head, resp["utc"], resp["sig"]),
        )
        with self.store.device_lock(device):
            self._docked(link, entry, head)

    def _docked(self, link: Link, entry: DeviceEntry, head: dict | None) -> None:
        r = self.result
        stored = self.store.head(entry.device_id)
        cam_seq = -1 if head is None else head["seq"]
        if stored is not None and cam_seq < stored[0]:
            self._flag(
                "tail_cut",
                f"the dock stored records up to seq {stored[0]}, but the "
                f"camera's journal now ends at seq {cam_seq}",
            )
        utc_ns = self.store.clock.time_ns()
        clock_sig = self.identity.sign(
            clock_message(self.identity.device_id, entry.device_id, self._nonces, utc_ns)
        )
        link.send_json(FrameType.CLOCK, {"utc_ns": utc_ns, "dock_sig": clock_sig.hex()})
        clock = link.expect(FrameType.CLOCK_SET).json()
        r.clock_offset_ns = require(clock, "offset_ns", int)
        if clock.get("set") is not True:
            r.flags.append(f"camera clock not set: {dockjournal.bounded(clock.get('reason'), 300)}")
        _log.info(
            "bay %s: %s clock corrected by %.3f s",
            self.bay,
            entry.device_id,
            r.clock_offset_ns / 1e9,
        )
        new_head = self._offload(link, entry, stored)
        if new_head is None:
            return
        receipt_body = {
            "dock": self.identity.device_id,
            "device": entry.device_id,
            "upto_seq": new_head[0],
            "upto_hash": new_head[1],
            "dock_sig": self.identity.sign(
                receipt_message(self.identity.device_id, entry.device_id, *new_head, self._nonces)
            ).hex(),
        }
        # Journaled before it is given: no receipt ever leaves the dock unrecorded.
        self.store.log(
            "receipt_given",
            dockjournal.receipt_body(
                entry.device_id, new_head[0], new_head[1], receipt_body["dock_sig"], self._nonces
            ),
        )
        link.send_json(FrameType.RECEIPT, receipt_body)
        r.receipt_upto = new_head[0]
        wiped = link.expect(FrameType.WIPED).json()
        r.wiped = wiped.get("files", 0) if isinstance(wiped.get("files"), int) else 0
        if wiped.get("reason"):
            r.flags.append(f"camera kept its data: {wiped['reason']}")
        # Fetch the camera's receipt/wiped records too, so its journal equals the store's.
        self._offload(link, entry, new_head)
        r.outcome = "stored"
        self._bye(link)

    def _offload(
        self, link: Link, entry: DeviceEntry, after: tuple[int, str] | None
    ) -> tuple[int, str] | None:
        """Records after ``after``, then their files; returns the new stored head."""
        link.send_json(
            FrameType.SYNC,
            {"after": None if after is None else {"seq": after[0], "hash": after[1]}},
        )
        self._report("records")
        records: list[Record] = []
        prev_seq, prev_hash = (-1, GENESIS_HASH) if after is None else after
        while True:
            frame = link.expect(FrameType.RECORDS, FrameType.RECORDS_END)
            if frame.type is FrameType.RECORDS_END:
                break
            for line in bytes(frame.payload).split(b"\n"):
                try:
                    rec = Record.from_bytes(line)
                    if rec.device != entry.device_id:
                        raise RecordError(f"record of device {rec.device!r}")
                    if rec.seq != prev_seq + 1 or rec.prev != prev_hash:
                        raise RecordError(f"chain broken at seq {rec.seq}")
                    rec.verify(entry.public_key)
                except RecordError as exc:
                    self._flag("bad_record", f"record after seq {prev_seq}: {exc}")
                records.append(rec)
                prev_seq, prev_hash = rec.seq, rec.hash
        self.result.records += len(records)
        self._check_tail(entry, records, after)
        if not records:
            return after
        self.store.note_known_media(entry, records)
        wiped_files = {
            f
            for r in records
            if r.kind == "wiped"
            for f in r.body.get("files", [])
            if isinstance(f, str)
        }
        bounds = [record_file(rec) for rec in records]
        self._total += sum(b[1] for b in bounds if b)
        batch: list[Record] = []
        committer = Committer(self.store, entry)
        try:
            for rec, bound in zip(records, bounds, strict=True):
                batch.append(rec)
                if bound is None:
                    continue
                partial = self._fetch(link, entry, rec, bound, wiped_files)
                if partial is not None:
                    self.result.media += 1
                committer.put(partial, batch)
                batch = []
            committer.put(None, batch)
        finally:
            committer.close()  # durable before any receipt; kept even if the line broke
        return records[-1].seq, records[-1].hash

    def _check_tail(
        self, entry: DeviceEntry, records: list[Record], after: tuple[int, str] | None
    ) -> None:
        for rec in records:
            if rec.kind == "torn_tail":
                self._flag(
                    "torn_tail",
                    f"the camera repaired a torn journal record at seq "
                    f"{rec.seq} (power cut mid-append)",
                    block=False,
                )
        rows = self.store.index.query(
            "SELECT seq, hash, utc FROM status_heads WHERE device=?", (entry.device_id,)
        )
        if not rows:
            return
        seen = rows[0]
        last = records[-1].seq if records else (after[0] if after else -1)
        if seen["seq"] > last:
            self._flag(
                "tail_cut",
                f"a status message at {seen['utc']} showed journal head seq "
                f"{seen['seq']}, but the camera's journal ends at seq {last}",
            )
        for rec in records:
            if rec.seq == seen["seq"] and rec.hash != seen["hash"]:
                self._flag(
                    "tail_cut",
                    f"the camera's record {rec.seq} differs from the head "
                    f"seq {seen['seq']} a status message showed at "
                    f"{seen['utc']}: its journal was cut and rewritten",
                )

    def _fetch(
        self,
        link: Link,
        entry: DeviceEntry,
        rec: Record,
        bound: tuple[str, int, str],
        wiped_files: set[str],
    ) -> PartialFile | None:
        file, size, digest = bound
        partial = self.store.partial(entry.device_id, file, size, digest)
        self._done += partial.offset
        self.result.resumed_bytes += partial.offset
        link.send_json(FrameType.GET, {"seq": rec.seq, "file": file, "offset": partial.offset})
        self._report("offloading")
        last_report = time.monotonic()
        try:
            while True:
                frame = link.expect(FrameType.DATA, FrameType.DATA_END)
                if frame.type is FrameType.DATA_END:
                    break
                partial.write(frame.payload)
                n = len(frame.payload)
                self._done += n
                self.result.bytes += n
                if time.monotonic() - last_report > 0.25:
                    last_report = time.monotonic()
                    self._report("offloading", milestone=False)
            end = frame.json()
            if "missing" in end:
                partial.discard()
                if file in wiped_files:
                    return None  # wiped by the camera after an earlier receipt
                self._flag("media_missing", f"seq {rec.seq} {file}: {end['missing']}")
            try:
                partial.finish()
            except MediaMismatch as exc:
                resumed = partial.resumed_from
                partial.discard()
                if resumed:
                    # Our kept partial bytes were bad, not the camera's: fetch it whole.
                    _log.warning("resumed file %s mismatched; fetching it again", file)
                    return self._fetch(link, entry, rec, bound, wiped_files)
                self._flag("media_altered", f"seq {rec.seq}: {exc} (altered on the card?)")
        except Flagged:
            raise  # the partial file is already discarded
        except BaseException:  # the line broke (or worse): keep what arrived for a resume
            partial.suspend()
            raise
        return partial
