"""Where things live in a device's storage folder (the camera's card, or a copy of it).

::

    <root>/identity.json      device id and public key (informational; trust the registry)
    <root>/journal.jsonl      the signed journal
    <root>/journal.torn-N     bytes of a torn last record, kept after repair
    <root>/journal.reserve    room kept for the records of a full card (not evidence)
    <root>/media/YYYYMMDD/... segments (.ts) and photos (.jpg) named by the journal

The private key is never inside this folder: it lives in the device's state folder
(``/var/lib/bodycam/key/device.key`` on a camera).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .identity import DeviceIdentity
from .journal import JOURNAL_NAME, TORN_FILE
from .record import media_path_error
from .storage import atomic_write_bytes

IDENTITY_NAME = "identity.json"
MEDIA_DIR = "media"
MAX_STORED_NAME = 160
"""Characters of a file name a record may bind (``media/YYYYMMDD/`` + 128 + extension)."""


def stored_name_error(file: Any) -> str | None:
    """Why a camera-named ``file`` may not be written into a device folder, or None.

    A camera names the files its records bind, and a dock writes them under those names;
    so only two shapes are accepted: ``media/YYYYMMDD/<safe name>.ts|jpg`` and the
    torn-tail side file ``journal.torn-N``. Never ``journal.jsonl``, ``identity.json``,
    a dot-name, a control character or anything of unbounded length.
    """
    if not isinstance(file, str):
        return "the file name is not a string"
    if len(file) > MAX_STORED_NAME:
        return f"the file name is {len(file)} characters, more than {MAX_STORED_NAME}"
    if TORN_FILE.match(file):
        return None
    return media_path_error("", file)


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
