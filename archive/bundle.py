"""The court bundle: a case's original recordings with everything needed to check them.

Why it holds what it holds (``docs/archive-export.md``): an expert with ``openssl`` alone,
or ``bodycam-verify BUNDLE`` on any PC, must be able to show that the media are the
camera's own (each file's SHA-256 is in a record the camera signed), that nothing inside
an exported range is missing (the records of each range are a contiguous piece of the
camera's chain, first to last), that the chain is the one the dock received (it runs up to
a head the dock signed in its own journal) and whose keys to trust (the unit-signed
registry, and the unit key's fingerprint to compare with the one the head of unit gives).

The originals are copied byte for byte; records are the store's journal lines unchanged.
The bundle is built in a temporary folder beside ``out_dir``, every file and folder
fsynced, then renamed into place: a crash leaves no half bundle under the final name.
Confidential items the caller marks are left out, and the manifest and the notes list
each omission with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence.clock import SystemClock, format_utc
from evidence.exc import EvidenceError, RecordError
from evidence.journal import JOURNAL_NAME, scan_journal
from evidence.media import hash_file
from evidence.record import Record
from evidence.registry import Registry, require_trusted
from evidence.storage import fsync_dir
from evidence.unitkey import show_fingerprint
from evidence.verify_bundle import (
    BUNDLE_FORMAT,
    DEVICES_DIR,
    DOCK_RECORDS_NAME,
    FINGERPRINT_NAME,
    MANIFEST_NAME,
    REGISTRY_NAME,
    manifest_signing_bytes,
)
from evidence.verify_store import dock_journal_folders

from .notes import write_notes

__all__ = ["BundleError", "BundleResult", "RecordRange", "build_bundle"]

COPY_CHUNK = 1 << 20


class BundleError(EvidenceError):
    """The bundle cannot be built as asked (unknown device, range outside the journal...)."""


@dataclass(frozen=True)
class RecordRange:
    """Records ``first_seq``..``last_seq`` (inclusive) of ``device``'s journal."""

    device: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class BundleResult:
    path: Path
    manifest: dict[str, Any]
    media_files: int
    media_bytes: int
    omitted: int


Ref = RecordRange | tuple[str, int, int] | Record


def _ranges(refs: Iterable[Ref]) -> dict[str, list[tuple[int, int]]]:
    """Ranges per device, overlapping or adjacent ones merged, in order."""
    by_device: dict[str, list[tuple[int, int]]] = {}
    for ref in refs:
        if isinstance(ref, Record):
            device, first, last = ref.device, ref.seq, ref.seq
        elif isinstance(ref, RecordRange):
            device, first, last = ref.device, ref.first_seq, ref.last_seq
        else:
            device, first, last = ref
        if type(first) is not int or type(last) is not int or not 0 <= first <= last:
            raise BundleError(f"{device}: bad range {first!r}..{last!r}")
        by_device.setdefault(device, []).append((first, last))
    merged: dict[str, list[tuple[int, int]]] = {}
    for device, spans in by_device.items():
        out: list[tuple[int, int]] = []
        for first, last in sorted(spans):
            if out and first <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((first, last))
        merged[device] = out
    if not merged:
        raise BundleError("no recordings given: a bundle needs at least one range")
    return merged


def _device_folder(store: Path, device: str) -> tuple[str, Path]:
    for unit in sorted(os.listdir(store)):
        if unit.startswith((".", "_")):
            continue
        folder = store / unit / device
        if (folder / JOURNAL_NAME).is_file():
            return unit, folder
    raise BundleError(f"{store}: no device {device!r} in this store")


def _journal(path: Path) -> dict[int, tuple[bytes, Record]]:
    """The store's journal lines by seq (the store holds a verified chain; a line that
    does not parse is left out and shows as a gap, which building then refuses)."""
    found: dict[int, tuple[bytes, Record]] = {}
    for _, line in scan_journal(path).lines:
        try:
            record = Record.from_bytes(line)
        except RecordError:
            continue
        found.setdefault(record.seq, (line, record))
    return found


@dataclass
class _DockLines:
    """Every trusted-looking record of the store's dock journals, by (dock, seq)."""

    records: dict[tuple[str, int], tuple[bytes, Record]]

    @classmethod
    def read(cls, store: Path) -> _DockLines:
        records: dict[tuple[str, int], tuple[bytes, Record]] = {}
        for _, folder, dock in dock_journal_folders(store):
            path = folder / JOURNAL_NAME
            if path.is_file():
                for seq, (line, record) in _journal(path).items():
                    records[(dock, seq)] = (line, record)
        return cls(records)

    def head_covering(self, device: str, seq: int) -> tuple[bytes, Record] | None:
        """The dock's ``records_stored`` record with the lowest ``upto_seq`` >= ``seq``."""
        best = None
        for line, record in self.records.values():
            b = record.body
            if (
                record.kind == "records_stored"
                and b.get("device") == device
                and type(b.get("upto_seq")) is int
                and b["upto_seq"] >= seq
                and (best is None or b["upto_seq"] < best[1].body["upto_seq"])
            ):
                best = (line, record)
        return best

    def stored(self, device: str, file: str, sha256: str) -> tuple[bytes, Record] | None:
        for line, record in self.records.values():
            b = record.body
            if (
                record.kind == "stored"
                and b.get("device") == device
                and b.get("file") == file
                and b.get("sha256") == sha256
            ):
                return line, record
        return None


def _copy_durable(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` byte for byte, fsync it; ``(size, sha256)`` of what was written."""
    import hashlib

    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb", buffering=0) as fout:
        while chunk := fin.read(COPY_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        os.fsync(fout.fileno())
    return size, digest.hexdigest()


def _decrypt_durable(source: Any, dst: Path) -> tuple[int, str]:
    """A sealed recording's plaintext into ``dst`` (the source checks the camera's hash
    while it decrypts), fsynced; ``(size, sha256)``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "xb") as fout:
        got = source.copy_to(fout)
        fout.flush()
        os.fsync(fout.fileno())
    return got


def _write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb", buffering=0) as f:
        f.write(data)
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, _files in os.walk(root, topdown=False):
        fsync_dir(folder)


def build_bundle(
    store_root: str | os.PathLike,
    refs: Iterable[Ref],
    out_dir: str | os.PathLike,
    *,
    omit: Mapping[tuple[str, int], str] | None = None,
    title: str = "",
    unit_keys: frozenset[str] = frozenset(),
    signer: Any = None,
    clock: Any = None,
    sealed: Any = None,
) -> BundleResult:
    """Build the court bundle of ``refs`` from the dock store at ``store_root`` into the new
    folder ``out_dir`` (which must not exist).

    ``refs``: :class:`RecordRange`, ``(device, first_seq, last_seq)`` or media
    :class:`~evidence.record.Record` objects. ``omit``: ``(device, seq)`` of media records
    to leave out, with the reason to list. ``unit_keys``: if given, the store's registry
    must be signed by one of them. ``signer``: an identity (the archive's key) that signs
    the manifest, so that what was exported and what was withheld is attributable.
    ``sealed``: ``(unit, record) -> source or None`` for media the store keeps only sealed
    (:meth:`archive.sealing.Sealing.sealed_source`, after the export's access check): the
    source decrypts into the bundle (``copy_to``) and checks the camera's hash.
    """
    store = Path(store_root)
    out = Path(out_dir)
    if os.path.lexists(out):
        raise BundleError(f"{out}: already exists; a bundle is written into a new folder")
    if not (store / REGISTRY_NAME).is_file():
        raise BundleError(f"{store}: no {REGISTRY_NAME}: not a dock store")
    registry_bytes = (store / REGISTRY_NAME).read_bytes()
    registry = Registry.from_bytes(registry_bytes, str(store / REGISTRY_NAME))
    if unit_keys:
        require_trusted(registry, unit_keys, str(store / REGISTRY_NAME))
    if registry.fingerprint is None:
        raise BundleError(f"{store / REGISTRY_NAME}: not signed by a unit key")
    omit = dict(omit or {})
    ranges = _ranges(refs)
    clock = clock or SystemClock()
    docks = _DockLines.read(store)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _fill(store, tmp, ranges, omit, registry, registry_bytes, docks, sealed)
        manifest["created_utc"] = format_utc(clock.time_ns())
        manifest["title"] = title
        unknown = sorted(set(omit) - {(m["device"], m["seq"]) for m in manifest["media"]})
        if unknown:
            raise BundleError(
                f"asked to omit {unknown[0][0]} seq {unknown[0][1]}, which is no media "
                "record of the bundle"
            )
        write_notes(tmp, manifest)
        manifest["files"] = _file_list(tmp)
        if signer is not None:
            manifest["signer"] = {"id": signer.device_id, "public_key": signer.public_key_hex}
            manifest["sig"] = signer.sign(manifest_signing_bytes(manifest)).hex()
        text = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=1) + "\n"
        _write_durable(tmp / MANIFEST_NAME, text.encode("utf-8"))
        os.chmod(tmp, 0o755)
        _fsync_tree(tmp)
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    included = [m for m in manifest["media"] if m["status"] == "included"]
    return BundleResult(
        out,
        manifest,
        len(included),
        sum(m["size"] for m in included),
        sum(1 for m in manifest["media"] if m["status"] == "omitted"),
    )


def _fill(
    store: Path,
    tmp: Path,
    ranges: dict[str, list[tuple[int, int]]],
    omit: dict[tuple[str, int], str],
    registry: Registry,
    registry_bytes: bytes,
    docks: _DockLines,
    sealed: Any = None,
) -> dict[str, Any]:
    _write_durable(tmp / REGISTRY_NAME, registry_bytes)
    fp = registry.fingerprint or ""
    _write_durable(
        tmp / FINGERPRINT_NAME,
        f"{fp}\n{show_fingerprint(fp)}\n".encode(),
    )
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "unit": registry.signature.unit if registry.signature else "",
        "unit_key_fingerprint": fp,
        "registry_serial": registry.signature.serial if registry.signature else 0,
        "ranges": [],
        "media": [],
    }
    dock_lines: dict[tuple[str, int], bytes] = {}
    media: dict[tuple[str, int], dict[str, Any]] = {}
    for device, spans in sorted(ranges.items()):
        if registry.get(device) is None:
            raise BundleError(f"{device}: not in the store's registry")
        unit, folder = _device_folder(store, device)
        journal = _journal(folder / JOURNAL_NAME)
        for first, last in spans:
            head = docks.head_covering(device, last)
            end = head[1].body["upto_seq"] if head is not None else last
            missing = [s for s in range(first, end + 1) if s not in journal]
            if missing:
                raise BundleError(
                    f"{device}: the store's journal lacks seq {missing[0]} (range "
                    f"{first}..{last}); ranges must lie within the stored journal"
                )
            name = f"{DEVICES_DIR}/{device}/journal-{first}-{last}.jsonl"
            _write_durable(
                tmp / name, b"".join(journal[s][0] + b"\n" for s in range(first, end + 1))
            )
            entry: dict[str, Any] = {
                "device": device,
                "unit": unit,
                "first_seq": first,
                "last_seq": last,
                "journal": name,
                "journal_last_seq": end,
                "dock_head": None,
            }
            if head is not None:
                line, rec = head
                dock_lines[(rec.device, rec.seq)] = line
                entry["dock_head"] = {
                    "dock": rec.device,
                    "dock_seq": rec.seq,
                    "upto_seq": rec.body["upto_seq"],
                    "upto_hash": rec.body["upto_hash"],
                }
            manifest["ranges"].append(entry)
            for seq in range(first, end + 1):
                record = journal[seq][1]
                known = media.get((device, seq))
                # a record in two journal pieces (one range runs on to the dock's head
                # past the start of the next) is listed, and copied, once
                if record.media is None or (known and known["status"] != "outside_range"):
                    continue
                if known and seq > last:
                    continue
                media[(device, seq)] = _media(
                    store, tmp, unit, folder, record, seq <= last, omit, docks, dock_lines, sealed
                )
    manifest["media"] = [media[k] for k in sorted(media)]
    if dock_lines:
        data = b"".join(dock_lines[k] + b"\n" for k in sorted(dock_lines))
        _write_durable(tmp / DOCK_RECORDS_NAME, data)
    return manifest


def _media(
    store: Path,
    tmp: Path,
    unit: str,
    folder: Path,
    record: Record,
    in_range: bool,
    omit: dict[tuple[str, int], str],
    docks: _DockLines,
    dock_lines: dict[tuple[str, int], bytes],
    sealed: Any = None,
) -> dict[str, Any]:
    file, size, sha256 = record.media  # type: ignore[misc]
    rel = f"{DEVICES_DIR}/{record.device}/{file}"
    entry: dict[str, Any] = {
        "device": record.device,
        "seq": record.seq,
        "kind": record.kind,
        "file": rel,
        "size": size,
        "sha256": sha256,
        "dock_stored": None,
    }
    reason = omit.get((record.device, record.seq))
    if not in_range:
        entry["status"] = "outside_range"
        entry["reason"] = (
            "after the exported range: its record is here only to reach the dock's head"
        )
        return entry
    if reason is not None:
        entry["status"] = "omitted"
        entry["reason"] = reason
        return entry
    src = folder / file
    source = sealed(unit, record) if sealed is not None and not src.is_file() else None
    if source is not None:
        got = _decrypt_durable(source, tmp / rel)
    elif not src.is_file():
        raise BundleError(f"{unit}/{record.device}/{file}: missing from the store")
    else:
        got = _copy_durable(src, tmp / rel)
    if got != (size, sha256):
        raise BundleError(
            f"{unit}/{record.device}/{file}: the store's copy does not match its record "
            f"({got[0]} bytes, sha256 {got[1][:16]}...): run bodycam-verify on the store"
        )
    entry["status"] = "included"
    stored = docks.stored(record.device, file, sha256)
    if stored is not None:
        line, rec = stored
        dock_lines[(rec.device, rec.seq)] = line
        entry["dock_stored"] = {"dock": rec.device, "dock_seq": rec.seq}
    return entry


def _file_list(root: Path) -> list[dict[str, Any]]:
    """Every file of the bundle but the manifest and the media (which their records
    bind), with size and SHA-256: what the manifest vouches for."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_NAME or "/media/" in rel:
            continue
        size, digest = hash_file(path)
        files.append({"path": rel, "size": size, "sha256": digest})
    return files


def media_paths(manifest: Mapping[str, Any]) -> Sequence[str]:
    """The bundle paths of the media the bundle holds."""
    return [m["file"] for m in manifest["media"] if m["status"] == "included"]
