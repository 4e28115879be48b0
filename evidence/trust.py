"""Trust anchors: the unit keys a user or a daemon trusts, named by fingerprint.

``/etc/bodycam/trust.toml`` (or a file given with ``--trust``)::

    # fingerprints of unit keys whose signed registries are trusted
    unit_keys = ["ab12 cd34 ... (64 hex digits, spaces allowed)"]

Nothing found in or beside the evidence is ever a trust anchor: only this file, flags,
and daemon configs name them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

from .exc import ConfigError
from .registry import Registry, require_trusted
from .unitkey import parse_fingerprint

TRUST_FILE = "/etc/bodycam/trust.toml"


def load_unit_keys(
    named: Iterable[str] = (),
    trust_file: str | os.PathLike | None = None,
    *,
    default_file: str | None = TRUST_FILE,
) -> frozenset[str]:
    """Fingerprints from ``named`` (flags) and the trust file (``trust_file``, else
    ``default_file`` if it exists); a bad fingerprint or file is a ConfigError."""
    found = set()
    for text in named:
        try:
            found.add(parse_fingerprint(text))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    path = (
        trust_file
        if trust_file is not None
        else (default_file if default_file and Path(default_file).exists() else None)
    )
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such trust file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        extra = sorted(set(data) - {"unit_keys"})
        keys = data.get("unit_keys", [])
        if extra:
            raise ConfigError(f"{path}: unknown setting {extra[0]!r} (only unit_keys)")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{path}: unit_keys must be a list of fingerprints")
        for text in keys:
            try:
                found.add(parse_fingerprint(text))
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    return frozenset(found)


def load_trusted_registry(path: str | os.PathLike, unit_keys: Iterable[str]) -> Registry:
    """The registry at ``path``, which must be signed by one of ``unit_keys``."""
    registry = Registry.load(path)
    require_trusted(registry, unit_keys, str(path))
    return registry


def write_trust_file(path: str | os.PathLike, fingerprints: Iterable[str]) -> None:
    from .storage import atomic_write_bytes
    from .unitkey import show_fingerprint

    lines = [
        "# Unit keys whose signed registries are trusted (bodycam-unit fingerprint).",
        "unit_keys = [",
    ]
    lines += [f'  "{show_fingerprint(f)}",' for f in sorted(fingerprints)]
    lines.append("]")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
