"""The dock's own journal: what a dock stored, receipted, flagged and removed.

Same record format, chain and signature rules as a camera's journal (``docs/journal-format.md``
section 10), signed with the dock's key and kept in the store at
``<store>/_docks/<dock id>/journal.jsonl`` (a leading ``_`` can never be a unit id, so the
folder is never mistaken for a unit). This module defines the record bodies and folds a
dock journal into a :class:`DeviceLedger` per device: what the store must hold. Pure: the
dock's writer is ``dock.journal``; the store check is :mod:`evidence.verify_store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .identity import DEVICE_ID_PATTERN
from .journal import TORN_FILE
from .record import HEX64, HEX128, Record, media_path_error

DOCK_JOURNALS_DIR = "_docks"
KINDS = (
    "boot",
    "docking",
    "stored",
    "records_stored",
    "receipt_given",
    "flag",
    "removed",
    "relabel",
    "announcement_audio",
    "sealed",
    "archive_keeps",
)
REMOVAL_AUTHORITIES = ("retention",)
MAX_TEXT = 512  # characters of a flag's detail or a removal's reason
RETENTION_FLOOR_DAYS = 183
"""No recording leaves a store sooner than this many days after it ended (six months,
issue 15): the dock refuses an earlier removal, and ``bodycam-verify`` fails one that a
dock journal records. Longer retention is the archive's (``archive.retention``)."""
_DAY_NS = 86_400 * 1_000_000_000
RETENTION_GROUNDS = {
    "rule": str,  # the rule that allowed it, e.g. "retention-run-out"
    "category": str,  # the retention category (routine, or the unit's)
    "end_utc": str,  # when the recording ended, as the archive read it
    "kept_until_utc": str,  # when its retention ran out
    "archive": str,  # the archive that decided
    "user": str,  # who decided there
    "audit_seq": int,  # the decision's entry in that archive's audit log
}
"""The ``retention`` member of a ``removed`` record: the archive's decision, so that the
dock journal alone says on whose authority, and the audit log entry can be looked up."""
SEALED_DIR = "sealed"
"""Where a device's sealed media lie in the store (``<unit>/<device>/sealed/``): outside
``media/``, so the dock's reconcile and the folder check never take them for media."""
SEALED_SUFFIX = ".sealed"
KEY_SUFFIX = ".key"
SEAL_AUTHORITY = {"archive": str, "case": str, "user": str, "audit_seq": int}
"""The ``authority`` member of a ``sealed`` record: the archive's decision to seal."""


def sealed_name(file: str) -> str:
    """The sealed file of stored media ``media/YYYYMMDD/NAME``: ``sealed/YYYYMMDD/NAME.sealed``
    (its wrapped data key beside it, with :data:`KEY_SUFFIX` for the suffix)."""
    rest = file.split("/", 1)[1] if "/" in file else file
    return f"{SEALED_DIR}/{rest}{SEALED_SUFFIX}"


def key_name(sealed: str) -> str:
    """The wrapped data key's file beside the sealed file ``sealed``."""
    return sealed.removesuffix(SEALED_SUFFIX) + KEY_SUFFIX


def bounded(text: Any, limit: int = MAX_TEXT) -> str:
    """A text for a record or an alert: printable, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stored_body(device: str, unit: str, seq: int, file: str, size: int, sha256: str) -> dict:
    """A file now durably in ``<unit>/<device>/<file>``, bound by the device's record ``seq``."""
    return {
        "device": device,
        "unit": unit,
        "seq": seq,
        "file": file,
        "size": size,
        "sha256": sha256,
    }


def records_body(device: str, unit: str, upto_seq: int, upto_hash: str, count: int) -> dict:
    """The device's journal in the store now holds every record up to ``upto_seq``."""
    return {
        "device": device,
        "unit": unit,
        "upto_seq": upto_seq,
        "upto_hash": upto_hash,
        "count": count,
    }


def docking_body(
    device: str, bay: str, nonce: str, camera_head: dict | None, camera_utc: str, camera_sig: str
) -> dict:
    """A camera passed the handshake: the head it signed, with its signature, so that the
    head can be checked later against its journal (section 4's handshake message)."""
    return {
        "device": device,
        "bay": bounded(bay, 64),
        "nonce": nonce,
        "camera_head": camera_head,
        "camera_utc": camera_utc,
        "camera_sig": camera_sig,
    }


def receipt_body(
    device: str,
    upto_seq: int,
    upto_hash: str,
    dock_sig: str,
    session: tuple[str, str] | None = None,
) -> dict:
    """A receipt about to be sent; ``session`` (the docking's nonces) is what a
    ``bodycam-receipt-v2`` signature covers besides the head, so it is kept to check it."""
    body = {"device": device, "upto_seq": upto_seq, "upto_hash": upto_hash, "dock_sig": dock_sig}
    if session is not None:
        body.update(nonce=session[0], camera_nonce=session[1])
    return body


def flag_body(device: str, kind: str, detail: str) -> dict:
    return {"device": bounded(device, 64), "kind": bounded(kind, 32), "detail": bounded(detail)}


def removed_body(
    device: str,
    unit: str,
    file: str,
    sha256: str,
    authority: str,
    reason: str,
    retention: dict[str, Any] | None = None,
) -> dict:
    """A stored file removed under ``authority`` (retention): the only way media leave.
    ``retention``: the archive's decision (:data:`RETENTION_GROUNDS`), when it decided."""
    if authority not in REMOVAL_AUTHORITIES:
        raise ValueError(f"removal authority must be one of {REMOVAL_AUTHORITIES}")
    body = {
        "device": device,
        "unit": unit,
        "file": file,
        "sha256": sha256,
        "authority": authority,
        "reason": bounded(reason),
    }
    if retention is not None:
        why = grounds_problem(retention)
        if why is not None:
            raise ValueError(why)
        body["retention"] = {
            k: bounded(v, 64) if isinstance(v, str) else v for k, v in retention.items()
        }
    return body


def grounds_problem(grounds: Any) -> str | None:
    """Why a removal's ``retention`` member is not as :data:`RETENTION_GROUNDS` defines."""
    if not isinstance(grounds, dict) or set(grounds) != set(RETENTION_GROUNDS):
        return f"retention grounds must have exactly {sorted(RETENTION_GROUNDS)}"
    for key, kind in RETENTION_GROUNDS.items():
        if type(grounds[key]) is not kind:
            return f"retention grounds: {key} must be a {kind.__name__}"
    return None


def media_end_utc(record: Record) -> str:
    """When the media a device record binds ended: a segment's signed ``end_utc``, else
    the record's own time (a photo, a torn tail)."""
    end = record.body.get("end_utc") if record.kind == "segment" else None
    return end if isinstance(end, str) else record.utc


def kept_until_ns(end_ns: int, days: int = RETENTION_FLOOR_DAYS) -> int:
    """When the retention of media that ended at ``end_ns`` runs out after ``days``."""
    return end_ns + days * _DAY_NS


def removal_too_early(end_ns: int, removed_ns: int) -> bool:
    """Was media that ended at ``end_ns`` removed before the six-month floor ran out?"""
    return removed_ns < kept_until_ns(end_ns)


def sealed_body(
    device: str,
    unit: str,
    seq: int,
    file: str,
    size: int,
    sha256: str,
    sealed: tuple[str, int, str],
    authority: dict[str, Any],
) -> dict:
    """Stored media ``file`` (bound by the device's record ``seq``: ``size``, ``sha256``)
    is now kept only encrypted, as ``sealed`` = ``(name, size, sha256)`` of the sealed file,
    on ``authority`` (:data:`SEAL_AUTHORITY`); its clear file is removed after this record."""
    for key, kind in SEAL_AUTHORITY.items():
        if type(authority.get(key)) is not kind:
            raise ValueError(f"seal authority: {key} must be a {kind.__name__}")
    return {
        "device": device,
        "unit": unit,
        "seq": seq,
        "file": file,
        "size": size,
        "sha256": sha256,
        "sealed_file": sealed[0],
        "sealed_size": sealed[1],
        "sealed_sha256": sealed[2],
        "key_file": key_name(sealed[0]),
        "authority": {k: bounded(v, 64) if isinstance(v, str) else v for k, v in authority.items()},
    }


def archive_keeps_body(archive: str, public_key: str, folder: str) -> dict:
    """An archive keeps this store from now on (``archive``: its id; ``public_key``: its
    audit log's key; ``folder``: where it lives): its cases and legal holds decide what
    may be removed, so ``bodycam-dock remove`` refuses. Journaled with the dock's key by
    the archive (``archive.retention``); no later record releases a store."""
    return {"archive": archive, "public_key": public_key, "folder": bounded(folder)}


def archives_keeping(records: Iterable[Record]) -> dict[str, Record]:
    """Archive id -> the first well-formed ``archive_keeps`` record naming it."""
    found: dict[str, Record] = {}
    for record in records:
        if record.kind == "archive_keeps" and body_problem(record) is None:
            found.setdefault(record.body["archive"], record)
    return found


def relabel_body(
    device: str,
    seq: int,
    record_hash: str,
    procedure: str,
    was: str,
    moment: str,
    by: str,
    why: str,
) -> dict:
    """The key moment that the device's ``marker`` record ``seq`` names is to be read as
    ``moment``. The device's record itself is never changed (its hash binds this one to
    it); ``by`` and ``why`` say who decided and on what grounds."""
    return {
        "device": device,
        "seq": seq,
        "record_hash": record_hash,
        "procedure": procedure,
        "was": was,
        "moment": moment,
        "by": bounded(by, 64),
        "why": bounded(why),
    }


@dataclass(frozen=True)
class Relabel:
    """One relabelling of a device's marker, as a dock journal records it."""

    device: str
    seq: int
    record_hash: str
    was: str
    moment: str
    by: str
    why: str
    dock: str
    dock_seq: int
    utc: str


def relabels(records: Iterable[Record]) -> dict[tuple[str, int], list[Relabel]]:
    """(device, marker seq) -> its relabellings in the order they were made (the last is
    in force); malformed bodies count for nothing."""
    found: dict[tuple[str, int], list[Relabel]] = {}
    for record in records:
        if record.kind != "relabel" or body_problem(record) is not None:
            continue
        b = record.body
        found.setdefault((b["device"], b["seq"]), []).append(
            Relabel(
                b["device"],
                b["seq"],
                b["record_hash"],
                b["was"],
                b["moment"],
                b["by"],
                b["why"],
                record.device,
                record.seq,
                record.utc,
            )
        )
    return found


@dataclass(frozen=True)
class StoredFile:
    size: int
    sha256: str
    seq: int  # the device record that binds it
    dock: str
    dock_seq: int  # the dock record that says it was stored


@dataclass(frozen=True)
class SealedFile:
    """Stored media kept encrypted: the sealed file, its key file, and who sealed it."""

    name: str
    size: int
    sha256: str
    key_file: str
    authority: dict[str, Any]
    dock: str
    dock_seq: int

    def line(self) -> str:
        a = self.authority
        return (
            f"sealed by dock {self.dock} (seq {self.dock_seq}) for archive {a['archive']}, "
            f"case {a['case']}, by {a['user']} (audit seq {a['audit_seq']}): {self.name}"
        )


@dataclass(frozen=True)
class Removal:
    """One ``removed`` record: when, by which dock record, on what authority."""

    file: str
    sha256: str
    authority: str
    reason: str
    retention: dict[str, Any] | None  # the archive's decision, if an archive decided
    dock: str
    dock_seq: int
    utc: str

    def line(self) -> str:
        """The removal in one line, its authority first."""
        text = (
            f"removed by dock {self.dock} (seq {self.dock_seq}, {self.utc}) under {self.authority}"
        )
        g = self.retention
        if g:
            text += (
                f" ({g['rule']}, category {g['category']}, kept until {g['kept_until_utc']}; "
                f"archive {g['archive']}, {g['user']}, audit seq {g['audit_seq']})"
            )
        return f"{text}: {self.reason}"


@dataclass
class DeviceLedger:
    """What the dock journals say the store holds for one device."""

    device: str
    unit: str
    upto: tuple[int, str] | None = None
    upto_dock_seq: int | None = None
    files: dict[str, StoredFile] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # file -> why
    sealed: dict[str, SealedFile] = field(default_factory=dict)  # file -> its sealed form
    removals: dict[str, Removal] = field(default_factory=dict)  # file -> its record


def _ident(value: Any) -> bool:
    return isinstance(value, str) and DEVICE_ID_PATTERN.match(value) is not None


def _stored_file(value: Any) -> bool:
    return isinstance(value, str) and (
        media_path_error("", value) is None or TORN_FILE.match(value) is not None
    )


def body_problem(record: Record) -> str | None:
    """Why a dock record's body is not as section 10 defines it, or None."""
    b = record.body
    if record.kind == "stored":
        ok = (
            _ident(b.get("device"))
            and _ident(b.get("unit"))
            and _stored_file(b.get("file"))
            and type(b.get("seq")) is int
            and type(b.get("size")) is int
            and b["size"] >= 0
            and isinstance(b.get("sha256"), str)
            and HEX64.match(b["sha256"]) is not None
        )
    elif record.kind == "records_stored":
        ok = (
            _ident(b.get("device"))
            and _ident(b.get("unit"))
            and type(b.get("upto_seq")) is int
            and b["upto_seq"] >= 0
            and isinstance(b.get("upto_hash"), str)
            and HEX64.match(b["upto_hash"]) is not None
        )
    elif record.kind == "removed":
        ok = (
            _ident(b.get("device"))
            and _ident(b.get("unit"))
            and _stored_file(b.get("file"))
            and b.get("authority") in REMOVAL_AUTHORITIES
            and ("retention" not in b or grounds_problem(b["retention"]) is None)
        )
    elif record.kind == "sealed":
        a = b.get("authority")
        ok = (
            _ident(b.get("device"))
            and _ident(b.get("unit"))
            and _stored_file(b.get("file"))
            and type(b.get("seq")) is int
            and all(type(b.get(k)) is int and b[k] >= 0 for k in ("size", "sealed_size"))
            and all(
                isinstance(b.get(k), str) and HEX64.match(b[k]) is not None
                for k in ("sha256", "sealed_sha256")
            )
            and isinstance(b.get("file"), str)
            and b.get("sealed_file") == sealed_name(b["file"])
            and b.get("key_file") == key_name(b["sealed_file"])
            and isinstance(a, dict)
            and all(type(a.get(k)) is t for k, t in SEAL_AUTHORITY.items())
        )
    elif record.kind == "archive_keeps":
        ok = (
            _ident(b.get("archive"))
            and isinstance(b.get("public_key"), str)
            and HEX64.match(b["public_key"]) is not None
            and isinstance(b.get("folder"), str)
        )
    elif record.kind == "relabel":
        ok = (
            _ident(b.get("device"))
            and type(b.get("seq")) is int
            and b["seq"] >= 0
            and isinstance(b.get("record_hash"), str)
            and HEX64.match(b["record_hash"]) is not None
            and all(isinstance(b.get(k), str) and b[k] for k in ("was", "moment", "by", "why"))
        )
    elif record.kind == "receipt_given":
        ok = (
            _ident(b.get("device"))
            and isinstance(b.get("dock_sig"), str)
            and HEX128.match(b["dock_sig"]) is not None
        )
    else:
        return None
    return None if ok else f"{record.kind} record body is not as defined"


def build_ledger(
    records: Iterable[Record],
    problems: list[tuple[Record, str]] | None = None,
    into: dict[str, DeviceLedger] | None = None,
) -> dict[str, DeviceLedger]:
    """Fold trusted dock records into a ledger per device (``into``: ledgers already
    folded from the records before these); malformed bodies go to ``problems`` and count
    for nothing."""
    ledgers: dict[str, DeviceLedger] = {} if into is None else into
    for record in records:
        why = body_problem(record)
        if why is not None:
            if problems is not None:
                problems.append((record, why))
            continue
        b = record.body
        if record.kind not in ("stored", "records_stored", "removed", "sealed"):
            continue
        ledger = ledgers.setdefault(b["device"], DeviceLedger(b["device"], b["unit"]))
        ledger.unit = b["unit"]  # the latest word on where the dock keeps it
        if record.kind == "stored":
            ledger.files[b["file"]] = StoredFile(
                b["size"], b["sha256"], b["seq"], record.device, record.seq
            )
            ledger.removed.pop(b["file"], None)
            ledger.removals.pop(b["file"], None)
        elif record.kind == "sealed":
            ledger.sealed[b["file"]] = SealedFile(
                b["sealed_file"],
                b["sealed_size"],
                b["sealed_sha256"],
                b["key_file"],
                dict(b["authority"]),
                record.device,
                record.seq,
            )
        elif record.kind == "records_stored":
            if ledger.upto is None or b["upto_seq"] >= ledger.upto[0]:
                ledger.upto = (b["upto_seq"], b["upto_hash"])
                ledger.upto_dock_seq = record.seq
        else:
            removal = Removal(
                b["file"],
                str(b.get("sha256", "")),
                b["authority"],
                str(b.get("reason", "")),
                b.get("retention"),
                record.device,
                record.seq,
                record.utc,
            )
            ledger.removals[b["file"]] = removal
            ledger.removed[b["file"]] = removal.line()
    return ledgers
