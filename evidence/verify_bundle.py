"""Check a court bundle (``archive.bundle``): signatures, the chain of each exported range,
every media file, the registry against the named unit key, and that nothing is missing.

Why these checks: a bundle is a case's recordings taken out of the store, so the store's
own completeness rules cannot be applied; what is left is what the bundle itself proves.
Each exported range is a contiguous piece of a camera's chain (``journal-<first>-<last>``):
its first record is the range's first seq, every next record has seq + 1 and names the
hash of the one before, and it runs on to the ``records_stored`` head the dock signed, so
a record taken out, put in, edited or reordered breaks it. Every segment or photo record
inside the range binds a file that must be present and match, unless the manifest lists
it as withheld (reported, never silently). The manifest is only a table of contents: the
camera's records decide; a manifest that disagrees with them is a ``bundle_mismatch``.

Pure checking logic, like :mod:`evidence.verify_folder`, whose problems and reports it
produces; :mod:`evidence.verify` chooses the registry and calls :class:`BundleCheck`.
Layout constants live here so that the archive that writes bundles imports them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .canonical import canonical_bytes, sha256_hex
from .exc import CanonicalError, RecordError
from .identity import DEVICE_ID_PATTERN
from .record import HEX64, HEX128, Record
from .registry import Registry
from .safefile import UnsafeFile, is_real_dir, read_regular
from .unitkey import fingerprint as key_fingerprint
from .verify_folder import (
    CannotCheck,
    DeviceReport,
    Hasher,
    Keys,
    Problem,
    hash_serially,
    read_journal,
)

BUNDLE_FORMAT = "bodycam-bundle-v1"
MANIFEST_NAME = "manifest.json"
REGISTRY_NAME = "registry.json"
FINGERPRINT_NAME = "unit-key-fingerprint.txt"
DOCK_RECORDS_NAME = "dock-records.jsonl"
DEVICES_DIR = "devices"
MAX_MANIFEST_BYTES = 64 << 20
MEDIA_STATUSES = ("included", "omitted", "outside_range")


def is_bundle(path: Path) -> bool:
    return os.path.lexists(path / MANIFEST_NAME) and not os.path.lexists(path / "journal.jsonl")


def manifest_signing_bytes(manifest: dict[str, Any]) -> bytes:
    """What the archive's key signs: the canonical JSON of the manifest without ``sig``."""
    return canonical_bytes({k: v for k, v in manifest.items() if k != "sig"})


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, shape-checked; :class:`CannotCheck` if there is nothing to go by."""
    try:
        data = read_regular(root / MANIFEST_NAME, MAX_MANIFEST_BYTES)
        manifest = json.loads(data.decode("utf-8"))
    except UnsafeFile as exc:
        raise CannotCheck(f"{root}: {MANIFEST_NAME} {exc.reason}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CannotCheck(
            f"{root / MANIFEST_NAME}: not valid JSON: the bundle's manifest is damaged"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise CannotCheck(f"{root / MANIFEST_NAME}: not a {BUNDLE_FORMAT} manifest")
    ranges, media = manifest.get("ranges"), manifest.get("media")
    ok = (
        isinstance(ranges, list)
        and ranges
        and all(_range_ok(r) for r in ranges)
        and isinstance(media, list)
        and all(_media_ok(m) for m in media)
        and isinstance(manifest.get("files", []), list)
        and all(_file_ok(f) for f in manifest.get("files", []))
    )
    if not ok:
        raise CannotCheck(f"{root / MANIFEST_NAME}: its ranges, media or files are not as defined")
    return manifest


def _range_ok(r: Any) -> bool:
    return (
        isinstance(r, dict)
        and isinstance(r.get("device"), str)
        and DEVICE_ID_PATTERN.match(r["device"]) is not None
        and all(
            type(r.get(k)) is int and r[k] >= 0
            for k in ("first_seq", "last_seq", "journal_last_seq")
        )
        and r["first_seq"] <= r["last_seq"] <= r["journal_last_seq"]
        and r.get("journal")
        == f"{DEVICES_DIR}/{r['device']}/journal-{r['first_seq']}-{r['last_seq']}.jsonl"
        and (r.get("dock_head") is None or isinstance(r["dock_head"], dict))
    )


def _media_ok(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and isinstance(m.get("device"), str)
        and type(m.get("seq")) is int
        and isinstance(m.get("file"), str)
        and m.get("status") in MEDIA_STATUSES
        and isinstance(m.get("sha256"), str)
    )


def _file_ok(f: Any) -> bool:
    return (
        isinstance(f, dict)
        and isinstance(f.get("path"), str)
        and type(f.get("size")) is int
        and isinstance(f.get("sha256"), str)
    )


class BundleCheck:
    """Checks one bundle against ``registry``; :meth:`run` returns one report per
    exported range, one for the dock records, and one for the bundle as a whole."""

    def __init__(
        self,
        root: Path,
        registry: Registry | None,
        registry_trust: str,
        unit_keys: frozenset[str],
        keys: Keys,
        hasher: Hasher = hash_serially,
        archive_keys: frozenset[str] = frozenset(),
    ) -> None:
        self.root = root
        self.archive_keys = archive_keys
        self.registry = registry
        self.registry_trust = registry_trust
        self.unit_keys = unit_keys
        self.keys = keys
        self.hasher = hasher
        self.manifest = read_manifest(root)
        self.whole = DeviceReport(".", role="bundle", trust=registry_trust)
        self.dock_reports: dict[str, DeviceReport] = {}
        self.dock_records: dict[tuple[str, int], Record] = {}
        self.checked_media: set[str] = set()

    def _problem(self, report: DeviceReport, code: str, message: str, **where: Any) -> None:
        report.problems.append(Problem(code, message, report.device, **where))

    def run(self) -> list[DeviceReport]:
        self._check_registry()
        self._check_manifest_signature()
        self._read_dock_records()
        reports = [self._check_range(r) for r in self.manifest["ranges"]]
        self._check_files()
        self._note_withheld()
        return [self.whole, *reports, *self.dock_reports.values()]

    # -- registry, manifest

    def _check_registry(self) -> None:
        named = self.manifest.get("unit_key_fingerprint")
        actual = self.registry.fingerprint if self.registry is not None else None
        if actual is None:
            self._problem(
                self.whole,
                "registry_mismatch",
                "registry.json is not signed by a unit key",
                file=REGISTRY_NAME,
            )
            return
        if named != actual:
            self._problem(
                self.whole,
                "registry_mismatch",
                f"registry.json is signed by unit key {actual[:16]}..., the manifest names "
                f"{str(named)[:16]}...: the registry was swapped",
                file=REGISTRY_NAME,
            )
        try:
            text = read_regular(self.root / FINGERPRINT_NAME, 4096).decode("ascii").split()
        except (UnsafeFile, UnicodeDecodeError):
            text = []
        if not text or text[0] != actual:
            self._problem(
                self.whole,
                "registry_mismatch",
                f"{FINGERPRINT_NAME} does not name the unit key that signed registry.json",
                file=FINGERPRINT_NAME,
            )

    def _check_manifest_signature(self) -> None:
        signer, sig = self.manifest.get("signer"), self.manifest.get("sig")
        if signer is None and sig is None:
            if self.archive_keys:
                self._problem(
                    self.whole,
                    "bundle_mismatch",
                    "the manifest is not signed, but an archive key was named",
                    file=MANIFEST_NAME,
                )
                return
            self.whole.notes.append(
                f"{MANIFEST_NAME}: not signed (it is a table of contents; the records decide)"
            )
            return
        key = signer.get("public_key") if isinstance(signer, dict) else None
        try:
            message = manifest_signing_bytes(self.manifest)
        except CanonicalError:
            message = b""
        if not (
            isinstance(key, str) and HEX64.match(key) and isinstance(sig, str) and HEX128.match(sig)
        ) or not self.keys.verifies(key, message, sig):
            self._problem(
                self.whole,
                "bundle_mismatch",
                "the manifest's signature does not verify (the manifest was edited)",
                file=MANIFEST_NAME,
            )
            return
        fp = key_fingerprint(key)
        if self.archive_keys and fp not in self.archive_keys:
            self._problem(
                self.whole,
                "bundle_mismatch",
                f"the manifest is signed by key {fp[:16]}..., not by an archive key named "
                "with --archive-key",
                file=MANIFEST_NAME,
            )
            return
        named = "a named archive key" if self.archive_keys else "compare it with the archive's"
        self.whole.notes.append(
            f"{MANIFEST_NAME}: signed by {signer.get('id')!r}, key fingerprint "
            f"{fp[:16]}... ({named})"
        )

    # -- dock records

    def _dock_report(self, dock: str) -> DeviceReport:
        if dock not in self.dock_reports:
            self.dock_reports[dock] = DeviceReport(
                DOCK_RECORDS_NAME, dock, trust=self.registry_trust, role="dock"
            )
        return self.dock_reports[dock]

    def _read_dock_records(self) -> None:
        path = self.root / DOCK_RECORDS_NAME
        if not os.path.lexists(path):
            return
        try:
            scan = read_journal(path)
        except UnsafeFile as exc:
            self._problem(
                self.whole,
                "bundle_mismatch",
                f"{DOCK_RECORDS_NAME} {exc.reason}",
                file=DOCK_RECORDS_NAME,
            )
            return
        for number, raw in scan.lines:
            try:
                record = Record.from_bytes(raw or b"")
            except RecordError as exc:
                self._problem(
                    self.whole,
                    "malformed_record",
                    f"unreadable dock record: {exc}",
                    line=number,
                    file=DOCK_RECORDS_NAME,
                )
                continue
            report = self._dock_report(record.device)
            report.records += 1
            entry = self.registry.dock(record.device) if self.registry is not None else None
            where = dict(seq=record.seq, line=number, file=DOCK_RECORDS_NAME)
            if entry is None:
                self._problem(
                    report,
                    "unknown_device",
                    f"dock {record.device!r} is not in the registry",
                    **where,
                )
                continue
            if not self.keys.verifies(entry.public_key, record.signing_bytes(), record.sig):
                self._problem(
                    report,
                    "bad_signature",
                    f"dock {record.kind} record's signature does not verify",
                    **where,
                )
                continue
            why = entry.problem_at(record.utc)
            if why is not None:
                self._problem(report, "revoked_key", f"dock record signed when {why}", **where)
                continue
            self.dock_records[(record.device, record.seq)] = record

    # -- ranges

    def _check_range(self, r: dict[str, Any]) -> DeviceReport:
        device, first, end = r["device"], r["first_seq"], r["journal_last_seq"]
        report = DeviceReport(f"{DEVICES_DIR}/{device}", device, trust=self.registry_trust)
        name = r["journal"]
        entry = self.registry.get(device) if self.registry is not None else None
        if entry is None:
            self._problem(
                report, "unknown_device", f"device {device!r} is not in the registry", file=name
            )
        try:
            scan = read_journal(self.root / name)
        except UnsafeFile as exc:
            self._problem(report, "journal_missing", f"the range's journal {exc.reason}", file=name)
            return report
        records: list[tuple[int, Record, str]] = []
        for number, raw in scan.lines:
            try:
                record = Record.from_bytes(raw or b"")
            except RecordError as exc:
                self._problem(
                    report, "malformed_record", f"unreadable record: {exc}", line=number, file=name
                )
                continue
            records.append((number, record, sha256_hex(raw or b"")))
        if scan.torn is not None:
            self._problem(
                report, "torn_record", "the journal piece ends without a newline", file=name
            )
        report.records = len(records)
        good: dict[int, tuple[int, Record, str]] = {}
        expected, prev_hash, prev_signed = first, None, False
        for number, record, digest in records:
            where = dict(seq=record.seq, line=number, file=name)
            if record.device != device:
                self._problem(
                    report,
                    "foreign_device",
                    f"record of {record.device!r} in the journal of {device!r}",
                    **where,
                )
                continue
            signed = entry is not None and self.keys.verifies(
                entry.public_key, record.signing_bytes(), record.sig
            )
            if entry is not None and not signed:
                self._problem(
                    report,
                    "bad_signature",
                    f"{record.kind} record's signature does not verify (the record was altered)",
                    **where,
                )
            elif entry is not None and (why := entry.problem_at(record.utc)) is not None:
                self._problem(report, "revoked_key", f"record signed when {why}", **where)
                signed = False
            if record.seq > expected:
                missing = (
                    f"seq {expected}"
                    if record.seq == expected + 1
                    else f"seqs {expected}..{record.seq - 1}"
                )
                self._problem(
                    report,
                    "sequence_gap",
                    f"{missing} missing before this record: the range is not whole",
                    **where,
                )
            elif record.seq < expected:
                self._problem(
                    report,
                    "reordered",
                    f"seq {record.seq} comes where seq {expected} was due",
                    **where,
                )
            elif prev_signed and record.prev != prev_hash and signed:
                self._problem(
                    report,
                    "broken_chain",
                    f"prev {record.prev[:16]}... is not the hash of the record before",
                    **where,
                )
            expected = max(expected, record.seq + 1)
            prev_hash, prev_signed = digest, signed
            if signed:
                good[record.seq] = (number, record, digest)
        top = max((rec.seq for _, rec, _ in records), default=None)
        if top is None or top < end:
            ends = "is empty" if top is None else f"ends at seq {top}"
            self._problem(
                report,
                "tail_cut",
                f"the range's journal {ends}; the manifest says it runs to seq {end}",
                file=name,
            )
        if records:
            report.head = (records[-1][1].seq, records[-1][2])
        self._check_dock_head(report, r, good, name)
        self._check_media(report, r, good)
        return report

    def _check_dock_head(
        self, report: DeviceReport, r: dict[str, Any], good: dict, name: str
    ) -> None:
        head = r.get("dock_head")
        end = r["journal_last_seq"]
        if not isinstance(head, dict):
            self._problem(
                report,
                "head_mismatch",
                "no dock head: nothing shows the dock stored this chain",
                file=name,
            )
            return
        record = self.dock_records.get((head.get("dock"), head.get("dock_seq")))
        if (
            record is None
            or record.kind != "records_stored"
            or record.body.get("device") != r["device"]
        ):
            self._problem(
                report,
                "head_mismatch",
                f"the dock record {head.get('dock')!r} seq {head.get('dock_seq')!r} that stored this chain is absent or not valid",
                file=DOCK_RECORDS_NAME,
            )
            return
        at = good.get(end)
        if (
            record.body.get("upto_seq") != end
            or at is None
            or record.body.get("upto_hash") != at[2]
        ):
            self._problem(
                report,
                "head_mismatch",
                f"the dock stored seq {record.body.get('upto_seq')} with hash "
                f"{str(record.body.get('upto_hash'))[:16]}..., which is not this journal's record",
                seq=end,
                file=name,
            )
            return
        report.notes.append(
            f"{r['journal']}: chained up to seq {end}, the head dock {record.device} signed storing (dock seq {record.seq})"
        )

    def _check_media(self, report: DeviceReport, r: dict[str, Any], good: dict) -> None:
        device, first, last = r["device"], r["first_seq"], r["last_seq"]
        listed = {(m["device"], m["seq"]): m for m in self.manifest["media"]}
        jobs: list[tuple[Record, str, int, str, bool, int]] = []
        for seq, (number, record, _) in sorted(good.items()):
            if record.media is None:
                continue
            file, size, digest = record.media
            rel = f"{DEVICES_DIR}/{device}/{file}"
            m = listed.get((device, seq))
            where = dict(seq=seq, line=number, file=rel)
            if m is None or m["file"] != rel or m["sha256"] != digest:
                self._problem(
                    report,
                    "bundle_mismatch",
                    "the manifest does not list this media record as its record says",
                    **where,
                )
            in_range = first <= seq <= last
            if m is not None and m["status"] == "omitted" and in_range:
                report.notes.append(
                    f"{rel}: withheld: {m.get('reason', '')} (record {seq}, sha256 {digest[:16]}...)"
                )
                if not os.path.lexists(self.root / rel):
                    continue
            if m is not None and m["status"] == "outside_range" and in_range:
                self._problem(
                    report,
                    "bundle_mismatch",
                    "the manifest calls a media record inside the range outside it",
                    **where,
                )
            jobs.append((record, rel, size, digest, in_range, number))
        results = self.hasher([(self.root / rel, size) for _, rel, size, _, _, _ in jobs])
        for (record, rel, size, digest, in_range, number), found in zip(jobs, results, strict=True):
            where = dict(seq=record.seq, line=number, file=rel)
            self.checked_media.add(rel)
            if isinstance(found, str) and found.startswith("is missing"):
                if in_range:
                    self._problem(
                        report,
                        "media_missing",
                        f"{record.kind} file is missing and not listed as withheld",
                        **where,
                    )
                continue
            if isinstance(found, str):
                self._problem(report, "media_changed", f"{record.kind} file {found}", **where)
            elif found[0] < size:
                self._problem(
                    report,
                    "media_truncated",
                    f"{record.kind} file is {found[0]} bytes, the record says {size}",
                    **where,
                )
            elif found[0] > size:
                self._problem(
                    report,
                    "media_changed",
                    f"{record.kind} file is {found[0]} bytes, the record says {size}",
                    **where,
                )
            elif found[1] != digest:
                self._problem(
                    report,
                    "media_changed",
                    f"{record.kind} file's sha256 is {str(found[1])[:16]}..., the record says {digest[:16]}...",
                    **where,
                )
            else:
                report.media_files += 1
                report.media_bytes += size
        for m in self.manifest["media"]:
            if (
                m["device"] == device
                and first <= m["seq"] <= r["journal_last_seq"]
                and m["seq"] not in good
            ):
                self._problem(
                    report,
                    "bundle_mismatch",
                    f"the manifest lists {m['file']}, which no trusted record of the range binds",
                    seq=m["seq"],
                )

    # -- other files

    def _check_files(self) -> None:
        listed = {f["path"]: f for f in self.manifest.get("files", [])}
        for rel, f in listed.items():
            found = self.hasher([(self.root / rel, f["size"])])[0]
            if isinstance(found, str) or found != (f["size"], f["sha256"]):
                why = found if isinstance(found, str) else "differs from the manifest"
                self._problem(self.whole, "bundle_mismatch", f"{rel} {why}", file=rel)
        for rel in _walk(self.root, ""):
            if rel == MANIFEST_NAME or rel in listed or rel in self.checked_media:
                continue
            code = "extra_media" if "/media/" in rel else "bundle_mismatch"
            self._problem(
                self.whole,
                code,
                "file in the bundle that neither a record nor the manifest names",
                file=rel,
            )

    def _note_withheld(self) -> None:
        withheld = sum(1 for m in self.manifest["media"] if m["status"] == "omitted")
        if withheld:
            self.whole.notes.append(
                f"{withheld} media file(s) withheld as confidential, listed in the manifest and the notes"
            )


def _walk(root: Path, base: str):
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return
    for name in names:
        rel = f"{base}{name}"
        if is_real_dir(root / name):
            yield from _walk(root / name, rel + "/")
        else:
            yield rel
