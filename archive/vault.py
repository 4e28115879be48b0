"""Encryption at rest for documents of cases classified above ``internal``.

Each file gets its own random data key and is written as an authenticated stream
(XChaCha20-Poly1305 secretstream, libsodium via PyNaCl: 64 KiB chunks, each
authenticated, the last one tagged final, so an edited, reordered or cut file fails to
open). The data key is wrapped (XChaCha20-Poly1305 AEAD, the file's name as associated
data, so a wrapped key cannot be moved to another file) by the archive's master key and
kept in the database; the file on disk holds only ciphertext and is named by a random id,
not by its content's hash. Only the archive's access path (:meth:`Archive.read_document`,
after the access check, audited) unwraps a key.

The master key is 32 random bytes, read from the systemd credential
``bodycam-archive-master`` (``$CREDENTIALS_DIRECTORY``, e.g. ``LoadCredentialEncrypted=``
of a ``systemd-creds encrypt``-ed file: then a copy of the disk holds it only encrypted
to the machine's TPM or host key), else from the file ``archive.toml`` names, else from
``<archive>/key/master.key`` (0600), which ``init`` makes. With that default file on the
same disk, a copy of the whole disk includes the key: docs/archive.md says so.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

import nacl.bindings as sodium
import nacl.exceptions

from evidence.storage import atomic_write_bytes

from .exc import ArchiveError

CREDENTIAL = "bodycam-archive-master"
ENCRYPTED = "/etc/credstore.encrypted/bodycam-archive-master"
"""Where ``systemd-creds encrypt`` puts it; ``systemd/bodycam-archive-master.conf`` loads it."""
NEXT_CREDENTIAL = "bodycam-archive-master-next"
NEXT_NAME = "key/master.next"
MAGIC = b"bodycam-vault-1\n"
CHUNK = 1 << 16
KEY_BYTES = 32
_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_HEADER = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_NONCE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class VaultError(ArchiveError):
    """A key or an encrypted file is missing, altered, or not this archive's."""


def master_key_path(folder: Path, configured: str = "") -> Path:
    """Where the master key is read from: the systemd credential, the configured file,
    else ``<archive>/key/master.key``."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL).is_file():
        return Path(creds) / CREDENTIAL
    return Path(configured) if configured else folder / "key" / "master.key"


def next_key_path(folder: Path) -> Path:
    """Where the next master key of a rotation is (``bodycam-archive key rotate``): the
    credential ``bodycam-archive-master-next``, else ``<archive>/key/master.next``. While
    it exists a rotation is under way: new keys are wrapped by it, and both open."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / NEXT_CREDENTIAL).is_file():
        return Path(creds) / NEXT_CREDENTIAL
    return folder / NEXT_NAME


def create_master_key(path: Path) -> None:
    if path.exists():
        raise VaultError(f"{path}: a master key already exists; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n", 0o600)


def _load_key(path: Path) -> bytes:
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise VaultError(f"{path}: the master key must be readable by its owner only")
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise VaultError(f"{path}: no master key: encrypted material cannot be read") from None
    except (ValueError, UnicodeDecodeError):
        raise VaultError(f"{path}: not a master key (64 hex digits)") from None
    if len(key) != KEY_BYTES:
        raise VaultError(f"{path}: not a master key (64 hex digits)")
    return key


def _wrap(key: bytes, data_key: bytes, name: str) -> str:
    nonce = secrets.token_bytes(_NONCE)
    box = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(data_key, name.encode(), nonce, key)
    return (nonce + box).hex()


def _unwrap(key: bytes, wrapped: str, name: str) -> bytes | None:
    try:
        raw = bytes.fromhex(wrapped)
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            raw[_NONCE:], name.encode(), raw[:_NONCE], key
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return None


class Vault:
    """The master key, loaded; wraps data keys and streams files.

    ``next_path``: the next master key of a rotation, if one is under way (it exists):
    then new data keys are wrapped by it, and a key opens under either."""

    def __init__(self, path: Path, next_path: Path | None = None) -> None:
        self.path = path
        self._key = _load_key(path)
        self.next_path = next_path if next_path is not None and next_path.exists() else None
        self._next = _load_key(self.next_path) if self.next_path is not None else None

    def wrap(self, data_key: bytes, name: str) -> str:
        return _wrap(self._next or self._key, data_key, name)

    def unwrap(self, wrapped: str, name: str) -> bytes:
        for key in (self._key, self._next):
            if key is not None and (data_key := _unwrap(key, wrapped, name)) is not None:
                return data_key
        raise VaultError(f"{name}: its key does not open under this archive's master key")

    def rewrap(self, wrapped: str, name: str) -> str | None:
        """``wrapped`` wrapped by the next key instead (a rotation's step), or None when it
        is already (a rotation resumed); VaultError when neither key opens it."""
        if self._next is None:
            raise VaultError("no rotation under way (no next master key)")
        if _unwrap(self._next, wrapped, name) is not None:
            return None
        data_key = _unwrap(self._key, wrapped, name)
        if data_key is None:
            raise VaultError(f"{name}: its key does not open under this archive's master key")
        return _wrap(self._next, data_key, name)


def encrypt_stream(
    src: BinaryIO, out: BinaryIO, data_key: bytes, *, magic: bytes = MAGIC, ad: bytes | None = None
) -> tuple[int, str]:
    """Write ``src`` encrypted to ``out``; the plaintext's size and SHA-256. ``ad``: what
    every chunk is bound to (a sealed recording's identity), checked on opening."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, data_key)
    out.write(magic + header)
    digest, size = hashlib.sha256(), 0
    chunk = src.read(CHUNK)
    while True:
        following = src.read(CHUNK) if chunk else b""
        tag = _FINAL if not following else _MESSAGE
        digest.update(chunk)
        size += len(chunk)
        out.write(sodium.crypto_secretstream_xchacha20poly1305_push(state, chunk, ad, tag))
        if tag == _FINAL:
            return size, digest.hexdigest()
        chunk = following


def decrypt_stream(
    src: BinaryIO,
    out: BinaryIO,
    data_key: bytes,
    where: str,
    *,
    magic: bytes = MAGIC,
    ad: bytes | None = None,
) -> tuple[int, str]:
    """Write the plaintext of ``src`` to ``out``; raise :class:`VaultError` if it was
    altered, cut or reordered (nothing written then is to be trusted)."""
    if src.read(len(magic)) != magic:
        raise VaultError(f"{where}: not an encrypted archive document")
    header = src.read(_HEADER)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    try:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, data_key)
        digest, size = hashlib.sha256(), 0
        while True:
            block = src.read(CHUNK + _ABYTES)
            if not block:
                raise VaultError(f"{where}: the encrypted document is cut short")
            chunk, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, block, ad)
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
            if tag == _FINAL:
                if src.read(1):
                    raise VaultError(f"{where}: bytes after the end of the encrypted document")
                return size, digest.hexdigest()
    except (nacl.exceptions.CryptoError, ValueError, RuntimeError):
        raise VaultError(f"{where}: the encrypted document was altered") from None
