"""Check one device folder: every record, the chain, time, torn-tail side files, media.

Pure checking logic used by :mod:`evidence.verify`. Why the checks are shaped as they are:

- Records are first classified one by one (malformed, foreign, replayed, bad signature,
  trusted), then the trusted and bad-signature records are checked together by sequence
  number: a gap, a repeat, a seq lower than the one before it (reordered), and each
  record's ``prev`` against the hash of the record one seq lower. Chaining by seq rather
  than by file position means one swapped pair is reported once, as ``reordered``, and a
  tampered record is reported once, as ``bad_signature``, not again as a broken chain.
- Media files are read once each, in 128 KiB reads into one reused buffer (hashlib is
  OpenSSL, so this keeps pace with ``openssl dgst``), and never through a symlink.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from .canonical import GENESIS_HASH, sha256_hex
from .exc import CanonicalError, EvidenceError, RecordError
from .identity import DEVICE_ID_PATTERN
from .journal import JOURNAL_NAME, TORN_PREFIX, scan_journal
from .layout import IDENTITY_NAME, MEDIA_DIR
from .media import hash_fd
from .record import HEX64, Record
from .registry import Registry

READ_SIZE = 128 * 1024

PROBLEM_CODES = {
    "bad_signature": "a record's signature does not verify under the device's key",
    "unknown_device": "the device is not in the registry (or no key to check it against)",
    "wrong_key": "records verify under identity.json's key but not the registry's",
    "broken_chain": "a record's prev is not the hash of the record one seq lower",
    "sequence_gap": "sequence numbers are missing",
    "sequence_repeat": "two different records carry the same sequence number",
    "reordered": "a record's seq is lower than the record before it",
    "foreign_device": "a record (or identity.json) belongs to another device",
    "replayed": "a byte-identical copy of an earlier record appears again",
    "media_missing": "a media file named by the journal is absent",
    "media_changed": "a media file's hash or size differs from its record (or not a file)",
    "media_truncated": "a media file is shorter than its record says",
    "extra_media": "a file under media/ that no record names",
    "time_backwards": "UTC (outside a clock_set) or mono_ns (within a boot) went backwards",
    "tail_cut": "the journal ends before the expected head",
    "head_mismatch": "the record at the expected head's seq has another hash",
    "torn_record": "the journal file ends with a partial line",
    "malformed_record": "a journal line is not a well-formed canonical record",
    "bad_torn_side_file": "a journal.torn-N side file is missing, altered or unaccounted for",
    "receipt_mismatch": "a receipt names a hash that is not the record at its upto_seq",
    "journal_missing": "a device folder in a store has no journal.jsonl",
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
    """What was found in one device folder."""

    folder: str  # relative to the checked path ("." for a device folder)
    device: str | None = None
    trust: str = ""  # "registry", "self-declared key" or "none"
    records: int = 0
    head: tuple[int, str] | None = None
    media_files: int = 0
    media_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder, "device": self.device, "trust": self.trust,
            "records": self.records,
            "head": None if self.head is None else {"seq": self.head[0], "hash": self.head[1]},
            "media_files": self.media_files, "media_bytes": self.media_bytes,
            "intact": not self.problems,
            "problems": [p.to_dict() for p in self.problems], "notes": self.notes,
        }



# --------------------------------------------------------------------------- keys


class Keys:
    """Cached PyNaCl verify keys; a malformed key simply verifies nothing."""

    def __init__(self) -> None:
        self._keys: dict[str, nacl.signing.VerifyKey | None] = {}

    def verifies(self, key_hex: str | None, message: bytes, sig_hex: str) -> bool:
        if key_hex is None:
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


# --------------------------------------------------------------------------- one folder


@dataclass
class _Entry:
    """One parsed journal line and what the classification made of it."""

    line: int
    record: Record
    raw: bytes
    hash: str
    status: str = "ok"  # ok | bad (signature) | foreign | replayed


def read_identity(folder: Path) -> tuple[str | None, str | None]:
    """``(device_id, public_key)`` from identity.json, each None when absent or malformed."""
    try:
        data = json.loads((folder / IDENTITY_NAME).read_bytes())
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    device, key = data.get("device_id"), data.get("public_key")
    device = device if isinstance(device, str) and DEVICE_ID_PATTERN.match(device) else None
    key = key if isinstance(key, str) and HEX64.match(key) else None
    return device, key


class FolderCheck:
    """Checks one device folder; the result is :attr:`report`."""

    def __init__(
        self,
        folder: Path,
        label: str,
        registry: Registry | None,
        expected_device: str | None,
        expect_heads: dict[str | None, tuple[int, str]],
        keys: Keys,
    ) -> None:
        self.folder = folder
        self.prefix = "" if label == "." else f"{label}/"
        self.registry = registry
        self.expected_device = expected_device
        self.expect_heads = expect_heads
        self.expect_head: tuple[int, str] | None = None
        self.keys = keys
        self.report = DeviceReport(label)
        self.key: str | None = None
        self.self_key: str | None = None
        self.entries: list[_Entry] = []
        self.journal_file = self.prefix + JOURNAL_NAME

    def problem(self, code: str, message: str, *, seq: int | None = None,
                line: int | None = None, file: str | None = None) -> None:
        self.report.problems.append(
            Problem(code, message, self.report.device, seq, line, file))

    def run(self) -> DeviceReport:
        journal = self.folder / JOURNAL_NAME
        self_device, self.self_key = read_identity(self.folder)
        try:
            if not stat.S_ISREG(journal.stat().st_mode):  # a FIFO would block the read
                self.report.device = self.expected_device or self_device
                self.problem("journal_missing", "journal.jsonl is not a regular file",
                             file=self.journal_file)
                return self.report
            scan = scan_journal(journal)
        except FileNotFoundError:
            self.report.device = self.expected_device or self_device
            self.problem("journal_missing", "no journal.jsonl in this device folder",
                         file=self.journal_file)
            return self.report
        except OSError as exc:
            raise CannotCheck(f"{journal}: cannot read: {exc.strerror or exc}") from None
        parsed = self._parse(scan)
        self._choose_device(self_device, parsed)
        self._choose_key(self_device)
        heads = self.expect_heads
        self.expect_head = heads.get(None) or heads.get(self.report.device or "")
        self._classify(parsed)
        self._check_sequence()
        self._check_expected_head()
        self._check_torn_side_files()
        self._check_media()
        return self.report

    # -- parsing and trust

    def _parse(self, scan) -> list[tuple[int, bytes, Record]]:
        parsed = []
        for index, (_, raw) in enumerate(scan.lines):
            try:
                parsed.append((index + 1, raw, Record.from_bytes(raw)))
            except RecordError as exc:
                self.problem("malformed_record", f"unreadable record: {exc}",
                             line=index + 1, file=self.journal_file)
        if scan.torn is not None:
            offset, data = scan.torn
            self.problem(
                "torn_record",
                f"journal ends with {len(data)} bytes without a newline at byte {offset} "
                "(a record cut short)", line=len(scan.lines) + 1, file=self.journal_file)
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
            self.problem("foreign_device",
                         f"identity.json names device {self_device!r}, not {device!r}",
                         file=self.prefix + IDENTITY_NAME)

    def _choose_key(self, self_device: str | None) -> None:
        device = self.report.device
        if device is None:
            return  # an empty journal and no identity.json: nothing to check a key against
        own_key = self.self_key if self_device == device else None
        self.self_key = own_key
        entry = self.registry.get(device) if self.registry is not None else None
        if entry is not None:
            self.key, self.report.trust = entry.public_key, "registry"
            return
        if self.registry is not None:
            self.problem("unknown_device",
                         f"device {device!r} is not in the registry"
                         + ("; its records are checked against identity.json's key only"
                            if own_key else ""))
        elif own_key is None:
            self.problem("unknown_device",
                         "no registry given and identity.json holds no key for this device: "
                         "no key to check signatures against", file=self.prefix + IDENTITY_NAME)
        if own_key is not None:
            self.key, self.report.trust = own_key, "self-declared key"
            self.report.notes.append(
                f"{self.prefix}{IDENTITY_NAME}: signatures checked against the "
                f"self-declared key {own_key[:16]}... (not a registry)")
        else:
            self.report.trust = "none"

    def _classify(self, parsed) -> None:
        seen: dict[bytes, int] = {}
        wrong_key: list[_Entry] = []
        for line, raw, record in parsed:
            entry = _Entry(line, record, raw, sha256_hex(raw))
            first = seen.get(raw)
            if first is not None:
                entry.status = "replayed"
                self.problem("replayed",
                             f"byte-identical copy of the record on line {first}",
                             seq=record.seq, line=line, file=self.journal_file)
                self.entries.append(entry)
                continue
            seen[raw] = line
            try:
                message = record.signing_bytes()
            except (CanonicalError, RecursionError):
                self.problem("malformed_record", "record cannot be re-encoded",
                             seq=record.seq, line=line, file=self.journal_file)
                continue
            if record.device != self.report.device:
                entry.status = "foreign"
                self.problem("foreign_device", self._foreign_reason(record, message),
                             seq=record.seq, line=line, file=self.journal_file)
            elif self.key is None or self.keys.verifies(self.key, message, record.sig):
                pass  # trusted (or, with no key at all, checked for structure only)
            elif (self.report.trust == "registry" and self.self_key
                  and self.self_key != self.key
                  and self.keys.verifies(self.self_key, message, record.sig)):
                wrong_key.append(entry)
            else:
                other = self._signer_among_registry(message, record.sig)
                if other is not None:
                    entry.status = "foreign"
                    self.problem("foreign_device",
                                 f"record claims device {record.device!r} but is signed by "
                                 f"registered device {other!r}",
                                 seq=record.seq, line=line, file=self.journal_file)
                else:
                    entry.status = "bad"
                    self.problem("bad_signature",
                                 f"{record.kind} record's signature does not verify",
                                 seq=record.seq, line=line, file=self.journal_file)
            self.entries.append(entry)
        if wrong_key:
            first = wrong_key[0]
            self.problem(
                "wrong_key",
                f"{len(wrong_key)} record(s) verify under identity.json's key "
                f"{self.self_key[:16]}... but not under the registry's key {self.key[:16]}...",
                seq=first.record.seq, line=first.line, file=self.journal_file)

    def _foreign_reason(self, record: Record, message: bytes) -> str:
        entry = self.registry.get(record.device) if self.registry else None
        if entry is not None and self.keys.verifies(entry.public_key, message, record.sig):
            return f"record of registered device {record.device!r} in the journal of " \
                   f"{self.report.device!r}"
        return f"record claims device {record.device!r}, not {self.report.device!r} " \
               "(and no registered key verifies it)"

    def _signer_among_registry(self, message: bytes, sig: str) -> str | None:
        if self.registry is None:
            return None
        for entry in self.registry:
            if entry.device_id != self.report.device and self.keys.verifies(
                    entry.public_key, message, sig):
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
                self.problem("sequence_repeat",
                             f"seq {seq} already used by the record on line {first.line}",
                             seq=seq, line=entry.line, file=self.journal_file)
            elif previous is not None and seq < previous.record.seq:
                self.problem("reordered",
                             f"seq {seq} comes after seq {previous.record.seq} "
                             f"(line {previous.line})",
                             seq=seq, line=entry.line, file=self.journal_file)
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
                missing = f"seq {expected}" if seq == expected + 1 else \
                    f"seqs {expected}..{seq - 1}"
                self.problem("sequence_gap",
                             f"{missing} missing before this record ({seq - expected} record(s))",
                             seq=seq, line=entry.line, file=self.journal_file)
            expected = seq + 1

    def _check_chain(self, chained: list[_Entry], by_seq: dict[int, list[_Entry]]) -> None:
        for entry in chained:
            record = entry.record
            if entry.status != "ok":
                continue
            if record.seq == 0:
                if record.prev != GENESIS_HASH:
                    self.problem("broken_chain", "the first record's prev is not 64 zeros",
                                 seq=0, line=entry.line, file=self.journal_file)
                continue
            before = by_seq.get(record.seq - 1)
            if not before or any(b.status != "ok" for b in before):
                continue  # a gap or a tampered record, reported on its own
            linked = [b for b in before if b.hash == record.prev]
            if not linked:
                self.problem("broken_chain",
                             f"prev {record.prev[:16]}... is not the hash of seq "
                             f"{record.seq - 1} (line {before[0].line})",
                             seq=record.seq, line=entry.line, file=self.journal_file)
                continue
            self._check_time(linked[0], entry)
        for entry in chained:
            if entry.status == "ok" and entry.record.kind == "receipt":
                self._check_receipt(entry, by_seq)

    def _check_time(self, before: _Entry, entry: _Entry) -> None:
        a, b = before.record, entry.record
        if b.utc < a.utc and "clock_set" not in (a.kind, b.kind):
            self.problem("time_backwards",
                         f"UTC {b.utc} is before the previous record's {a.utc} "
                         "and no clock_set explains it",
                         seq=b.seq, line=entry.line, file=self.journal_file)
        if b.mono_ns < a.mono_ns and b.kind != "boot":
            self.problem("time_backwards",
                         f"mono_ns {b.mono_ns} is below the previous record's {a.mono_ns} "
                         "within one boot",
                         seq=b.seq, line=entry.line, file=self.journal_file)

    def _check_receipt(self, entry: _Entry, by_seq: dict[int, list[_Entry]]) -> None:
        upto, digest = entry.record.body.get("upto_seq"), entry.record.body.get("upto_hash")
        if type(upto) is not int or not isinstance(digest, str):
            return
        named = by_seq.get(upto)
        if named and all(n.status == "ok" for n in named) and digest not in {
                n.hash for n in named}:
            self.problem("receipt_mismatch",
                         f"receipt covers seq {upto} with hash {digest[:16]}..., but that "
                         f"record's hash is {named[0].hash[:16]}...",
                         seq=entry.record.seq, line=entry.line, file=self.journal_file)

    def _check_expected_head(self) -> None:
        if self.expect_head is None:
            return
        seq, digest = self.expect_head
        head = self.report.head
        if head is None or head[0] < seq:
            ends = "is empty" if head is None else f"ends at seq {head[0]}"
            self.problem("tail_cut",
                         f"the journal {ends}, but the device signed a head at seq {seq}",
                         seq=seq, file=self.journal_file)
            return
        at = [e for e in self.entries if e.status in ("ok", "bad") and e.record.seq == seq]
        if at and digest not in {e.hash for e in at}:
            self.problem("head_mismatch",
                         f"record seq {seq} has hash {at[0].hash[:16]}..., "
                         f"the expected head is {digest[:16]}...",
                         seq=seq, line=at[0].line, file=self.journal_file)

    # -- side files and media

    def _trusted(self, kind: str) -> list[_Entry]:
        return [e for e in self.entries if e.status == "ok" and e.record.kind == kind]

    def _check_torn_side_files(self) -> None:
        named: set[str] = set()
        for entry in self._trusted("torn_tail"):
            body = entry.record.body
            name, size, digest = body.get("file"), body.get("size"), body.get("sha256")
            where = dict(seq=entry.record.seq, line=entry.line)
            if not (isinstance(name, str) and name.startswith(TORN_PREFIX) and "/" not in name):
                self.problem("bad_torn_side_file", f"torn_tail names no side file: {name!r:.60}",
                             file=self.journal_file, **where)
                continue
            named.add(name)
            result = hash_regular(self.folder / name)
            if isinstance(result, str):
                self.problem("bad_torn_side_file", f"side file {result}",
                             file=self.prefix + name, **where)
            elif result != (size, digest):
                self.problem("bad_torn_side_file",
                             f"side file is {result[0]} bytes, sha256 {result[1][:16]}...; "
                             f"the torn_tail record says {size} bytes, {str(digest)[:16]}...",
                             file=self.prefix + name, **where)
        try:
            present = sorted(p.name for p in self.folder.iterdir()
                             if p.name.startswith(TORN_PREFIX))
        except OSError:
            present = []
        for name in present:
            if name not in named:
                self.problem("bad_torn_side_file",
                             "side file not named by any torn_tail record",
                             file=self.prefix + name)

    def _check_media(self) -> None:
        wiped: set[str] = set()
        for entry in self._trusted("wiped"):
            files = entry.record.body.get("files")
            if isinstance(files, list):
                wiped.update(f for f in files if isinstance(f, str))
        named: set[str] = set()
        checked: dict[str, tuple[int, str] | str] = {}
        for entry in self.entries:
            media = entry.record.media
            if media is None or entry.status not in ("ok", "bad"):
                continue
            relative, size, digest = media
            named.add(relative)
            if entry.status != "ok":
                continue  # an untrusted record binds nothing; it is reported already
            if relative not in checked:
                checked[relative] = hash_regular(self.folder / relative)
                if not isinstance(checked[relative], str):
                    self.report.media_files += 1
                    self.report.media_bytes += checked[relative][0]
            self._judge_media(entry, relative, size, digest, checked[relative], wiped)
        self._check_extra_media(named)

    def _judge_media(self, entry: _Entry, relative: str, size: int, digest: str,
                     found: tuple[int, str] | str, wiped: set[str]) -> None:
        where = dict(seq=entry.record.seq, line=entry.line, file=self.prefix + relative)
        kind = entry.record.kind
        if found == "is missing":
            if relative not in wiped:
                self.problem("media_missing", f"{kind} file is missing", **where)
        elif isinstance(found, str):
            self.problem("media_changed", f"{kind} file {found}", **where)
        elif found[0] < size:
            self.problem("media_truncated",
                         f"{kind} file is {found[0]} bytes, the record says {size}", **where)
        elif found[0] > size:
            self.problem("media_changed",
                         f"{kind} file is {found[0]} bytes, the record says {size}", **where)
        elif found[1] != digest:
            self.problem("media_changed",
                         f"{kind} file's sha256 is {found[1][:16]}..., the record says "
                         f"{digest[:16]}...", **where)

    def _check_extra_media(self, named: set[str]) -> None:
        media_root = self.folder / MEDIA_DIR
        try:
            st = media_root.lstat()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problem("extra_media", f"media folder unreadable: {exc.strerror}",
                         file=self.prefix + MEDIA_DIR)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.problem("extra_media", "media is not a folder", file=self.prefix + MEDIA_DIR)
            return
        for dirpath, dirnames, filenames in os.walk(media_root):
            base = Path(dirpath).relative_to(self.folder).as_posix()
            dirnames.sort()
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames + links):
                relative = f"{base}/{name}"
                if relative not in named:
                    self.problem("extra_media", "file not named by any journal record",
                                 file=self.prefix + relative)


def hash_regular(path: Path) -> tuple[int, str] | str:
    """``(size, sha256)`` of a regular file read once, or why it could not be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            return "is a symbolic link, not a file"
        return f"cannot be opened ({getattr(exc, 'strerror', None) or exc})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "is not a regular file"
        return hash_fd(fd, READ_SIZE)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)
