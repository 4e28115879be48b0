"""Check a device's storage folder, or a dock store of them, and list every problem found.

Pure checking logic: no printing, no exit codes (``evidence.verify_cli`` does that). Every
problem has a stable ``code`` (see :data:`PROBLEM_CODES` and ``docs/journal-format.md``),
a message, and where known the device, sequence number, journal line and file. This
module knows the kinds of path (device folder, dock store) and where trust comes from;
:mod:`evidence.verify_folder` checks each folder, :mod:`evidence.verify_store` a store.

Trust comes only from what the user names: a registry given explicitly, or a registry
(found anywhere, the checked path included) signed by a unit key whose fingerprint the
user named. Keys found inside the evidence are used to check it, but the verdict then
says it is not trusted, and it never counts as intact.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exc import EvidenceError
from .identity import DEVICE_ID_PATTERN
from .journal import JOURNAL_NAME
from .record import HEX64
from .registry import Registry, require_trusted
from .safefile import is_real_dir
from .unitkey import show_fingerprint
from .verify_folder import (
    PROBLEM_CODES,
    CannotCheck,
    DeviceReport,
    FolderCheck,
    Keys,
    Problem,
    hash_regular,
    read_identity,
)
from .verify_store import StoreCheck, device_folders

__all__ = [
    "PROBLEM_CODES",
    "CannotCheck",
    "DeviceReport",
    "Problem",
    "Report",
    "Target",
    "detect",
    "parse_expect_head",
    "read_identity",
    "verify_path",
]

_log = logging.getLogger(__name__)

REGISTRY_NAME = "registry.json"
STORE_INDEX = "index.sqlite"
_SEQ = re.compile(r"\A[0-9]{1,19}\Z", re.ASCII)


@dataclass
class Report:
    path: str
    kind: str
    registry: str | None
    trust: str = ""  # in words: what the signatures were checked against, and why
    trusted: bool = False  # the keys came from what the user named, not from the evidence
    devices: list[DeviceReport] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for d in self.devices for p in d.problems]

    @property
    def intact(self) -> bool:
        """No problem found *and* checked against keys the user named."""
        return not self.problems and self.trusted

    @property
    def exit_status(self) -> int:
        return 0 if self.intact else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "registry": self.registry,
            "trust": self.trust,
            "trusted": self.trusted,
            "intact": self.intact,
            "exit": self.exit_status,
            "problem_count": len(self.problems),
            "devices": [d.to_dict() for d in self.devices],
        }


# --------------------------------------------------------------------------- path kinds


@dataclass(frozen=True)
class Target:
    """What a path is and which device folders it holds: ``(label, folder, device)``."""

    kind: str
    root: Path
    folders: tuple[tuple[str, Path, str | None], ...]


AUDIT_DIR = "audit"  # an archive's audit log: <archive>/audit/{journal.jsonl,archive.json}


def _audit_target(path: Path) -> Target | None:
    """An archive's folder, or its ``audit/`` folder: checked against the archive's key
    (the registry's ``archives``), with the archive's copy of the registry beside it."""
    from .verify_folder import ARCHIVE_MARKER

    if os.path.lexists(path / JOURNAL_NAME) and os.path.lexists(path / ARCHIVE_MARKER):
        path = path.parent if path.name == AUDIT_DIR else path
        if not os.path.lexists(path / AUDIT_DIR / ARCHIVE_MARKER):
            return Target("audit_log", path, ((".", path, None),))
    audit = path / AUDIT_DIR
    if is_real_dir(audit) and os.path.lexists(audit / ARCHIVE_MARKER):
        return Target("audit_log", path, ((AUDIT_DIR, audit, None),))
    return None


def _device_target(path: Path) -> Target | None:
    if os.path.lexists(path / JOURNAL_NAME):
        return Target("device", path, ((".", path, None),))
    return None


def _store_target(path: Path) -> Target | None:
    """A dock store has its index or its dock journals. A folder that merely holds device
    folders two levels down (``/tmp``, a folder of simulated shifts) is not one: checking
    it as a store would report every other subfolder as a missing journal."""
    from .dockjournal import DOCK_JOURNALS_DIR

    folders = tuple(device_folders(path))
    if os.path.lexists(path / STORE_INDEX) or is_real_dir(path / DOCK_JOURNALS_DIR):
        return Target("dock_store", path, folders)
    inside = [label for label, f, _ in folders if os.path.lexists(f / JOURNAL_NAME)]
    if inside:
        raise CannotCheck(
            f"{path}: not a device folder (no {JOURNAL_NAME}) or a dock store (no {STORE_INDEX} "
            f"or {DOCK_JOURNALS_DIR}/); it holds {len(inside)} device "
            f"folder{'s' if len(inside) != 1 else ''}: check each, e.g. "
            f"bodycam-verify {path / inside[0]}"
        )
    return None


def _bundle_target(path: Path) -> Target | None:
    """A court bundle (``archive.bundle``): its manifest at the root, no journal there."""
    from .verify_bundle import DEVICES_DIR, is_bundle

    if not is_bundle(path):
        return None
    base = path / DEVICES_DIR
    names = sorted(os.listdir(base)) if is_real_dir(base) else []
    return Target("bundle", path, tuple((f"{DEVICES_DIR}/{n}", base / n, n) for n in names))


# Order matters: the first detector that recognises the path wins.
DETECTORS = (_audit_target, _device_target, _bundle_target, _store_target)


def detect(path: str | os.PathLike) -> Target:
    path = Path(path)
    if not os.path.lexists(path):
        raise CannotCheck(f"{path}: no such file or folder")
    if not is_real_dir(path):
        raise CannotCheck(f"{path}: not a device folder or a dock store (not a folder)")
    try:
        for detector in DETECTORS:
            target = detector(path)
            if target is not None:
                return target
    except OSError as exc:
        raise CannotCheck(f"{path}: cannot read: {exc.strerror or exc}") from None
    raise CannotCheck(
        f"{path}: not a device folder (no {JOURNAL_NAME}) or a dock store (no {STORE_INDEX} "
        "or dock journal)"
    )


def parse_expect_head(text: str) -> tuple[str | None, int, str]:
    """``[DEVICE:]SEQ:HASH`` -> ``(device or None, seq, hash)``; raises ValueError."""
    parts = text.split(":")
    device = parts.pop(0) if len(parts) == 3 else None
    if (
        len(parts) != 2
        or not _SEQ.match(parts[0])
        or not HEX64.match(parts[1])
        or (device is not None and not DEVICE_ID_PATTERN.match(device))
    ):
        raise ValueError(
            f"--expect-head {text!r}: use SEQ:HASH or DEVICE:SEQ:HASH "
            "(HASH is 64 lowercase hex digits)"
        )
    return device, int(parts[0]), parts[1]


# --------------------------------------------------------------------------- trust


def _inside(candidate: Path, root: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def choose_registry(
    target: Target, registry_path: str | os.PathLike | None, unit_keys: frozenset[str]
) -> tuple[Registry | None, str, bool, str | None]:
    """``(registry, label for reports, trusted, where it came from in words)``."""
    if registry_path is not None:
        registry = _load(registry_path)
        if unit_keys and registry.signature is not None:
            try:
                require_trusted(registry, unit_keys, str(registry_path))
            except EvidenceError as exc:
                raise CannotCheck(str(exc)) from None
        inside = _inside(Path(registry_path), target.root)
        how = f"the registry given with --registry ({registry_path})" + (
            ", which lies inside the checked path" if inside else ""
        )
        return registry, "registry", True, how
    found = target.root / REGISTRY_NAME
    if not os.path.lexists(found):
        if unit_keys:
            raise CannotCheck(
                f"{target.root}: no {REGISTRY_NAME} here to check against the "
                "named unit key; give the registry with --registry FILE"
            )
        return None, "", False, None
    registry = _load(found)
    if registry.signature is not None and registry.fingerprint in unit_keys:
        how = (
            f"{found}, signed by unit key {show_fingerprint(registry.fingerprint)} "
            f"({registry.signature.unit}, edition {registry.signature.serial})"
        )
        return registry, "registry", True, how
    if registry.signature is None:
        why = "it is not signed by a unit key"
    else:
        why = (
            f"it is signed by unit key {show_fingerprint(registry.fingerprint)}, which "
            "was not named"
        )
    return registry, "untrusted registry", False, f"{found} ({why})"


def _load(path: str | os.PathLike) -> Registry:
    try:
        return Registry.load(path)
    except EvidenceError as exc:
        raise CannotCheck(str(exc)) from None


def _trust_words(
    registry: Registry | None, trusted: bool, where: str | None, reports: list[DeviceReport]
) -> str:
    if trusted:
        return f"keys from {where}"
    if registry is not None:
        return (
            f"keys from {where}, found inside the checked path: the evidence vouches for "
            "itself; name the unit key (--unit-key) or give a registry (--registry)"
        )
    if any(d.trust == "self-declared key" for d in reports):
        return (
            "keys from identity.json inside the checked path: the evidence vouches for "
            "itself; name the unit key (--unit-key) or give a registry (--registry)"
        )
    return "no keys at all: signatures were not checked"


# --------------------------------------------------------------------------- checking


def verify_path(
    path: str | os.PathLike,
    *,
    registry_path: str | os.PathLike | None = None,
    unit_keys: frozenset[str] | set[str] = frozenset(),
    expect_heads: list[tuple[str | None, int, str]] = (),
    workers: int | None = None,
    archive_keys: frozenset[str] = frozenset(),
) -> Report:
    """Check everything under ``path``; raise :class:`CannotCheck` if it cannot be checked.

    ``workers`` threads hash media (default: one per CPU); ``unit_keys`` are the
    fingerprints of unit keys whose signed registries are trusted; ``archive_keys`` those
    of which a court bundle's manifest must be signed by one (none named: any signature
    that verifies, reported with its key's fingerprint).
    """
    target = detect(path)
    registry, label, trusted, where = choose_registry(target, registry_path, frozenset(unit_keys))
    heads: dict[str | None, tuple[int, str]] = {}
    for device, seq, digest in expect_heads:
        heads[device] = (seq, digest)
    if None in heads and len(target.folders) != 1:
        raise CannotCheck(
            "--expect-head needs DEVICE:SEQ:HASH when the path holds "
            f"{len(target.folders)} device folders"
        )
    used = (
        registry_path
        if registry_path is not None
        else (target.root / REGISTRY_NAME if registry is not None else None)
    )
    report = Report(str(path), target.kind, None if used is None else str(used))
    keys = Keys()
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-hash") as pool:

        def hasher(jobs):
            return list(pool.map(lambda job: hash_regular(*job), jobs))

        if target.kind == "dock_store":
            report.devices = StoreCheck(target.root, registry, label, heads, keys, hasher).run()
        elif target.kind == "audit_log":
            for lbl, folder, device in target.folders:
                check = FolderCheck(
                    folder, lbl, registry, device, heads, keys, registry_trust=label, role="archive"
                )
                report.devices.append(check.run())
        elif target.kind == "bundle":
            from .verify_bundle import BundleCheck

            if heads:
                raise CannotCheck(
                    "--expect-head is not used for a court bundle: each range is checked "
                    "against the head its dock signed, which the bundle holds"
                )
            report.devices = BundleCheck(
                target.root, registry, label, frozenset(unit_keys), keys, hasher, archive_keys
            ).run()
        else:
            for lbl, folder, device in target.folders:
                report.devices.append(
                    FolderCheck(
                        folder,
                        lbl,
                        registry,
                        device,
                        heads,
                        keys,
                        registry_trust=label,
                        hasher=hasher,
                    ).run()
                )
    for result in report.devices:
        _log.debug(
            "%s: %s %s, %d records, %d media files, %d problems",
            result.folder,
            result.role,
            result.device,
            result.records,
            result.media_files,
            len(result.problems),
        )
    report.trusted = trusted
    report.trust = _trust_words(registry, trusted, where, report.devices)
    named = {d.device for d in report.devices}
    for device in heads:
        if device is not None and device not in named:
            raise CannotCheck(f"--expect-head names {device!r}, which is not here")
    if not any(d.role == "device" for d in report.devices) and target.kind == "device":
        raise CannotCheck(f"{path}: the {target.kind.replace('_', ' ')} holds no device folders")
    return report
