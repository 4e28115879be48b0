"""The registry: which device keys and dock keys the unit vouches for, signed by the unit key.

Format ``bodycam-registry-v2`` (``docs/journal-format.md`` section 7) is one line of
canonical JSON::

    {"devices": {"<id>": {"officer", "public_key", "revoked_reason", "revoked_utc",
                          "unit", "valid_from", "valid_until"}},
     "docks": {"<id>": {"public_key", "revoked_reason", "revoked_utc", "unit",
                        "valid_from", "valid_until"}},
     "consoles": {"<id>": {...as docks}},   (optional: supervisor consoles, see docs/alerts.md)
     "archives": {"<id>": {...as docks}},   (optional: archives whose audit logs they sign)
     "format": "bodycam-registry-v2", "issued_utc": "<UTC>", "serial": <int>,
     "sig": "<128 hex>", "unit": "<unit id>", "unit_key": "<64 hex>"}

``sig`` is Ed25519 by ``unit_key`` over the canonical JSON without ``sig``. A registry
proves only that *some* key signed it: it is trusted when that key's fingerprint is one the
user named (:func:`require_trusted`), never because it lies next to the evidence. The old
unsigned ``bodycam-registry-v1`` (devices only) is still read: it is trusted only when a
user hands it over explicitly. Times are UTC stamps, ``""`` when unset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .canonical import canonical_bytes
from .clock import UTC_PATTERN
from .exc import CanonicalError, RegistryError, SignatureError
from .identity import DEVICE_ID_PATTERN, check_device_id, verify_signature
from .record import HEX64, HEX128
from .safefile import UnsafeFile, read_regular
from .storage import atomic_write_bytes
from .unitkey import UnitKey, fingerprint, show_fingerprint

REGISTRY_FORMAT_V1 = "bodycam-registry-v1"
REGISTRY_FORMAT = "bodycam-registry-v2"
MAX_REGISTRY_BYTES = 16 * 1024 * 1024
PUBLIC_KEY = HEX64  # a raw Ed25519 public key, 64 lowercase hex digits
_TEXT_LIMIT = 256


@dataclass(frozen=True)
class _Validity:
    """When a key may sign: from ``valid_from`` until ``valid_until`` or its revocation."""

    def problem_at(self, utc: str) -> str | None:
        """Why this key may not sign at ``utc`` (a UTC stamp), or None if it may."""
        if self.revoked_utc and utc >= self.revoked_utc:
            why = f": {self.revoked_reason}" if self.revoked_reason else ""
            return f"its key was revoked at {self.revoked_utc}{why}"
        if self.valid_from and utc < self.valid_from:
            return f"its key is valid only from {self.valid_from}"
        if self.valid_until and utc >= self.valid_until:
            return f"its key expired at {self.valid_until}"
        return None

    @property
    def revoked(self) -> bool:
        return bool(self.revoked_utc)


@dataclass(frozen=True)
class DeviceEntry(_Validity):
    device_id: str
    public_key: str
    officer: str = ""
    unit: str = ""
    valid_from: str = ""
    valid_until: str = ""
    revoked_utc: str = ""
    revoked_reason: str = ""


@dataclass(frozen=True)
class DockEntry(_Validity):
    dock_id: str
    public_key: str
    unit: str = ""
    valid_from: str = ""
    valid_until: str = ""
    revoked_utc: str = ""
    revoked_reason: str = ""


@dataclass(frozen=True)
class ConsoleEntry(_Validity):
    """A supervisor console whose signed alert receipts cameras honour (``bodycam-supervisor
    setup`` makes its key; the head of unit registers it with ``bodycam-unit add-console``)."""

    console_id: str
    public_key: str
    unit: str = ""
    valid_from: str = ""
    valid_until: str = ""
    revoked_utc: str = ""
    revoked_reason: str = ""


@dataclass(frozen=True)
class ArchiveEntry(_Validity):
    """An archive (``bodycam-archive``) whose key signs its audit log (``bodycam-unit
    add-archive``); ``bodycam-verify`` checks the audit log against it."""

    archive_id: str
    public_key: str
    unit: str = ""
    valid_from: str = ""
    valid_until: str = ""
    revoked_utc: str = ""
    revoked_reason: str = ""


@dataclass
class Signature:
    """Who signed a registry and which edition it is."""

    unit: str
    unit_key: str
    serial: int
    issued_utc: str
    sig: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.unit_key)


class Registry:
    """Devices and docks the unit vouches for; ``get`` is None for an unknown device."""

    def __init__(
        self,
        entries: dict[str, DeviceEntry] | None = None,
        docks: dict[str, DockEntry] | None = None,
        consoles: dict[str, ConsoleEntry] | None = None,
        archives: dict[str, ArchiveEntry] | None = None,
    ) -> None:
        self._entries: dict[str, DeviceEntry] = dict(entries or {})
        self._docks: dict[str, DockEntry] = dict(docks or {})
        self._consoles: dict[str, ConsoleEntry] = dict(consoles or {})
        self._archives: dict[str, ArchiveEntry] = dict(archives or {})
        self.signature: Signature | None = None  # set when loaded from a signed file

    # -- reading ----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Registry:
        """Read a registry file (v1 or v2); a v2 file's signature must verify under the
        key it names (whether that key is *trusted* is :func:`require_trusted`'s call)."""
        try:
            data = read_regular(path, MAX_REGISTRY_BYTES)
        except UnsafeFile as exc:
            if exc.missing:
                raise RegistryError(f"{path}: no such registry file") from None
            raise RegistryError(f"{path}: not a readable registry: {exc.reason}") from None
        return cls.from_bytes(data, str(path))

    @classmethod
    def load_or_empty(cls, path: str | os.PathLike) -> Registry:
        return cls.load(path) if os.path.lexists(path) else cls()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "registry") -> Registry:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RegistryError(f"{where}: not a readable registry ({exc})") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{where}: not a registry (not a JSON object)")
        if doc.get("format") == REGISTRY_FORMAT_V1:
            return cls(_parse_entries(doc.get("devices"), DeviceEntry, where, "devices"))
        if doc.get("format") != REGISTRY_FORMAT:
            raise RegistryError(f"{where}: not a {REGISTRY_FORMAT} (or v1) file")
        return cls._from_signed(doc, data, where)

    @classmethod
    def _from_signed(cls, doc: dict[str, Any], data: bytes, where: str) -> Registry:
        want = {"devices", "docks", "format", "issued_utc", "serial", "sig", "unit", "unit_key"}
        if set(doc) - {"consoles", "archives"} != want:  # optional, absent when empty
            raise RegistryError(f"{where}: a signed registry has exactly {sorted(want)}")
        unit, key, sig = doc["unit"], doc["unit_key"], doc["sig"]
        serial, issued = doc["serial"], doc["issued_utc"]
        if not (isinstance(unit, str) and DEVICE_ID_PATTERN.match(unit)):
            raise RegistryError(f"{where}: bad unit id {unit!r:.80}")
        if not (isinstance(key, str) and HEX64.match(key)):
            raise RegistryError(f"{where}: unit_key must be 64 lowercase hex digits")
        if not (isinstance(sig, str) and HEX128.match(sig)):
            raise RegistryError(f"{where}: sig must be 128 lowercase hex digits")
        if not (type(serial) is int and 0 < serial < 2**63):
            raise RegistryError(f"{where}: serial must be a positive integer")
        if not (isinstance(issued, str) and UTC_PATTERN.match(issued)):
            raise RegistryError(f"{where}: issued_utc must be a UTC stamp")
        unsigned = {k: v for k, v in doc.items() if k != "sig"}
        try:
            message = canonical_bytes(unsigned)
            if canonical_bytes(doc) + b"\n" != data and canonical_bytes(doc) != data:
                raise RegistryError(f"{where}: a signed registry must be canonical JSON")
            verify_signature(key, message, bytes.fromhex(sig))
        except (CanonicalError, SignatureError):
            raise RegistryError(
                f"{where}: the registry's signature does not verify under "
                "the unit key it names (the file was altered)"
            ) from None
        registry = cls(
            _parse_entries(doc["devices"], DeviceEntry, where, "devices"),
            _parse_entries(doc["docks"], DockEntry, where, "docks"),
            _parse_entries(doc.get("consoles", {}), ConsoleEntry, where, "consoles"),
            _parse_entries(doc.get("archives", {}), ArchiveEntry, where, "archives"),
        )
        registry.signature = Signature(unit, key, serial, issued, sig)
        return registry

    # -- writing ----------------------------------------------------------------------
    def signed_document(self, unit_key: UnitKey, serial: int, issued_utc: str) -> dict:
        """The registry as ``unit_key`` signs it (``sig`` included)."""
        doc = {
            "format": REGISTRY_FORMAT,
            "unit": unit_key.unit,
            "unit_key": unit_key.public_key_hex,
            "serial": serial,
            "issued_utc": issued_utc,
            "devices": {e.device_id: _entry_dict(e) for e in self},
            "docks": {e.dock_id: _entry_dict(e) for e in self.docks()},
        }
        if self._consoles:  # absent when empty: older readers still accept the file
            doc["consoles"] = {e.console_id: _entry_dict(e) for e in self.consoles()}
        if self._archives:
            doc["archives"] = {e.archive_id: _entry_dict(e) for e in self.archives()}
        doc["sig"] = unit_key.sign(canonical_bytes(doc)).hex()
        return doc

    def sign(self, unit_key: UnitKey, issued_utc: str) -> bytes:
        """A new edition (serial one higher), signed: the bytes of its file."""
        serial = (self.signature.serial if self.signature else 0) + 1
        doc = self.signed_document(unit_key, serial, issued_utc)
        self.signature = Signature(
            unit_key.unit, unit_key.public_key_hex, serial, issued_utc, doc["sig"]
        )
        return canonical_bytes(doc) + b"\n"

    def save_signed(self, path: str | os.PathLike, unit_key: UnitKey, issued_utc: str) -> None:
        atomic_write_bytes(path, self.sign(unit_key, issued_utc), mode=0o644)

    def save(self, path: str | os.PathLike) -> None:
        """Write an unsigned v1 file (devices only): for a registry handed over by hand."""
        if self._docks or self._consoles or self._archives:
            raise RegistryError(
                "a registry with docks, consoles or archives must be signed (save_signed)"
            )
        devices = {}
        for entry in self:
            d = asdict(entry)
            del d["device_id"]
            devices[entry.device_id] = {
                k: v for k, v in d.items() if v or k in ("public_key", "officer", "unit")
            }
        text = json.dumps({"format": REGISTRY_FORMAT_V1, "devices": devices}, indent=2)
        atomic_write_bytes(path, text.encode() + b"\n")

    # -- editing ----------------------------------------------------------------------
    def add(self, entry: DeviceEntry, *, replace: bool = False) -> None:
        """Register a device; refuse to change a registered key unless ``replace``."""
        self._put(self._entries, entry.device_id, entry, "", replace)

    def add_dock(self, entry: DockEntry, *, replace: bool = False) -> None:
        self._put(self._docks, entry.dock_id, entry, "dock ", replace)

    def add_console(self, entry: ConsoleEntry, *, replace: bool = False) -> None:
        self._put(self._consoles, entry.console_id, entry, "console ", replace)

    def add_archive(self, entry: ArchiveEntry, *, replace: bool = False) -> None:
        self._put(self._archives, entry.archive_id, entry, "archive ", replace)

    @staticmethod
    def _put(table: dict[str, Any], ident: str, entry: Any, what: str, replace: bool) -> None:
        _check_entry(entry, ident)
        old = table.get(ident)
        if old and old.public_key != entry.public_key and not replace:
            raise RegistryError(
                f"{what}{ident}: already registered with another key; not replacing it"
            )
        table[ident] = entry

    def revoke(self, ident: str, utc: str, reason: str = "") -> DeviceEntry | DockEntry:
        """Revoke a device's or a dock's key from ``utc`` on (kept, so that what it signed
        before stays checkable)."""
        for table in (self._entries, self._docks, self._consoles, self._archives):
            if ident in table:
                table[ident] = replace(
                    table[ident], revoked_utc=utc, revoked_reason=reason[:_TEXT_LIMIT]
                )
                return table[ident]
        raise RegistryError(f"{ident!r} is neither a registered device nor a registered dock")

    # -- looking up -------------------------------------------------------------------
    def get(self, device_id: str) -> DeviceEntry | None:
        return self._entries.get(device_id)

    def dock(self, dock_id: str) -> DockEntry | None:
        return self._docks.get(dock_id)

    def docks(self) -> list[DockEntry]:
        return sorted(self._docks.values(), key=lambda e: e.dock_id)

    def dock_keys(self, utc: str | None = None) -> dict[str, str]:
        """Dock id -> public key of every dock not revoked (at ``utc``, if given)."""
        return {e.dock_id: e.public_key for e in self.docks() if _in_force(e, utc)}

    def consoles(self) -> list[ConsoleEntry]:
        return sorted(self._consoles.values(), key=lambda e: e.console_id)

    def console_keys(self, utc: str | None = None) -> dict[str, str]:
        """Console id -> public key of every supervisor console not revoked (at ``utc``)."""
        return {e.console_id: e.public_key for e in self.consoles() if _in_force(e, utc)}

    def archive(self, archive_id: str) -> ArchiveEntry | None:
        return self._archives.get(archive_id)

    def archives(self) -> list[ArchiveEntry]:
        return sorted(self._archives.values(), key=lambda e: e.archive_id)

    def find_by_key(self, public_key: str) -> DeviceEntry | None:
        return next((e for e in self._entries.values() if e.public_key == public_key), None)

    @property
    def fingerprint(self) -> str | None:
        """The signing unit key's fingerprint, or None for an unsigned registry."""
        return None if self.signature is None else self.signature.fingerprint

    def __iter__(self) -> Iterator[DeviceEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.device_id))

    def __len__(self) -> int:
        return len(self._entries)


def _in_force(entry: _Validity, utc: str | None) -> bool:
    """Valid at ``utc`` (revocation and validity window), or not revoked when no time."""
    return not (entry.problem_at(utc) if utc else entry.revoked)


def require_trusted(registry: Registry, fingerprints: Iterable[str], where: str) -> None:
    """Raise :class:`RegistryError` unless ``registry`` is signed by a unit key whose
    fingerprint is in ``fingerprints`` (the ones the user named)."""
    named = set(fingerprints)
    if registry.signature is None:
        raise RegistryError(f"{where}: the registry is not signed by a unit key")
    if registry.fingerprint not in named:
        raise RegistryError(
            f"{where}: the registry is signed by unit key {show_fingerprint(registry.fingerprint)},"
            " which is not a trusted unit key"
        )


def _entry_dict(entry: DeviceEntry | DockEntry | ConsoleEntry | ArchiveEntry) -> dict[str, str]:
    d = asdict(entry)
    d.pop("archive_id", None)
    d.pop("device_id", None)
    d.pop("dock_id", None)
    d.pop("console_id", None)
    return d


def _check_entry(entry: DeviceEntry | DockEntry | ConsoleEntry | ArchiveEntry, ident: str) -> None:
    try:
        check_device_id(ident)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    if not PUBLIC_KEY.match(entry.public_key):
        raise RegistryError(f"{ident}: public key must be 64 lowercase hex digits")
    for f in fields(entry):
        value = getattr(entry, f.name)
        if (
            not isinstance(value, str)
            or len(value) > _TEXT_LIMIT
            or any(ord(c) < 0x20 for c in value)
        ):
            raise RegistryError(f"{ident}: {f.name} must be a short line of text")
        if f.name.endswith("_utc") or f.name.startswith("valid_"):
            if value and not UTC_PATTERN.match(value):
                raise RegistryError(f"{ident}: {f.name} must be a UTC stamp or empty")


def _parse_entries(table: Any, kind: type, where: str, name: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise RegistryError(f"{where}: {name!r} must be an object")
    allowed = {f.name for f in fields(kind)} - {"device_id", "dock_id", "console_id", "archive_id"}
    entries = {}
    for ident, entry in table.items():
        try:
            if not isinstance(entry, dict) or not set(entry) <= allowed:
                raise ValueError(f"fields must be among {sorted(allowed)}")
            made = kind(ident, **{k: v if k == "public_key" else str(v) for k, v in entry.items()})
            if not isinstance(made.public_key, str):
                raise ValueError("bad public key")
            _check_entry(made, ident)
        except (ValueError, TypeError, RegistryError) as exc:
            raise RegistryError(f"{where}: {name[:-1]} {ident!r:.70}: {exc}") from None
        entries[ident] = made
    return entries


__all__ = [
    "ArchiveEntry",
    "REGISTRY_FORMAT",
    "REGISTRY_FORMAT_V1",
    "ConsoleEntry",
    "DeviceEntry",
    "DockEntry",
    "Registry",
    "Signature",
    "require_trusted",
]
