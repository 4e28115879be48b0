"""Device identity: an Ed25519 key made on the device, kept in a 0600 file, never exported."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import nacl.exceptions
import nacl.signing

from .exc import KeyFileError, SignatureError
from .storage import atomic_write_bytes

DEVICE_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)


def check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.match(device_id):
        raise ValueError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return device_id


class DeviceIdentity:
    """A device id bound to its Ed25519 signing key."""

    def __init__(self, device_id: str, signing_key: nacl.signing.SigningKey) -> None:
        self.device_id = check_device_id(device_id)
        self._signing_key = signing_key

    @classmethod
    def generate(cls, device_id: str) -> DeviceIdentity:
        return cls(device_id, nacl.signing.SigningKey.generate())

    @classmethod
    def create(cls, key_path: str | os.PathLike, device_id: str) -> DeviceIdentity:
        """Make a new key at ``key_path`` (mode 0600); refuse to replace an existing one."""
        key_path = Path(key_path)
        if key_path.exists():
            raise KeyFileError(f"{key_path}: a device key already exists; not replacing it")
        identity = cls.generate(device_id)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": "bodycam-device-key-v1",
            "device_id": identity.device_id,
            "seed": identity._signing_key.encode().hex(),
        }
        atomic_write_bytes(key_path, json.dumps(payload).encode() + b"\n", mode=0o600)
        return identity

    @classmethod
    def load(cls, key_path: str | os.PathLike) -> DeviceIdentity:
        """Load a key file, refusing one that group or others could read."""
        key_path = Path(key_path)
        try:
            st = key_path.stat()
        except FileNotFoundError:
            raise KeyFileError(f"{key_path}: no device key (provision the device first)") from None
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyFileError(
                f"{key_path}: key file is mode {stat.S_IMODE(st.st_mode):04o}; "
                "it must be readable by its owner only (chmod 600)"
            )
        try:
            payload = json.loads(key_path.read_text())
            seed = bytes.fromhex(payload["seed"])
            device_id = payload["device_id"]
            if payload.get("format") != "bodycam-device-key-v1" or len(seed) != 32:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise KeyFileError(f"{key_path}: not a bodycam device key file") from None
        return cls(device_id, nacl.signing.SigningKey(seed))

    @property
    def public_key_hex(self) -> str:
        return self._signing_key.verify_key.encode().hex()

    def private_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 seed, for the dock's TLS key (``wire/net.py``), which
        must be this very key so that the registry pins it; handed to OpenSSL in memory
        only, never written anywhere."""
        return self._signing_key.encode()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._signing_key.sign(message).signature


def verify_signature(public_key_hex: str, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
    try:
        key = nacl.signing.VerifyKey(bytes.fromhex(public_key_hex))
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        raise SignatureError("signature does not verify") from None
