"""The unit key: the Ed25519 key of the head of unit, which signs the registry.

It is made once, at set-up, and kept by the head of unit (mode 0600, and optionally
sealed with a passphrase: Argon2id derives a key that opens a XSalsa20-Poly1305 box around
the seed). Nothing else in the system can sign a registry, so a registry that verifies
under a unit key whose fingerprint the user named is the only thing, besides a registry
the user gives by hand, that a verifier trusts (``docs/journal-format.md`` section 7).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from .exc import KeyFileError
from .identity import DeviceIdentity, check_device_id
from .storage import atomic_write_bytes

UNIT_KEY_FORMAT = "bodycam-unit-key-v1"
MAX_KEY_FILE_BYTES = 4096
_KDF = nacl.pwhash.argon2id
# Argon2id "moderate" limits: about half a second and 256 MiB on a PC, once per signing.
OPSLIMIT = _KDF.OPSLIMIT_MODERATE
MEMLIMIT = _KDF.MEMLIMIT_MODERATE


class PassphraseNeeded(KeyFileError):
    """The unit key is sealed and no passphrase was given."""


def fingerprint(public_key_hex: str) -> str:
    """SHA-256 of the raw 32-byte public key, 64 lowercase hex digits (what people compare)."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def show_fingerprint(digest: str) -> str:
    """``ab12 cd34 ...``: 16 groups of 4, easy to read aloud and compare on paper."""
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def parse_fingerprint(text: str) -> str:
    """A fingerprint as people write it (spaces, colons, upper case, ``SHA256:``) -> 64 hex."""
    cleaned = text.strip()
    if cleaned.lower().startswith("sha256:"):
        cleaned = cleaned[7:]
    cleaned = "".join(c for c in cleaned if c not in " :-").lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(
            f"{text!r:.80} is not a unit key fingerprint (64 hex digits, spaces allowed)"
        )
    return cleaned


class UnitKey(DeviceIdentity):
    """The head of unit's signing key; ``device_id`` is the unit's id."""

    @property
    def unit(self) -> str:
        return self.device_id

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key_hex)

    @classmethod
    def create(
        cls,
        key_path: str | os.PathLike,
        unit: str,  # type: ignore[override]
        passphrase: bytes | None = None,
    ) -> UnitKey:
        """Make a new unit key at ``key_path`` (0600); never replace an existing one."""
        key_path = Path(key_path)
        if key_path.exists():
            raise KeyFileError(f"{key_path}: a unit key already exists; not replacing it")
        check_device_id(unit)
        key = cls(unit, nacl.signing.SigningKey.generate())
        seed = key._signing_key.encode()
        payload: dict[str, object] = {
            "format": UNIT_KEY_FORMAT,
            "unit": unit,
            "public_key": key.public_key_hex,
        }
        if passphrase:
            salt = nacl.utils.random(_KDF.SALTBYTES)
            box = nacl.secret.SecretBox(
                _KDF.kdf(
                    nacl.secret.SecretBox.KEY_SIZE,
                    passphrase,
                    salt,
                    opslimit=OPSLIMIT,
                    memlimit=MEMLIMIT,
                )
            )
            payload.update(
                protection="argon2id",
                salt=salt.hex(),
                opslimit=OPSLIMIT,
                memlimit=MEMLIMIT,
                sealed_seed=bytes(box.encrypt(seed)).hex(),
            )
        else:
            payload.update(protection="none", seed=seed.hex())
        key_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(key_path, json.dumps(payload, indent=2).encode() + b"\n", mode=0o600)
        return key

    @staticmethod
    def load_public(key_path: str | os.PathLike) -> str:
        """The fingerprint stated in a key file, read without its passphrase."""
        try:
            payload = json.loads(Path(key_path).read_bytes()[:MAX_KEY_FILE_BYTES])
            return fingerprint(payload["public_key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{key_path}: not a bodycam unit key file ({exc})") from None

    @classmethod
    def load(
        cls,
        key_path: str | os.PathLike,  # type: ignore[override]
        passphrase: bytes | None = None,
    ) -> UnitKey:
        """Load a unit key, refusing a file others can read or a wrong passphrase."""
        key_path = Path(key_path)
        try:
            fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise KeyFileError(f"{key_path}: no unit key (run `bodycam-unit init`)") from None
        except OSError as exc:
            raise KeyFileError(f"{key_path}: cannot open the unit key: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{key_path}: the unit key is not a regular file")
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise KeyFileError(
                    f"{key_path}: unit key file is mode {stat.S_IMODE(st.st_mode):04o}; it "
                    "must be readable by its owner only (chmod 600)"
                )
            data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
        finally:
            os.close(fd)
        try:
            payload = json.loads(data)
            if len(data) > MAX_KEY_FILE_BYTES or payload.get("format") != UNIT_KEY_FORMAT:
                raise ValueError
            unit, public = payload["unit"], payload["public_key"]
            if payload["protection"] == "none":
                seed = bytes.fromhex(payload["seed"])
            elif payload["protection"] == "argon2id":
                if not passphrase:
                    raise PassphraseNeeded(
                        f"{key_path}: the unit key is sealed with a passphrase; give it "
                        "(--passphrase-file, or BODYCAM_UNIT_PASSPHRASE)"
                    )
                box = nacl.secret.SecretBox(
                    _KDF.kdf(
                        nacl.secret.SecretBox.KEY_SIZE,
                        passphrase,
                        bytes.fromhex(payload["salt"]),
                        opslimit=int(payload["opslimit"]),
                        memlimit=int(payload["memlimit"]),
                    )
                )
                try:
                    seed = box.decrypt(bytes.fromhex(payload["sealed_seed"]))
                except nacl.exceptions.CryptoError:
                    raise KeyFileError(f"{key_path}: wrong passphrase for the unit key") from None
            else:
                raise ValueError
            key = cls(unit, nacl.signing.SigningKey(seed))
        except KeyFileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, nacl.exceptions.CryptoError):
            raise KeyFileError(f"{key_path}: not a bodycam unit key file") from None
        if key.public_key_hex != public:
            raise KeyFileError(f"{key_path}: the seed does not match the stated public key")
        return key
