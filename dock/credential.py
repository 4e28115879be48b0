"""The dock's key as a systemd credential, not as a readable file (issue 10).

Whoever copies a dock's disk must not be able to sign receipts that make cameras wipe
media. So on a docking station the key is kept only encrypted, by ``systemd-creds encrypt
--with-key=auto`` (bound to the TPM2 when the machine has one, else to the host key in
``/var/lib/systemd/credential.secret``, which only root reads), at :data:`ENCRYPTED`; the
units load it with ``LoadCredentialEncrypted=dock.key:/etc/credstore.encrypted/bodycam-dock.key``,
and systemd decrypts it for the service alone into ``$CREDENTIALS_DIRECTORY/dock.key``
(a non-swappable file system, mode 0400, gone when the service stops).
``scripts/install-dock`` makes the key, encrypts it and removes the plaintext.

Where no credential is passed (``bodycam-dock init``, tests, the simulator, a bench
machine), the key file named by the ``dock.key`` setting is used, as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from evidence.exc import KeyFileError
from evidence.identity import DeviceIdentity

CREDENTIAL = "dock.key"
"""The credential's name in the units (``LoadCredentialEncrypted=dock.key:...``)."""
ENCRYPTED = "/etc/credstore.encrypted/bodycam-dock.key"
"""Where scripts/install-dock keeps the encrypted key."""


def credential_path(
    name: str = CREDENTIAL, environ: Mapping[str, str] | None = None
) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` when systemd passed that credential, else None."""
    env = os.environ if environ is None else environ
    folder = env.get("CREDENTIALS_DIRECTORY", "")
    if not folder:
        return None
    path = Path(folder) / name
    return path if os.path.lexists(path) else None


def load_dock_identity(
    key_file: str | os.PathLike,
    name: str = CREDENTIAL,
    environ: Mapping[str, str] | None = None,
) -> DeviceIdentity:
    """The dock's key: the systemd credential ``name`` if the unit passed one, else
    ``key_file``. Raises :class:`~evidence.exc.KeyFileError` with the reason (no key, a
    key others could read, not a key)."""
    credential = credential_path(name, environ)
    if credential is not None:
        return DeviceIdentity.load(credential)
    key = Path(key_file)
    if not key.exists():
        raise KeyFileError(
            f"{key}: no dock key, and no systemd credential {name!r} "
            "($CREDENTIALS_DIRECTORY): run `bodycam-dock init` first, or run the command "
            "under the dock's unit, which loads the encrypted key (LoadCredentialEncrypted=)"
        )
    return DeviceIdentity.load(key)


def init_identity(
    key_file: str | os.PathLike,
    dock_id: str,
    environ: Mapping[str, str] | None = None,
    encrypted: str | os.PathLike = ENCRYPTED,
) -> DeviceIdentity:
    """``bodycam-dock init``'s key: the existing one (credential or file), or a new key
    file; never a new key once the key was moved into the credential store, which would
    give the dock an identity the unit's registry does not know."""
    if credential_path(CREDENTIAL, environ) is not None or Path(key_file).exists():
        return load_dock_identity(key_file, CREDENTIAL, environ)
    if os.path.lexists(encrypted):
        raise KeyFileError(
            f"the dock's key is kept encrypted in {encrypted} (systemd-creds); not making "
            "another: run this under the dock's unit (LoadCredentialEncrypted=) to see it"
        )
    return DeviceIdentity.create(key_file, dock_id)
