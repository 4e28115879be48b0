"""A disk that fills up or fails, for files under one folder, with no mount needed.

:class:`FaultyDisk` wraps the ``os`` calls that take or give back room (``write``,
``ftruncate``, ``posix_fallocate``; ``fstatvfs`` reports it) and those that may fail
(``fsync``) for descriptors on files under ``root``, and keeps a byte count of the room
left: a write past it is short, as Linux makes it, and the next one fails with ENOSPC;
truncating a file gives its bytes back. Errors can be queued for the next write, fsync or
ftruncate of a file by name. The real calls still run (on a real folder): only the room
and the queued errors are made up.
Where ``mount -t tmpfs`` works, the tests also run on a real small file system.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class FaultyDisk:
    """``free`` bytes of room under ``root`` (None: no limit), while installed."""

    def __init__(self, root: Path, free: int | None = None) -> None:
        self.root = str(root.resolve())
        self.free = free
        self.errors: dict[str, list[tuple[str, int]]] = {}  # file name -> [(call, errno)]
        self._saved: dict[str, object] = {}

    def fail(self, name: str, call: str, err: int, times: int = 1) -> None:
        """Make the next ``times`` ``call`` (write, fsync, ftruncate) on file ``name`` fail."""
        self.errors.setdefault(name, []).extend([(call, err)] * times)

    def _name(self, fd: int) -> str | None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return os.path.basename(target) if target.startswith(self.root + "/") else None

    def _raise_queued(self, name: str, call: str) -> None:
        queue = self.errors.get(name, [])
        for i, (c, err) in enumerate(queue):
            if c == call:
                del queue[i]
                raise OSError(err, os.strerror(err))

    def __enter__(self) -> FaultyDisk:
        names = ("write", "ftruncate", "posix_fallocate", "fsync", "fstatvfs")
        real = {n: getattr(os, n) for n in names}
        self._saved = real
        disk = self

        def _write(fd, data):
            name = disk._name(fd)
            if name is None:
                return real["write"](fd, data)
            disk._raise_queued(name, "write")
            size = os.fstat(fd).st_size
            append = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            pos = size if append else os.lseek(fd, 0, os.SEEK_CUR)
            data = memoryview(data)
            if disk.free is not None:
                grow = max(0, pos + len(data) - size)
                if grow > disk.free:
                    allowed = len(data) - (grow - disk.free)
                    if allowed <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    data = data[:allowed]
            n = real["write"](fd, data)
            if disk.free is not None:
                disk.free -= max(0, pos + n - size)
            return n

        def _ftruncate(fd, length):
            name = disk._name(fd)
            if name is None:
                return real["ftruncate"](fd, length)
            disk._raise_queued(name, "ftruncate")
            size = os.fstat(fd).st_size
            real["ftruncate"](fd, length)
            if disk.free is not None and length < size:
                disk.free += size - length
            return None

        def _fallocate(fd, offset, length):
            name = disk._name(fd)
            if name is None:
                return real["posix_fallocate"](fd, offset, length)
            need = max(0, offset + length - os.fstat(fd).st_size)
            if disk.free is not None and need > disk.free:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real["posix_fallocate"](fd, offset, length)
            if disk.free is not None:
                disk.free -= need
            return None

        def _fsync(fd):
            name = disk._name(fd)
            if name is not None:
                disk._raise_queued(name, "fsync")
            return real["fsync"](fd)

        def _fstatvfs(fd):
            st = real["fstatvfs"](fd)
            if disk.free is None or disk._name(fd) is None:
                return st
            fields = list(st)
            fields[3] = fields[4] = min(st.f_bavail, disk.free // st.f_frsize)
            return os.statvfs_result(fields)

        os.write = _write
        os.ftruncate = _ftruncate
        os.posix_fallocate = _fallocate
        os.fsync = _fsync
        os.fstatvfs = _fstatvfs
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            setattr(os, name, fn)


@contextlib.contextmanager
def tmpfs(path: Path, size_mib: int) -> Iterator[Path]:
    """``path`` on a real tmpfs of ``size_mib`` MiB for the duration (the test is skipped,
    with the reason, where ``mount -t tmpfs`` is refused), unmounted afterwards."""
    path.mkdir(exist_ok=True)
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0750", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def resize_tmpfs(path: Path, size_mib: int) -> None:
    """Give a mounted :func:`tmpfs` a new size (space "returns")."""
    subprocess.run(
        ["mount", "-o", f"remount,size={size_mib}m", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
