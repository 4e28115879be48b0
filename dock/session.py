"""One docking, dock side: handshake, clock, offload with verification, receipt.

Runs in a bay worker thread. Verification happens while bytes stream in: each record's
signature and chain link are checked as it arrives and the record goes to a spool file on
the store's disk (never all in memory); each media file is hashed while it is written to
``.partial``; the receipt goes out only after :class:`~dock.store.Store` has made
everything durable. Anything suspicious is flagged in the index and withholds the receipt,
so the camera keeps its data.

A camera is untrusted input even when its key is registered (it may be stolen or
compromised). Every failure of a session ends it with a REFUSE naming the reason and a
flag; :class:`SessionLimits` bounds what one docking may cost (records, bytes, declared
sizes, time, rate); and ``run`` never raises, so the bay serves the next camera.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import IO, Any

from evidence import dockjournal
from evidence.canonical import GENESIS_HASH
from evidence.dockjournal import bounded
from evidence.exc import EvidenceError, JournalError, RecordError, RegistryError, SignatureError
from evidence.identity import DeviceIdentity, verify_signature
from evidence.layout import stored_name_error
from evidence.receipt import receipt_message
from evidence.record import HEX64, Record, media_path_error
from evidence.registry import DeviceEntry
from wire.cable import (
    NONCE,
    PROTOCOL,
    CableError,
    FrameError,
    FrameType,
    LinkClosed,
    LinkTimeout,
    Refused,
    clock_message,
    record_file,
    require,
    response_message,
)
from wire.link import Link, Port

from .audiocheck import check_after_docking
from .exc import (
    DockError,
    DockFault,
    LimitExceeded,
    MediaConflict,
    MediaMismatch,
    StoreFull,
    UnsafeName,
    is_full,
)
from .store import PartialFile, Store, store_failure

_log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
MiB = 1 << 20
GiB = 1 << 30
MAX_REASON = 500  # characters of a reason in a REFUSE, the index and the log
# What a camera's bad (but authentic) data can raise from parsing code; anything else
# that is not a dock or cable error is the dock's own fault.
CAMERA_DATA_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    OverflowError,
    IndexError,
    UnicodeError,
    RecursionError,
)
BATCH_RECORDS = 1000  # records without files committed together (bounded memory)


@dataclass(frozen=True)
class SessionLimits:
    """What one docking may cost the dock. A camera over any limit is refused (flag
    ``limit``, or ``store_full``) and keeps its data. Why: a stolen or compromised camera
    holds a registered key, so its records verify; only limits stop it from exhausting
    the dock's memory, disk or bays. The defaults fit a camera that missed weeks of
    dockings (a shift is about a thousand records and 30 GB)."""

    max_records: int = 200_000  # records received in one docking
    max_record_bytes: int = 128 * MiB  # RECORDS payload in one docking
    max_bytes: int = 512 * GiB  # media bytes declared in one docking
    max_file_bytes: int = 8 * GiB  # one declared file
    reserve_bytes: int = 64 * MiB  # free space a docking leaves on the store's disk
    session_s: float = 6 * 3600.0  # the whole docking
    min_rate: float = 16 * 1024  # bytes/s within a frame, once its first byte arrived
    frame_grace_s: float = 5.0  # plus this many seconds per frame
    max_flags: int = 32  # flags one docking may raise before it is refused

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SessionLimits:
        """From a config section of the same names (unknown keys are an error)."""
        names = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(section) - set(names))
        if unknown:
            raise ValueError(f"unknown session limit(s): {', '.join(unknown)}")
        values = {}
        for name, value in section.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"session limit {name} must be a positive number: {value!r}")
            values[name] = value
        return cls(**values)


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
    """Something on the camera is wrong; flagged, no receipt, the session refused."""


class Committer:
    """Makes verified files and records durable in order, in its own thread, while the
    session already receives the next file (fsync would otherwise stall the line).

    Thread: one daemon thread per offload; ``close`` drains it (always, even when the line
    broke: whatever was verified is kept) and re-raises a store failure. The queue is
    bounded, so a slow disk holds the session back instead of filling memory.
    """

    def __init__(self, store: Store, entry: DeviceEntry) -> None:
        self.store = store
        self.entry = entry
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[PartialFile | None, list[Record]] | None] = queue.Queue(4)
        self._thread = threading.Thread(target=self._run, name="dock-commit", daemon=True)
        self._thread.start()

    def put(self, partial: PartialFile | None, batch: list[Record]) -> None:
        if self.error is not None:
            if partial is not None:
                partial.suspend()
            raise store_failure(self.error, "committing") from self.error
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
                if isinstance(exc, DockError) or is_full(exc):
                    _log.warning("store write failed: %s", exc)
                else:
                    _log.exception("store write failed")
                self.error = exc

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise store_failure(self.error, "committing") from self.error


class DockSession:
    """Serve one camera on one line. ``run`` never raises (except for KeyboardInterrupt
    and SystemExit): every failure becomes the session's outcome."""

    def __init__(
        self,
        store: Store,
        identity: DeviceIdentity,
        bay: str = "bay",
        timeout: float = 10.0,
        progress: Progress | None = None,
        limits: SessionLimits | None = None,
        lock_wait_s: float = 0.0,
    ) -> None:
        """``lock_wait_s``: how long a docking waits for another session of the same
        camera to end (see :meth:`~dock.store.Store.device_lock`); 0 on the cable."""
        self.store = store
        self.lock_wait_s = lock_wait_s
        self.identity = identity
        self.bay = bay
        self.timeout = timeout
        self.progress = progress or (lambda info: None)
        self.limits = limits or SessionLimits()
        self.result = SessionResult()
        self.fault: str | None = None  # set when the dock itself failed (the bay exits)
        self._done = 0
        self._total = 0
        self._t0 = 0.0
        self._record_bytes = 0
        self._declared = 0
        self._flagged: set[str] = set()

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
        r = self.result
        link: Link | None = None
        docking: int | None = None
        try:
            link = Link(
                port,
                self.timeout,
                bulk_reader=True,
                min_rate=self.limits.min_rate,
                frame_grace=self.limits.frame_grace_s,
                deadline=self._t0 + self.limits.session_s,
            )
            docking = self.store.index.execute(
                "INSERT INTO dockings(bay, started_utc) VALUES (?,?)",
                (self.bay, self.store.now_utc()),
            )
            self._session(link)
        except Flagged as exc:  # already flagged: the REFUSE says which flag
            r.outcome, r.reason = "flagged", str(exc)
            if link is not None:
                link.refuse(bounded(f"flagged: {exc}", MAX_REASON))
        except LinkClosed as exc:
            r.outcome, r.reason = "interrupted", str(exc)
        except Exception as exc:
            self._refuse(link, exc)
        finally:  # never raises: it must not hide why the session ended
            r.reason = bounded(r.reason, MAX_REASON)
            r.seconds = time.monotonic() - self._t0
            self._record_outcome(docking)
        log = _log.info if r.outcome == "stored" else _log.warning
        log(
            "bay %s: %s %s (%s)",
            self.bay,
            bounded(r.device, 64) or "?",
            r.outcome,
            r.reason or "ok",
        )
        return r

    def _refuse(self, link: Link | None, exc: Exception) -> None:
        """End the session on ``exc``: REFUSE with the reason, and a flag."""
        r = self.result
        kind, reason = self._classify(exc)
        r.outcome, r.reason = ("failed" if kind == DockFault.kind else "refused"), reason
        if link is not None:
            link.refuse(bounded(reason, MAX_REASON))
        if bounded(reason) not in self._flagged:
            try:
                self.store.flag(r.device, kind, reason)
            except Exception as flag_exc:  # the store may be full or broken: say so
                _log.error(
                    "bay %s: could not record the flag %s (%s): %s",
                    self.bay,
                    kind,
                    bounded(reason, 200),
                    bounded(flag_exc, 200),
                )
        if kind == DockFault.kind:
            self.fault = reason

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """``(flag kind, reason)`` for the error a session ended on."""
        if is_full(exc) and not isinstance(exc, StoreFull):
            exc = StoreFull(f"the store is full: {exc}")
        elif isinstance(exc, (OSError, JournalError)) and not isinstance(exc, CableError):
            exc = store_failure(exc, "the dock")
            if not isinstance(exc, StoreFull) and self._nearly_full():
                exc = StoreFull(f"the store is full ({exc})")
        if isinstance(exc, StoreFull):
            return StoreFull.kind, f"{exc}; the camera keeps its data, dock again later"
        if isinstance(exc, DockError):
            return exc.kind, str(exc)
        if isinstance(exc, Refused):
            return "camera_refused", str(exc)
        if isinstance(exc, LinkTimeout):
            return "stalled", str(exc)
        if isinstance(exc, CableError):
            return "protocol", str(exc)
        if isinstance(exc, RegistryError):
            _log.error("bay %s: the dock cannot read its registry: %s", self.bay, exc)
            return DockFault.kind, f"dock fault: the dock cannot read its registry: {exc}"
        if isinstance(exc, (RecordError, SignatureError)):
            return "bad_record", str(exc)
        if isinstance(exc, (EvidenceError, *CAMERA_DATA_ERRORS)):
            _log.debug("malformed data from the camera", exc_info=True)
            return "malformed", f"malformed message from the camera ({type(exc).__name__}: {exc})"
        _log.exception("bay %s: the dock failed", self.bay)
        return DockFault.kind, f"dock fault: {type(exc).__name__}: {exc}"

    def _nearly_full(self) -> bool:
        try:
            return self.store.free_bytes() < self.limits.reserve_bytes
        except OSError:
            return False

    def _record_outcome(self, docking: int | None) -> None:
        """The docking's row in the index and the bay's status; failures are logged."""
        r = self.result
        try:
            if docking is not None:
                self.store.index.execute(
                    "UPDATE dockings SET device=?, ended_utc=?, clock_offset_ns=?, records=?,"
                    " media=?, bytes=?, receipt_upto=?, outcome=?, reason=?, camera_head_seq=?"
                    " WHERE id=?",
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
        except Exception as exc:
            _log.error("bay %s: could not record the docking in the index: %s", self.bay, exc)
            try:  # at least its end and outcome
                self.store.index.execute(
                    "UPDATE dockings SET ended_utc=?, outcome=?, reason=? WHERE id=?",
                    (self.store.now_utc(), r.outcome, r.reason, docking),
                )
            except Exception:
                pass
        try:
            self._report(r.outcome)
        except Exception as exc:
            _log.error("bay %s: could not report progress: %s", self.bay, exc)

    def _bye(self, link: Link | None) -> None:
        if link is None:
            return
        try:
            link.send_json(
                FrameType.BYE, {"outcome": self.result.outcome, "flags": self.result.flags}
            )
        except CableError:
            pass

    def _store_flag(self, kind: str, detail: str) -> None:
        """Raise a flag once per detail in a docking, and at most ``max_flags`` of them."""
        if len(self._flagged) >= self.limits.max_flags:
            raise LimitExceeded(f"more than {self.limits.max_flags} flags in one docking")
        self._flagged.add(bounded(detail))
        self.store.flag(self.result.device, kind, detail)

    def _flag(self, kind: str, detail: str, block: bool = True) -> None:
        self._store_flag(kind, detail)
        self.result.flags.append(bounded(f"{kind}: {detail}"))
        if block:
            raise Flagged(bounded(f"{kind}: {detail}"))

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
            if not isinstance(head, dict):
                raise FrameError("camera head is malformed: not an object")
            seq, digest = require(head, "seq", int), require(head, "hash", str)
            if not HEX64.match(digest) or not 0 <= seq < 2**63:
                raise FrameError("camera head is malformed")
        entry = self.store.registry().get(device)
        if entry is None:
            key = str(resp.get("public_key", "?"))[:64]
            reason = f"unregistered camera {device!r} (key {key}): not in this dock's registry"
            self._store_flag("unregistered", reason)
            r.flags.append(bounded(reason))
            raise DockError(reason)
        try:
            verify_signature(
                entry.public_key,
                response_message(dock, nonce, device, head, require(resp, "utc", str)),
                bytes.fromhex(require(resp, "sig", str)),
            )
        except (SignatureError, ValueError) as exc:
            reason = f"camera {device} failed the challenge ({exc}): not its registered key"
            self._store_flag("bad_handshake", reason)
            raise DockError(reason) from None
        revoked = entry.problem_at(self.store.now_utc())
        if revoked is not None:
            reason = f"camera {device}: {revoked}; not docking it"
            self._store_flag("revoked", reason)
            raise DockError(reason)
        r.camera_head_seq = None if head is None else head["seq"]
        self.store.log(
            "docking",
            dockjournal.docking_body(device, self.bay, nonce, head, resp["utc"], resp["sig"]),
        )
        with self.store.device_lock(device, self.lock_wait_s):
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
        offset_ns = require(clock, "offset_ns", int)
        if not -(2**63) <= offset_ns < 2**63:
            raise FrameError("CLOCK_SET offset_ns out of range")
        r.clock_offset_ns = offset_ns
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
        files = wiped.get("files", 0)
        r.wiped = files if type(files) is int and 0 <= files < 2**63 else 0
        if wiped.get("reason"):
            r.flags.append(bounded(f"camera kept its data: {wiped['reason']}"))
        # Fetch the camera's receipt/wiped records too, so its journal equals the store's.
        self._offload(link, entry, new_head)
        r.outcome = "stored"
        self._bye(link)
        # The camera is done; still under the device's lock: is the announcement heard?
        check_after_docking(self.store, entry, stored)

    def _offload(
        self, link: Link, entry: DeviceEntry, after: tuple[int, str] | None
    ) -> tuple[int, str] | None:
        """Records after ``after``, then their files; returns the new stored head."""
        link.send_json(
            FrameType.SYNC,
            {"after": None if after is None else {"seq": after[0], "hash": after[1]}},
        )
        self._report("records")
        with self.store.spool() as spool:
            head, wiped_files = self._receive_records(link, entry, after, spool)
            if head == after:
                return after
            self._store_records(link, entry, spool, wiped_files)
        return head

    def _receive_records(
        self, link: Link, entry: DeviceEntry, after: tuple[int, str] | None, spool: IO[bytes]
    ) -> tuple[tuple[int, str] | None, set[str]]:
        """Verify each record as it arrives and spool it; returns the camera's new head
        and the files its ``wiped`` records name. Checks every limit and every name
        before anything is stored, so a refused docking stores nothing of this sync."""
        lim = self.limits
        prev_seq, prev_hash = (-1, GENESIS_HASH) if after is None else after
        rows = self.store.index.query(
            "SELECT seq, hash, utc FROM status_heads WHERE device=?", (entry.device_id,)
        )
        seen = rows[0] if rows else None
        wiped_files: set[str] = set()
        count = 0
        while True:
            frame = link.expect(FrameType.RECORDS, FrameType.RECORDS_END)
            if frame.type is FrameType.RECORDS_END:
                break
            self._record_bytes += len(frame.payload)
            if self._record_bytes > lim.max_record_bytes:
                raise LimitExceeded(
                    f"more than {lim.max_record_bytes} bytes of records in one docking"
                )
            for line in bytes(frame.payload).split(b"\n"):
                try:
                    rec = Record.from_bytes(line)
                    if rec.device != entry.device_id:
                        raise RecordError(f"record of device {rec.device!r}")
                    if rec.seq != prev_seq + 1 or rec.prev != prev_hash:
                        raise RecordError(f"chain broken at seq {rec.seq}")
                    rec.verify(entry.public_key)
                except (RecordError, ValueError) as exc:
                    self._flag("bad_record", f"record after seq {prev_seq}: {exc}")
                count += 1
                self.result.records += 1
                if self.result.records > lim.max_records:
                    raise LimitExceeded(f"more than {lim.max_records} records in one docking")
                self._check_record(rec, seen, wiped_files)
                spool.write(line + b"\n")
                prev_seq, prev_hash = rec.seq, rec.hash
        if seen is not None and seen["seq"] > prev_seq:
            self._flag(
                "tail_cut",
                f"a status message at {seen['utc']} showed journal head seq "
                f"{seen['seq']}, but the camera's journal ends at seq {prev_seq}",
            )
        if count == 0:
            return after, wiped_files
        spool.flush()
        return (prev_seq, prev_hash), wiped_files

    def _check_record(self, rec: Record, seen: dict | None, wiped_files: set[str]) -> None:
        """What one verified record may ask of the store: a safe name, a bounded size."""
        lim = self.limits
        bound = record_file(rec)
        if bound is not None:
            file, size, _ = bound
            why = stored_name_error(file)
            if why is not None:
                raise UnsafeName(f"record {rec.seq} names a file the dock never stores: {why}")
            if not 0 <= size <= lim.max_file_bytes:
                raise LimitExceeded(
                    f"record {rec.seq} declares a {size}-byte file; this dock takes at most "
                    f"{lim.max_file_bytes} bytes per file"
                )
            self._declared += size
            if self._declared > lim.max_bytes:
                raise LimitExceeded(f"more than {lim.max_bytes} bytes of files in one docking")
            self._total += size
        if rec.kind == "wiped":
            files = rec.body.get("files", [])
            if not isinstance(files, list):
                raise RecordError(f"record {rec.seq} (wiped): 'files' is not a list")
            for f in files:
                if isinstance(f, str) and media_path_error("", f) is None:
                    wiped_files.add(f)
            if len(wiped_files) > lim.max_records:
                raise LimitExceeded(f"more than {lim.max_records} wiped files in one docking")
        if rec.kind == "torn_tail":
            self._flag(
                "torn_tail",
                f"the camera repaired a torn journal record at seq "
                f"{rec.seq} (power cut mid-append)",
                block=False,
            )
        if seen is not None and rec.seq == seen["seq"] and rec.hash != seen["hash"]:
            self._flag(
                "tail_cut",
                f"the camera's record {rec.seq} differs from the head "
                f"seq {seen['seq']} a status message showed at "
                f"{seen['utc']}: its journal was cut and rewritten",
            )

    @staticmethod
    def _spooled(spool: IO[bytes]):
        """The spooled records again, one at a time (already verified)."""
        spool.seek(0)
        for line in spool:
            yield Record.from_bytes(line[:-1])

    def _store_records(
        self, link: Link, entry: DeviceEntry, spool: IO[bytes], wiped_files: set[str]
    ) -> None:
        """Note every media record (for deadlines), then fetch and commit in order."""
        known: list[Record] = []
        for rec in self._spooled(spool):
            if rec.media is not None:
                known.append(rec)
                if len(known) >= BATCH_RECORDS:
                    self.store.note_known_media(entry, known)
                    known = []
        self.store.note_known_media(entry, known)
        batch: list[Record] = []
        committer = Committer(self.store, entry)
        try:
            for rec in self._spooled(spool):
                batch.append(rec)
                bound = record_file(rec)
                if bound is None:
                    if len(batch) >= BATCH_RECORDS:
                        committer.put(None, batch)
                        batch = []
                    continue
                partial = self._fetch(link, entry, rec, bound, wiped_files)
                if partial is not None:
                    self.result.media += 1
                committer.put(partial, batch)
                batch = []
            committer.put(None, batch)
        finally:
            committer.close()  # durable before any receipt; kept even if the line broke

    def _fetch(
        self,
        link: Link,
        entry: DeviceEntry,
        rec: Record,
        bound: tuple[str, int, str],
        wiped_files: set[str],
    ) -> PartialFile | None:
        file, size, digest = bound
        held = self.store.holds(entry, file, size, digest)
        if held is not None:
            if not held:
                raise MediaConflict(
                    f"record {rec.seq} names {file}, which the store already holds with "
                    "other bytes: a stored file is never replaced"
                )
            _log.info("bay %s: %s %s is already stored, same bytes", self.bay, rec.seq, file)
            return None
        partial = self.store.partial(entry.device_id, file, size, digest)
        need = size - partial.offset
        free = self.store.free_bytes()
        if need + self.limits.reserve_bytes > free:
            partial.suspend()
            raise StoreFull(
                f"the store is full: {file} needs {need} bytes, {free} are free and "
                f"{self.limits.reserve_bytes} are kept in reserve"
            )
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
