"""Reading files an attacker may have planted: never follow a link, never block, bounded.

A FIFO would hang a reader, ``/dev/zero`` would fill its memory, a symbolic link would
point it outside the evidence. Every file the verifier or a daemon reads from evidence is
opened here: ``O_NOFOLLOW | O_NONBLOCK``, checked with ``fstat`` to be a regular file, and
read up to a stated limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .exc import EvidenceError


class UnsafeFile(EvidenceError):
    """The path is not a regular file that can be read within its limit; ``reason`` says
    why in a few words (``is missing``, ``is a symbolic link``, ...)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    @property
    def missing(self) -> bool:
        return self.reason == "is missing"


def open_regular(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """An fd open for reading on a regular file, and its ``fstat``; raises UnsafeFile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UnsafeFile(path, "is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise UnsafeFile(path, "is a symbolic link, not a file") from None
        if exc.errno == errno.ENOTDIR:
            raise UnsafeFile(path, "is missing (a parent is not a folder)") from None
        raise UnsafeFile(path, f"cannot be opened ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL in the name
        raise UnsafeFile(path, f"cannot be opened ({exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, "is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most ``max_bytes``; raises UnsafeFile."""
    fd, st = open_regular(path)
    try:
        if st.st_size > max_bytes:
            raise UnsafeFile(path, f"is {st.st_size} bytes, more than the {max_bytes} allowed")
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise UnsafeFile(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnsafeFile(path, f"grew past the {max_bytes} bytes allowed while being read")
    return data


def is_real_dir(path: Path) -> bool:
    """A folder, not a symbolic link to one (``Path.is_dir`` follows links)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
