"""Media files bound into the journal by name, size and SHA-256.

:class:`HashingWriter` hashes while it writes, so closing a segment costs no second read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .storage import fsync_dir, makedirs_durable

CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaInfo:
    file: str  # path relative to the storage root, with '/' separators
    size: int
    sha256: str

    def body(self, **extra: Any) -> dict[str, Any]:
        """The journal body of a media record (``segment`` or ``photo``)."""
        return {"file": self.file, "size": self.size, "sha256": self.sha256, **extra}


class HashingWriter:
    """Writes a media file and its SHA-256 in one pass; fsyncs file and folder on close."""

    def __init__(self, root: str | os.PathLike, relative: str) -> None:
        self.root = Path(root)
        self.relative = relative
        self.path = self.root / relative
        makedirs_durable(self.path.parent)  # a new day's folder must survive a power cut
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        total = len(view)
        self._hash.update(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += total
        return total

    def flush(self) -> None:
        """Push written bytes to stable storage (what was flushed survives a power cut)."""
        os.fsync(self._fd)

    def close(self) -> MediaInfo:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            fsync_dir(self.path.parent)
        return MediaInfo(self.relative, self.size, self._hash.hexdigest())


def hash_file(path: str | os.PathLike) -> tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read once in large chunks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def hash_fd(fd: int, chunk: int = CHUNK) -> tuple[int, str]:
    """``(size, sha256 hex)`` of what an open descriptor reads from its position on."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()
