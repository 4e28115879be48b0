"""Where things live in a device's storage folder (the camera's card, or a copy of it).

::

    <root>/identity.json      device id and public key (informational; trust the registry)
    <root>/journal.jsonl      the signed journal
    <root>/journal.torn-N     bytes of a torn last record, kept after repair
    <root>/media/YYYYMMDD/... segments (.ts) and photos (.jpg) named by the journal

The private key is never inside this folder: it lives in the device's state folder
(``/var/lib/bodycam/key/device.key`` on a camera).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .identity import DeviceIdentity
from .journal import JOURNAL_NAME
from .storage import atomic_write_bytes

IDENTITY_NAME = "identity.json"
MEDIA_DIR = "media"


class DeviceStorage:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL_NAME

    @property
    def identity_path(self) -> Path:
        return self.root / IDENTITY_NAME

    @property
    def media_root(self) -> Path:
        return self.root / MEDIA_DIR

    def media_relative(self, day: str, name: str) -> str:
        """``media/YYYYMMDD/name``: the path a media record names, relative to the root."""
        return f"{MEDIA_DIR}/{day}/{name}"

    def write_identity(self, identity: DeviceIdentity) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"device_id": identity.device_id, "public_key": identity.public_key_hex}, indent=2
        )
        atomic_write_bytes(self.identity_path, text.encode() + b"\n")

    def read_identity(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.identity_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
