"""Check one device folder: every record, the chain, time, receipts, side files, media.

Pure checking logic used by :mod:`evidence.verify`. Why the checks are shaped as they are:

- Records are first classified one by one (malformed, foreign, replayed, bad signature,
  trusted), then the trusted and bad-signature records are checked together by sequence
  number: a gap, a repeat, a seq lower than the one before it (reordered), and each
  record's ``prev`` against the hash of the record one seq lower. Chaining by seq rather
  than by file position means one swapped pair is reported once, as ``reordered``, and a
  tampered record is reported once, as ``bad_signature``, not again as a broken chain.
- Nothing is opened unless it is a regular file (``evidence.safefile``), every read is
  bounded, and a media file whose size already disagrees with its record is not hashed.
  Media are hashed in 128 KiB reads; a store's files are hashed on several threads
  (hashlib releases the GIL), through the ``hasher`` the caller hands in.
- The same check serves a dock's own journal (``role="dock"``): its key is the registry's
  dock key, and it binds no media; and an archive's audit log (``role="archive"``): its
  key is the registry's archive key, ``archive.json`` stands for identity.json, no media.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from .canonical import GENESIS_HASH, sha256_hex
from .exc import CanonicalError, EvidenceError, RecordError
from .identity import DEVICE_ID_PATTERN
from .journal import JOURNAL_NAME, TORN_PREFIX
from .layout import IDENTITY_NAME, MEDIA_DIR
from .media import hash_fd
from .receipt import receipt_message
from .record import HEX64, HEX128, MAX_RECORD_BYTES, Record
from .registry import DeviceEntry, DockEntry, Registry
from .safefile import UnsafeFile, is_real_dir, open_regular, read_regular

READ_SIZE = 128 * 1024
JOURNAL_READ = 1 << 20
MAX_IDENTITY_BYTES = 4096
# After these, a mono_ns below the previous record's starts a new epoch: a boot, the
# repair of a torn tail, which the journal makes when it is opened at boot (before "boot"),
# and a dock's clock_set, which a dock process whose clock reads earlier than its
# journal's last record journals first, before its own boot (docs/journal-format.md 10).
EPOCH_KINDS = ("boot", "torn_tail", "clock_set")

PROBLEM_CODES = {
    "bad_signature": "a record's signature does not verify under the device's key",
    "unknown_device": "the device is not in the registry (or no key to check it against)",
    "wrong_key": "records verify under identity.json's key but not the registry's",
    "revoked_key": "records signed outside the key's validity (after its revocation)",
    "broken_chain": "a record's prev is not the hash of the record one seq lower",
    "sequence_gap": "sequence numbers are missing",
    "sequence_repeat": "two different records carry the same sequence number",
    "reordered": "a record's seq is lower than the record before it",
    "foreign_device": "a record (or identity.json) belongs to another device",
    "replayed": "a byte-identical copy of an earlier record appears again",
    "media_missing": "a media file named by the journal (or stored by the dock) is absent",
    "media_changed": "a media file's hash or size differs from its record (or not a file)",
    "media_truncated": "a media file is shorter than its record says",
    "extra_media": "a file under media/ that no record names",
    "time_backwards": "UTC (outside a clock_set) or mono_ns (within a boot) went backwards",
    "tail_cut": "the journal ends before the expected head (or the head the dock stored)",
    "head_mismatch": "the record at the expected head's seq has another hash",
    "torn_record": "the journal file ends with a partial line",
    "malformed_record": "a journal line is not a well-formed canonical record",
    "bad_torn_side_file": "a journal.torn-N side file is missing, altered or unaccounted for",
    "receipt_mismatch": "a receipt names a hash that is not the record at its upto_seq",
    "bad_receipt": "a receipt's dock signature does not verify under a registered dock key",
    "unreceipted_wipe": "media were wiped without a valid receipt covering them",
    "journal_missing": "a device folder in a store has no journal.jsonl",
    "dock_journal_missing": "a dock store has no dock journal to check its completeness by",
    "device_missing": "a device folder the dock journal stored is absent (or moved, hidden)",
    "not_in_dock_journal": "records or a device folder in the store that no dock stored",
    "bad_dock_record": "a dock journal record that does not describe a storing as defined",
    "removed_early": "a dock removed a file before six months after its recording ended",
    "removal_unfinished": "a file (clear, sealed or key) of media a dock removed is still there",
    "bundle_mismatch": "a court bundle's manifest disagrees with its records or files",
    "registry_mismatch": "a bundle's registry is not the one its manifest and fingerprint name",
}


class CannotCheck(EvidenceError):
    """The path cannot be checked at all (not a known kind, unreadable, bad registry)."""


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    device: str | None = None
    seq: int | None = None
    line: int | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = self.file or "-"
        if self.line is not None:
            where += f":{self.line}"
        who = []
        if self.device is not None:
            who.append(f"device {self.device}")
        if self.seq is not None:
            who.append(f"seq {self.seq}")
        suffix = f" ({', '.join(who)})" if who else ""
        return f"{where}: {self.code}: {self.message}{suffix}"


@dataclass
class DeviceReport:
    """What was found in one device folder (or one dock journal)."""

    folder: str  # relative to the checked path ("." for a device folder)
    device: str | None = None
    trust: str = ""  # "registry", "untrusted registry", "self-declared key" or "none"
    records: int = 0
    head: tuple[int, str] | None = None
    media_files: int = 0
    media_bytes: int = 0
    role: str = "device"  # or "dock" (a dock's own journal), "archive" (an audit log)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "device": self.device,
            "role": self.role,
            "trust": self.trust,
            "records": self.records,
            "head": None if self.head is None else {"seq": self.head[0], "hash": self.head[1]},
            "media_files": self.media_files,
            "media_bytes": self.media_bytes,
            "intact": not self.problems,
            "problems": [p.to_dict() for p in self.problems],
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- keys


class Keys:
    """Cached PyNaCl verify keys; a malformed key simply verifies nothing."""

    def __init__(self) -> None:
        self._keys: dict[str, nacl.signing.VerifyKey | None] = {}

    def verifies(self, key_hex: str | None, message: bytes, sig_hex: str) -> bool:
        if key_hex is None or not HEX64.match(key_hex) or not HEX128.match(sig_hex):
            return False
        if key_hex not in self._keys:
            try:
                self._keys[key_hex] = nacl.signing.VerifyKey(bytes.fromhex(key_hex))
            except (ValueError, TypeError, nacl.exceptions.CryptoError):
                self._keys[key_hex] = None
        key = self._keys[key_hex]
        if key is None:
            return False
        try:
            key.verify(message, bytes.fromhex(sig_hex))
            return True
        except (nacl.exceptions.BadSignatureError, ValueError, nacl.exceptions.CryptoError):
            return False


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class JournalLines:
    """A journal read with bounded memory: ``(line number, bytes or None if too long)``."""

    lines: list[tuple[int, bytes | None]]
    torn: tuple[int, int] | None  # (byte offset, length) of a last line without newline


def read_journal(path: Path) -> JournalLines:
    """Read ``path`` (a regular file, never followed through a link) in bounded reads; a
    line over the record limit is kept as None instead of its bytes. Raises UnsafeFile."""
    fd, _ = open_regular(path)
    lines: list[tuple[int, bytes | None]] = []
    pending = bytearray()
    too_long = False
    offset = line_start = 0
    try:
        while chunk := os.read(fd, JOURNAL_READ):
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if not too_long:
                    pending += chunk[start:end]
                lines.append(
                    (
                        len(lines) + 1,
                        None if too_long or len(pending) > MAX_RECORD_BYTES else bytes(pending),
                    )
                )
                pending.clear()
                too_long = False
                line_start = offset + end + 1
                start = end + 1
            if not too_long:
                pending += chunk[start:]
                if len(pending) > MAX_RECORD_BYTES:
                    too_long = True
                    pending.clear()
            offset += len(chunk)
    except OSError as exc:
        raise UnsafeFile(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    torn = (line_start, offset - line_start) if offset > line_start else None
    return JournalLines(lines, torn)


ARCHIVE_MARKER = "archive.json"
"""An archive's audit-log folder names its archive here, as identity.json names a device."""


def read_identity(
    folder: Path, name: str = IDENTITY_NAME, id_key: str = "device_id"
) -> tuple[str | None, str | None]:
    """``(device_id, public_key)`` from identity.json (or an audit log's archive.json),
    each None when absent or malformed (a FIFO, a link, a huge file count as malformed)."""
    try:
        data = json.loads(read_regular(folder / name, MAX_IDENTITY_BYTES))
    except (UnsafeFile, ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    device, key = data.get(id_key), data.get("public_key")
    device = device if isinstance(device, str) and DEVICE_ID_PATTERN.match(device) else None
    key = key if isinstance(key, str) and HEX64.match(key) else None
    return device, key


def hash_regular(path: Path, expected_size: int | None = None) -> tuple[int, str | None] | str:
    """``(size, sha256)`` of a regular file read once, or why it could not be read. A file
    whose size is not ``expected_size`` is not read at all: ``(size, None)``."""
    try:
        fd, st = open_regular(path)
    except UnsafeFile as exc:
        return exc.reason
    try:
        if expected_size is not None and st.st_size != expected_size:
            return st.st_size, None
        return hash_fd(fd, READ_SIZE)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)


Hasher = Callable[[list[tuple[Path, int | None]]], list[tuple[int, str | None] | str]]


def hash_serially(jobs: list[tuple[Path, int | None]]) -> list[tuple[int, str | None] | str]:
    return [hash_regular(path, size) for path, size in jobs]


# --------------------------------------------------------------------------- one folder


@dataclass
class _Entry:
    """One parsed journal line and what the classification made of it."""

    line: int
    record: Record
    raw: bytes
    hash: str
    status: str = "ok"  # ok | bad (signature, revoked key) | foreign | replayed


@dataclass
class Missing:
    """A media file a trusted record names that is absent; ``wiped`` when a wipe under a
    valid receipt explains it (which excuses it on a camera, not inside a dock store)."""

    entry: _Entry
    relative: str
    wiped: bool


class FolderCheck:
    """Checks one device folder (or a dock's journal folder); the result is :attr:`report`.

    ``registry`` is the one the caller chose (trusted or not: ``registry_trust`` says which
    label the report carries). In a store (``in_store``), an absent media file is left to
    the store's rules (:mod:`evidence.verify_store`) in :attr:`missing`.
    """

    def __init__(
        self,
        folder: Path,
        label: str,
        registry: Registry | None,
        expected_device: str | None,
        expect_heads: dict[str | None, tuple[int, str]],
        keys: Keys,
        *,
        registry_trust: str = "registry",
        role: str = "device",
        in_store: bool = False,
        hasher: Hasher = hash_serially,
    ) -> None:
        self.folder = folder
        self.prefix = "" if label == "." else f"{label}/"
        self.registry = registry
        self.registry_trust = registry_trust
        self.expected_device = expected_device
        self.expect_heads = expect_heads
        self.expect_head: tuple[int, str] | None = None
        self.keys = keys
        self.role = role
        self.identity_name = ARCHIVE_MARKER if role == "archive" else IDENTITY_NAME
        self.in_store = in_store
        self.hasher = hasher
        self.report = DeviceReport(label, role=role)
        self.key: str | None = None
        self.key_entry: DeviceEntry | DockEntry | None = None
        self.self_key: str | None = None
        self.entries: list[_Entry] = []
        self.missing: list[Missing] = []
        self.journal_file = self.prefix + JOURNAL_NAME
        self.found_media: dict[str, tuple[int, str | None] | str] = {}

    def problem(
        self,
        code: str,
        message: str,
        *,
        seq: int | None = None,
        line: int | None = None,
        file: str | None = None,
    ) -> None:
        self.report.problems.append(Problem(code, message, self.report.device, seq, line, file))

    def run(self) -> DeviceReport:
        journal = self.folder / JOURNAL_NAME
        if self.role == "dock":
            self_device, self.self_key = None, None
        elif self.role == "archive":
            self_device, self.self_key = read_identity(self.folder, ARCHIVE_MARKER, "archive_id")
        else:
            self_device, self.self_key = read_identity(self.folder)
        try:
            scan = read_journal(journal)
        except UnsafeFile as exc:
            self.report.device = self.expected_device or self_device
            if exc.missing:
                self.problem(
                    "journal_missing", "no journal.jsonl in this folder", file=self.journal_file
                )
            elif exc.reason.startswith("cannot be opened (Permission"):
                raise CannotCheck(f"{journal}: cannot read: permission denied") from None
            else:
                self.problem(
                    "journal_missing", f"journal.jsonl {exc.reason}", file=self.journal_file
                )
            return self.report
        parsed = self._parse(scan)
        self._choose_device(self_device, parsed)
        self._choose_key(self_device)
        heads = self.expect_heads
        self.expect_head = heads.get(None) or heads.get(self.report.device or "")
        self._classify(parsed)
        self._check_sequence()
        self._check_expected_head()
        self._check_torn_side_files()
        if self.role == "device":
            self._check_media(self._check_receipts())
        return self.report

    def hash_at(self, seq: int) -> str | None:
        """The hash of the trusted record with ``seq``, or None."""
        for entry in self.entries:
            if entry.status == "ok" and entry.record.seq == seq:
                return entry.hash
        return None

    def trusted(self, kind: str | None = None) -> list[_Entry]:
        return [
            e for e in self.entries if e.status == "ok" and (kind is None or e.record.kind == kind)
        ]

    # -- parsing and trust

    def _parse(self, scan: JournalLines) -> list[tuple[int, bytes, Record]]:
        parsed = []
        for number, raw in scan.lines:
            if raw is None:
                self.problem(
                    "malformed_record",
                    f"unreadable record: longer than {MAX_RECORD_BYTES} bytes",
                    line=number,
                    file=self.journal_file,
                )
                continue
            try:
                parsed.append((number, raw, Record.from_bytes(raw)))
            except RecordError as exc:
                self.problem(
                    "malformed_record",
                    f"unreadable record: {exc}",
                    line=number,
                    file=self.journal_file,
                )
        if scan.torn is not None:
            offset, length = scan.torn
            self.problem(
                "torn_record",
                f"journal ends with {length} bytes without a newline at byte {offset} "
                "(a record cut short)",
                line=len(scan.lines) + 1,
                file=self.journal_file,
            )
        self.report.records = len(parsed)
        return parsed

    def _choose_device(self, self_device: str | None, parsed) -> None:
        # A store names the device by its folder; a device folder by its records (not by
        # identity.json, which is informational and checked against them).
        device = self.expected_device
        if device is None and parsed:
            device = Counter(r.device for _, _, r in parsed).most_common(1)[0][0]
        device = device or self_device
        self.report.device = device
        if self_device is not None and device is not None and self_device != device:
            self.problem(
                "foreign_device",
                f"identity.json names device {self_device!r}, not {device!r}",
                file=self.prefix + self.identity_name,
            )

    def _lookup(self, ident: str) -> DeviceEntry | DockEntry | None:
        if self.registry is None:
            return None
        if self.role == "archive":
            return self.registry.archive(ident)
        return self.registry.dock(ident) if self.role == "dock" else self.registry.get(ident)

    def _choose_key(self, self_device: str | None) -> None:
        device = self.report.device
        noun = self.role if self.role in ("dock", "archive") else "device"
        if device is None:
            return  # an empty journal and no identity.json: nothing to check a key against
        own_key = self.self_key if self_device == device else None
        self.self_key = own_key
        entry = self._lookup(device)
        if entry is not None:
            self.key, self.key_entry = entry.public_key, entry
            self.report.trust = self.registry_trust
            return
        if self.registry is not None:
            self.problem(
                "unknown_device",
                f"{noun} {device!r} is not in the registry"
                + ("; its records are checked against identity.json's key only" if own_key else ""),
            )
        elif own_key is None:
            self.problem(
                "unknown_device",
                f"no registry given and no key for this {noun}: no key to check signatures against",
                file=self.prefix + self.identity_name,
            )
        if own_key is not None:
            self.key, self.report.trust = own_key, "self-declared key"
            self.report.notes.append(
                f"{self.prefix}{self.identity_name}: signatures checked against the "
                f"self-declared key {own_key[:16]}... (not a registry)"
            )
        else:
            self.report.trust = "none"

    def _classify(self, parsed) -> None:
        seen: dict[bytes, int] = {}
        wrong_key: list[_Entry] = []
        revoked: list[tuple[_Entry, str]] = []
        for line, raw, record in parsed:
            entry = _Entry(line, record, raw, sha256_hex(raw))
            first = seen.get(raw)
            if first is not None:
                entry.status = "replayed"
                self.problem(
                    "replayed",
                    f"byte-identical copy of the record on line {first}",
                    seq=record.seq,
                    line=line,
                    file=self.journal_file,
                )
                self.entries.append(entry)
                continue
            seen[raw] = line
            try:
                message = record.signing_bytes()
            except (CanonicalError, RecursionError):
                self.problem(
                    "malformed_record",
                    "record cannot be re-encoded",
                    seq=record.seq,
                    line=line,
                    file=self.journal_file,
                )
                continue
            if record.device != self.report.device:
                entry.status = "foreign"
                self.problem(
                    "foreign_device",
                    self._foreign_reason(record, message),
                    seq=record.seq,
                    line=line,
                    file=self.journal_file,
                )
            elif self.key is None or self.keys.verifies(self.key, message, record.sig):
                why = self.key_entry.problem_at(record.utc) if self.key_entry else None
                if why is not None:  # signed, but not while the key was good
                    entry.status = "bad"
                    revoked.append((entry, why))
            elif (
                self.report.trust == "registry"
                and self.self_key
                and self.self_key != self.key
                and self.keys.verifies(self.self_key, message, record.sig)
            ):
                wrong_key.append(entry)
            else:
                other = self._signer_among_registry(message, record.sig)
                if other is not None:
                    entry.status = "foreign"
                    self.problem(
                        "foreign_device",
                        f"record claims device {record.device!r} but is signed by "
                        f"registered device {other!r}",
                        seq=record.seq,
                        line=line,
                        file=self.journal_file,
                    )
                else:
                    entry.status = "bad"
                    self.problem(
                        "bad_signature",
                        f"{record.kind} record's signature does not verify",
                        seq=record.seq,
                        line=line,
                        file=self.journal_file,
                    )
            self.entries.append(entry)
        if revoked:
            first, why = revoked[0]
            self.problem(
                "revoked_key",
                f"{len(revoked)} record(s) are signed at a time when {why}",
                seq=first.record.seq,
                line=first.line,
                file=self.journal_file,
            )
        if wrong_key:
            first = wrong_key[0]
            self.problem(
                "wrong_key",
                f"{len(wrong_key)} record(s) verify under identity.json's key "
                f"{self.self_key[:16]}... but not under the registry's key {self.key[:16]}...",
                seq=first.record.seq,
                line=first.line,
                file=self.journal_file,
            )

    def _foreign_reason(self, record: Record, message: bytes) -> str:
        entry = self.registry.get(record.device) if self.registry else None
        if entry is not None and self.keys.verifies(entry.public_key, message, record.sig):
            return (
                f"record of registered device {record.device!r} in the journal of "
                f"{self.report.device!r}"
            )
        return (
            f"record claims device {record.device!r}, not {self.report.device!r} "
            "(and no registered key verifies it)"
        )

    def _signer_among_registry(self, message: bytes, sig: str) -> str | None:
        if self.registry is None:
            return None
        for entry in self.registry:
            if entry.device_id != self.report.device and self.keys.verifies(
                entry.public_key, message, sig
            ):
                return entry.device_id
        return None

    # -- sequence, chain, time

    def _check_sequence(self) -> None:
        chained = [e for e in self.entries if e.status in ("ok", "bad")]
        by_seq: dict[int, list[_Entry]] = {}
        previous: _Entry | None = None
        for entry in chained:
            seq = entry.record.seq
            if seq in by_seq:
                first = by_seq[seq][0]
                self.problem(
                    "sequence_repeat",
                    f"seq {seq} already used by the record on line {first.line}",
                    seq=seq,
                    line=entry.line,
                    file=self.journal_file,
                )
            elif previous is not None and seq < previous.record.seq:
                self.problem(
                    "reordered",
                    f"seq {seq} comes after seq {previous.record.seq} (line {previous.line})",
                    seq=seq,
                    line=entry.line,
                    file=self.journal_file,
                )
            by_seq.setdefault(seq, []).append(entry)
            previous = entry
        if not by_seq:
            self.report.notes.append(f"{self.journal_file}: the journal holds no records")
            return
        self._check_gaps(by_seq)
        self._check_chain(chained, by_seq)
        top = max(by_seq)
        heads = by_seq[top]
        self.report.head = (top, heads[-1].hash)

    def _check_gaps(self, by_seq: dict[int, list[_Entry]]) -> None:
        seqs = sorted(by_seq)
        expected = 0
        for seq in seqs:
            if seq > expected:
                entry = by_seq[seq][0]
                missing = (
                    f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
                )
                self.problem(
                    "sequence_gap",
                    f"{missing} missing before this record ({seq - expected} record(s))",
                    seq=seq,
                    line=entry.line,
                    file=self.journal_file,
                )
            expected = seq + 1

    def _check_chain(self, chained: list[_Entry], by_seq: dict[int, list[_Entry]]) -> None:
        for entry in chained:
            record = entry.record
            if entry.status != "ok":
                continue
            if record.seq == 0:
                if record.prev != GENESIS_HASH:
                    self.problem(
                        "broken_chain",
                        "the first record's prev is not 64 zeros",
                        seq=0,
                        line=entry.line,
                        file=self.journal_file,
                    )
                continue
            before = by_seq.get(record.seq - 1)
            if not before or any(b.status != "ok" for b in before):
                continue  # a gap or a tampered record, reported on its own
            linked = [b for b in before if b.hash == record.prev]
            if not linked:
                self.problem(
                    "broken_chain",
                    f"prev {record.prev[:16]}... is not the hash of seq "
                    f"{record.seq - 1} (line {before[0].line})",
                    seq=record.seq,
                    line=entry.line,
                    file=self.journal_file,
                )
                continue
            self._check_time(linked[0], entry)
        for entry in chained:
            if entry.status == "ok" and entry.record.kind == "receipt":
                self._check_receipt(entry, by_seq)

    def _check_time(self, before: _Entry, entry: _Entry) -> None:
        a, b = before.record, entry.record
        if b.utc < a.utc and "clock_set" not in (a.kind, b.kind):
            self.problem(
                "time_backwards",
                f"UTC {b.utc} is before the previous record's {a.utc} and no clock_set explains it",
                seq=b.seq,
                line=entry.line,
                file=self.journal_file,
            )
        if b.mono_ns < a.mono_ns and b.kind not in EPOCH_KINDS:
            self.problem(
                "time_backwards",
                f"mono_ns {b.mono_ns} is below the previous record's {a.mono_ns} "
                "within one boot (no boot record starts a new one)",
                seq=b.seq,
                line=entry.line,
                file=self.journal_file,
            )

    def _check_receipt(self, entry: _Entry, by_seq: dict[int, list[_Entry]]) -> None:
        upto, digest = entry.record.body.get("upto_seq"), entry.record.body.get("upto_hash")
        if type(upto) is not int or not isinstance(digest, str):
            return
        named = by_seq.get(upto)
        if named and all(n.status == "ok" for n in named) and digest not in {n.hash for n in named}:
            self.problem(
                "receipt_mismatch",
                f"receipt covers seq {upto} with hash {digest[:16]}..., but that "
                f"record's hash is {named[0].hash[:16]}...",
                seq=entry.record.seq,
                line=entry.line,
                file=self.journal_file,
            )

    def _check_expected_head(self) -> None:
        if self.expect_head is None:
            return
        seq, digest = self.expect_head
        head = self.report.head
        if head is None or head[0] < seq:
            ends = "is empty" if head is None else f"ends at seq {head[0]}"
            self.problem(
                "tail_cut",
                f"the journal {ends}, but the device signed a head at seq {seq}",
                seq=seq,
                file=self.journal_file,
            )
            return
        at = [e for e in self.entries if e.status in ("ok", "bad") and e.record.seq == seq]
        if at and digest not in {e.hash for e in at}:
            self.problem(
                "head_mismatch",
                f"record seq {seq} has hash {at[0].hash[:16]}..., "
                f"the expected head is {digest[:16]}...",
                seq=seq,
                line=at[0].line,
                file=self.journal_file,
            )

    # -- side files, receipts and media

    def _check_torn_side_files(self) -> None:
        named: set[str] = set()
        for entry in self.trusted("torn_tail"):
            body = entry.record.body
            name, size, digest = body.get("file"), body.get("size"), body.get("sha256")
            where = dict(seq=entry.record.seq, line=entry.line)
            if not (
                isinstance(name, str)
                and name.startswith(TORN_PREFIX)
                and "/" not in name
                and type(size) is int
            ):
                self.problem(
                    "bad_torn_side_file",
                    f"torn_tail names no side file: {name!r:.60}",
                    file=self.journal_file,
                    **where,
                )
                continue
            named.add(name)
            result = hash_regular(self.folder / name, size)
            if isinstance(result, str):
                self.problem(
                    "bad_torn_side_file", f"side file {result}", file=self.prefix + name, **where
                )
            elif result != (size, digest):
                found = "not hashed" if result[1] is None else f"sha256 {result[1][:16]}..."
                self.problem(
                    "bad_torn_side_file",
                    f"side file is {result[0]} bytes, {found}; the torn_tail record "
                    f"says {size} bytes, {str(digest)[:16]}...",
                    file=self.prefix + name,
                    **where,
                )
        try:
            present = sorted(n for n in os.listdir(self.folder) if n.startswith(TORN_PREFIX))
        except OSError:
            present = []
        for name in present:
            if name not in named:
                self.problem(
                    "bad_torn_side_file",
                    "side file not named by any torn_tail record",
                    file=self.prefix + name,
                )

    def _check_receipts(self) -> set[str]:
        """Check every receipt's dock signature and every wipe's cover; return the media
        files that a wipe under a valid receipt removed."""
        valid: dict[int, int] = {}  # receipt seq -> upto_seq, for receipts that verify
        for entry in self.trusted("receipt"):
            why = self._receipt_problem(entry.record)
            if why is None:
                valid[entry.record.seq] = entry.record.body["upto_seq"]
            else:
                self.problem(
                    "bad_receipt",
                    why,
                    seq=entry.record.seq,
                    line=entry.line,
                    file=self.journal_file,
                )
        bad = {e.record.seq for e in self.trusted("receipt")} - set(valid)
        bound_at = {
            e.record.media[0]: e.record.seq for e in self.trusted() if e.record.media is not None
        }
        wiped: set[str] = set()
        for entry in self.trusted("wiped"):
            files, receipt_seq = (
                entry.record.body.get("files"),
                entry.record.body.get("receipt_seq"),
            )
            where = dict(seq=entry.record.seq, line=entry.line, file=self.journal_file)
            if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
                self.problem("unreceipted_wipe", "wiped record names no list of files", **where)
                continue
            # The wipe, not each file it removed, is the damage: its files are not reported
            # again as missing, and a wipe under a receipt already reported bad is not
            # reported twice.
            wiped.update(files)
            upto = valid.get(receipt_seq) if type(receipt_seq) is int else None
            if upto is None and receipt_seq not in bad:
                self.problem(
                    "unreceipted_wipe",
                    f"{len(files)} file(s) wiped under receipt seq {receipt_seq!r:.20}, "
                    "which is not a receipt record in this journal",
                    **where,
                )
            elif upto is not None:
                uncovered = [f for f in files if bound_at.get(f, upto + 1) > upto]
                if uncovered:
                    self.problem(
                        "unreceipted_wipe",
                        f"{len(uncovered)} wiped file(s) are not covered by receipt "
                        f"seq {receipt_seq} (up to seq {upto}), e.g. "
                        f"{uncovered[0]!r:.80}",
                        **where,
                    )
        return wiped

    def _receipt_problem(self, record: Record) -> str | None:
        body = record.body
        dock, upto, digest, sig = (
            body.get(k) for k in ("dock", "upto_seq", "upto_hash", "dock_sig")
        )
        if not (
            isinstance(dock, str)
            and DEVICE_ID_PATTERN.match(dock)
            and type(upto) is int
            and isinstance(digest, str)
            and HEX64.match(digest)
            and isinstance(sig, str)
            and HEX128.match(sig)
        ):
            return "the receipt does not name a dock, seq, hash and dock signature"
        entry = self.registry.dock(dock) if self.registry is not None else None
        if entry is None:
            return f"the receipt is from dock {dock!r}, which is not in the registry"
        nonces = (body.get("nonce"), body.get("camera_nonce"))  # a v2 receipt's session
        session = nonces if all(isinstance(n, str) for n in nonces) else None
        message = receipt_message(dock, self.report.device or "", upto, digest, session)
        if not self.keys.verifies(entry.public_key, message, sig):
            return f"the receipt's signature does not verify under dock {dock!r}'s key"
        why = entry.problem_at(record.utc)
        if why is not None:
            return f"the receipt is from dock {dock!r}, but {why}"
        return None

    def _check_media(self, wiped: set[str]) -> None:
        named: set[str] = set()
        bound: list[tuple[_Entry, str, int, str]] = []
        for entry in self.entries:
            media = entry.record.media
            if media is None or entry.status not in ("ok", "bad"):
                continue
            named.add(media[0])
            if entry.status == "ok":  # an untrusted record binds nothing; reported already
                bound.append((entry, *media))
        jobs: dict[str, int] = {}
        for _, relative, size, _ in bound:
            jobs.setdefault(relative, size)
        results = self.hasher([(self.folder / rel, size) for rel, size in jobs.items()])
        self.found_media = dict(zip(jobs, results, strict=True))
        for found in self.found_media.values():
            if not isinstance(found, str):
                self.report.media_files += 1
                self.report.media_bytes += found[0]
        for entry, relative, size, digest in bound:
            self._judge_media(entry, relative, size, digest, self.found_media[relative], wiped)
        self._check_extra_media(named)

    def _judge_media(
        self,
        entry: _Entry,
        relative: str,
        size: int,
        digest: str,
        found: tuple[int, str | None] | str,
        wiped: set[str],
    ) -> None:
        where = dict(seq=entry.record.seq, line=entry.line, file=self.prefix + relative)
        kind = entry.record.kind
        if isinstance(found, str) and found.startswith("is missing"):
            if self.in_store:
                self.missing.append(Missing(entry, relative, relative in wiped))
            elif relative not in wiped:
                self.problem("media_missing", f"{kind} file is missing", **where)
        elif isinstance(found, str):
            self.problem("media_changed", f"{kind} file {found}", **where)
        elif found[0] < size:
            self.problem(
                "media_truncated",
                f"{kind} file is {found[0]} bytes, the record says {size}",
                **where,
            )
        elif found[0] > size:
            self.problem(
                "media_changed", f"{kind} file is {found[0]} bytes, the record says {size}", **where
            )
        elif found[1] != digest:
            self.problem(
                "media_changed",
                f"{kind} file's sha256 is {str(found[1])[:16]}..., the record says "
                f"{digest[:16]}...",
                **where,
            )

    def _check_extra_media(self, named: set[str]) -> None:
        media_root = self.folder / MEDIA_DIR
        if not os.path.lexists(media_root):
            return
        if not is_real_dir(media_root):
            self.problem("extra_media", "media is not a folder", file=self.prefix + MEDIA_DIR)
            return
        for relative in _walk_no_links(media_root, MEDIA_DIR):
            if relative not in named:
                self.problem(
                    "extra_media",
                    "file not named by any journal record",
                    file=self.prefix + relative,
                )


def _walk_no_links(root: Path, base: str) -> Iterable[str]:
    """Every entry below ``root`` that is not a real folder (files, links, FIFOs...), as
    ``base/...`` paths, in sorted order; links to folders are listed, never entered."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return
    for name in names:
        path = root / name
        if is_real_dir(path):
            yield from _walk_no_links(path, f"{base}/{name}")
        else:
            yield f"{base}/{name}"
