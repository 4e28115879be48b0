"""Canonical bytes of a record: the one definition every signer and verifier uses.

Canonical form is JSON with keys sorted by code point, no insignificant white space,
UTF-8 without escaping non-ASCII characters, and integers only (no floats, whose
textual form differs between implementations). See ``docs/journal-format.md``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .exc import CanonicalError

GENESIS_HASH = "0" * 64
"""The ``prev`` of a device's first record."""


def _check(value: Any, path: str = "$") -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed in canonical records")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: key {key!r} is not a string")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} cannot be encoded")


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (raises :class:`CanonicalError`)."""
    _check(value)
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. parsed from "\ud800") has no UTF-8
        raise CanonicalError("string holds a lone UTF-16 surrogate") from None


def parse_canonical(data: bytes) -> Any:
    """Decode bytes that must already be canonical; raise :class:`CanonicalError` if not."""
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_reject_float)
    except CanonicalError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, and an integer of more than 4300 digits
        raise CanonicalError(f"not valid JSON: {exc}") from None
    try:
        again = canonical_bytes(value)
    except RecursionError:  # json.loads got just under the limit; re-encoding did not
        raise CanonicalError("not valid JSON: nested too deeply") from None
    if again != data:
        raise CanonicalError("not in canonical form")
    return value


def _reject_float(text: str) -> float:
    raise CanonicalError(f"float {text!r} is not allowed in canonical records")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
