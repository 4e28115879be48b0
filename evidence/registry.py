"""The device registry: device id -> public key, officer and unit.

Kept by the dock and given to verifiers and supervisors. A JSON file, replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .exc import RegistryError
from .identity import check_device_id
from .storage import atomic_write_bytes

REGISTRY_FORMAT = "bodycam-registry-v1"
PUBLIC_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    public_key: str
    officer: str = ""
    unit: str = ""


class Registry:
    """Registered devices. ``get`` returns None for a device that is not registered."""

    def __init__(self, entries: dict[str, DeviceEntry] | None = None) -> None:
        self._entries: dict[str, DeviceEntry] = dict(entries or {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Registry:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"{path}: no such registry file") from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: not a readable registry ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
            raise RegistryError(f"{path}: not a {REGISTRY_FORMAT} file")
        entries = {}
        devices = data.get("devices")
        if not isinstance(devices, dict):
            raise RegistryError(f"{path}: 'devices' must be an object")
        for device_id, entry in devices.items():
            try:
                check_device_id(device_id)
                if not PUBLIC_KEY.match(entry["public_key"]):
                    raise ValueError("bad public key")
                entries[device_id] = DeviceEntry(
                    device_id, entry["public_key"], str(entry.get("officer", "")),
                    str(entry.get("unit", "")),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise RegistryError(f"{path}: device {device_id!r}: {exc}") from None
        return cls(entries)

    @classmethod
    def load_or_empty(cls, path: str | os.PathLike) -> Registry:
        return cls.load(path) if Path(path).exists() else cls()

    def save(self, path: str | os.PathLike) -> None:
        devices = {}
        for device_id, entry in sorted(self._entries.items()):
            d = asdict(entry)
            del d["device_id"]
            devices[device_id] = d
        text = json.dumps({"format": REGISTRY_FORMAT, "devices": devices}, indent=2)
        atomic_write_bytes(path, text.encode() + b"\n")

    def add(self, entry: DeviceEntry, *, replace: bool = False) -> None:
        """Register a device; refuse to change a registered key unless ``replace``."""
        check_device_id(entry.device_id)
        if not PUBLIC_KEY.match(entry.public_key):
            raise RegistryError(f"{entry.device_id}: public key must be 64 hex digits")
        old = self._entries.get(entry.device_id)
        if old and old.public_key != entry.public_key and not replace:
            raise RegistryError(
                f"{entry.device_id}: already registered with another key; not replacing it"
            )
        self._entries[entry.device_id] = entry

    def get(self, device_id: str) -> DeviceEntry | None:
        return self._entries.get(device_id)

    def find_by_key(self, public_key: str) -> DeviceEntry | None:
        return next((e for e in self._entries.values() if e.public_key == public_key), None)

    def __iter__(self):
        return iter(sorted(self._entries.values(), key=lambda e: e.device_id))

    def __len__(self) -> int:
        return len(self._entries)
