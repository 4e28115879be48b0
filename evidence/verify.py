"""Check a device's storage folder, or a dock store of them, and list every problem found.

Pure checking logic: no printing, no exit codes (``evidence.verify_cli`` does that). Every
problem has a stable ``code`` (see :data:`PROBLEM_CODES` and ``docs/journal-format.md``),
a message, and where known the device, sequence number, journal line and file. This
module knows the kinds of path (device folder, dock store; an export bundle later);
:mod:`evidence.verify_folder` checks each device folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exc import EvidenceError
from .identity import DEVICE_ID_PATTERN
from .journal import JOURNAL_NAME
from .record import HEX64
from .registry import Registry
from .verify_folder import (
    PROBLEM_CODES,
    CannotCheck,
    DeviceReport,
    FolderCheck,
    Keys,
    Problem,
    read_identity,
)

__all__ = ["PROBLEM_CODES", "CannotCheck", "DeviceReport", "Problem", "Report", "Target",
           "detect", "parse_expect_head", "read_identity", "verify_path"]

_log = logging.getLogger(__name__)

REGISTRY_NAME = "registry.json"
STORE_INDEX = "index.sqlite"


@dataclass
class Report:
    path: str
    kind: str
    registry: str | None
    devices: list[DeviceReport] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for d in self.devices for p in d.problems]

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "registry": self.registry,
            "intact": self.intact, "exit": 0 if self.intact else 1,
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


def _device_target(path: Path) -> Target | None:
    if (path / JOURNAL_NAME).exists():
        return Target("device", path, ((".", path, None),))
    return None


def _store_target(path: Path) -> Target | None:
    folders = []
    for unit in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dev in sorted(p for p in unit.iterdir() if p.is_dir() and not p.name.startswith(".")):
            folders.append((f"{unit.name}/{dev.name}", dev, dev.name))
    has_journals = any((f / JOURNAL_NAME).exists() for _, f, _ in folders)
    if (path / STORE_INDEX).exists() or has_journals:
        return Target("dock_store", path, tuple(folders))
    return None


# Order matters: the first detector that recognises the path wins. An export bundle
# detector goes here when bundles exist; it returns the bundle's device folders.
DETECTORS = (_device_target, _store_target)


def detect(path: str | os.PathLike) -> Target:
    path = Path(path)
    if not path.exists():
        raise CannotCheck(f"{path}: no such file or folder")
    if not path.is_dir():
        raise CannotCheck(f"{path}: not a device folder, dock store or export bundle")
    try:
        for detector in DETECTORS:
            target = detector(path)
            if target is not None:
                return target
    except OSError as exc:
        raise CannotCheck(f"{path}: cannot read: {exc.strerror or exc}") from None
    raise CannotCheck(
        f"{path}: not a device folder (no {JOURNAL_NAME}), dock store (no {STORE_INDEX} "
        "or device folders) or export bundle")


def parse_expect_head(text: str) -> tuple[str | None, int, str]:
    """``[DEVICE:]SEQ:HASH`` -> ``(device or None, seq, hash)``; raises ValueError."""
    parts = text.split(":")
    device = parts.pop(0) if len(parts) == 3 else None
    if len(parts) != 2 or not parts[0].isdigit() or not HEX64.match(parts[1]) or (
            device is not None and not DEVICE_ID_PATTERN.match(device)):
        raise ValueError(f"--expect-head {text!r}: use SEQ:HASH or DEVICE:SEQ:HASH "
                         "(HASH is 64 lowercase hex digits)")
    return device, int(parts[0]), parts[1]


def verify_path(
    path: str | os.PathLike,
    *,
    registry_path: str | os.PathLike | None = None,
    expect_heads: list[tuple[str | None, int, str]] = (),
) -> Report:
    """Check everything under ``path``; raise :class:`CannotCheck` if it cannot be checked."""
    target = detect(path)
    if registry_path is None and (target.root / REGISTRY_NAME).is_file():
        registry_path = target.root / REGISTRY_NAME
    registry = None
    if registry_path is not None:
        try:
            registry = Registry.load(registry_path)
        except EvidenceError as exc:
            raise CannotCheck(str(exc)) from None
    heads: dict[str | None, tuple[int, str]] = {}
    for device, seq, digest in expect_heads:
        heads[device] = (seq, digest)
    if None in heads and len(target.folders) != 1:
        raise CannotCheck("--expect-head needs DEVICE:SEQ:HASH when the path holds "
                          f"{len(target.folders)} device folders")
    report = Report(str(path), target.kind, None if registry_path is None else str(registry_path))
    keys = Keys()
    for label, folder, device in target.folders:
        result = FolderCheck(folder, label, registry, device, heads, keys).run()
        _log.debug("%s: device %s, %d records, %d media files, %d problems", label,
                  result.device, result.records, result.media_files, len(result.problems))
        report.devices.append(result)
    named = {d.device for d in report.devices}
    for device in heads:
        if device is not None and device not in named:
            raise CannotCheck(f"--expect-head names device {device!r}, which is not here")
    if not report.devices:
        raise CannotCheck(f"{path}: the {target.kind.replace('_', ' ')} holds no device folders")
    return report
