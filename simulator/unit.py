"""The simulated head of unit: a unit key kept beside a simulated shift, and the registry
it signs (devices and docks), so that a simulated shift is trusted exactly the way a real
one is: by the unit key's fingerprint, named in ``DIR/trust.toml``.

The key is unsealed (mode 0600) because nobody types a passphrase into a simulation; a
real unit key is made with ``bodycam-unit init``, which seals it.
"""

from __future__ import annotations

from pathlib import Path

from evidence.clock import SystemClock, format_utc
from evidence.registry import DeviceEntry, DockEntry, Registry
from evidence.trust import write_trust_file
from evidence.unitkey import UnitKey

UNIT_KEY = Path("unit-key") / "unit.key"
TRUST_NAME = "trust.toml"


def unit_key(base: Path, unit: str = "unit-1") -> UnitKey:
    """The unit key at ``base/unit-key/unit.key`` (made once), named in ``base/trust.toml``."""
    path = base / UNIT_KEY
    key = UnitKey.load(path) if path.exists() else UnitKey.create(path, unit)
    if not (base / TRUST_NAME).exists():
        write_trust_file(base / TRUST_NAME, [key.fingerprint])
    return key


def register(
    registry_path: Path,
    key: UnitKey,
    devices: list[DeviceEntry] = (),
    docks: list[DockEntry] = (),
    merge_from: Path | None = None,
) -> Registry:
    """Add ``devices``, ``docks`` (and every entry of the registry file ``merge_from``) to
    the registry at ``registry_path`` and sign a new edition of it with ``key``."""
    registry = Registry.load_or_empty(registry_path)
    if registry.signature is not None and registry.signature.unit_key != key.public_key_hex:
        registry = Registry()  # signed by another (earlier) simulated unit: start afresh
    if merge_from is not None and merge_from.resolve() != registry_path.resolve():
        other = Registry.load(merge_from)
        for entry in other:
            registry.add(entry, replace=True)
        for dock in other.docks():
            registry.add_dock(dock, replace=True)
    for entry in devices:
        registry.add(entry, replace=True)
    for dock in docks:
        registry.add_dock(dock, replace=True)
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    registry.save_signed(registry_path, key, format_utc(SystemClock().time_ns()))
    return registry
