"""Crash states the way ALICE and CrashMonkey build them, with no kernel module.

:class:`Recorder` wraps the ``os`` calls our code makes (``open``, ``write``, ``ftruncate``,
``posix_fallocate``, ``fsync``, ``mkdir``, ``replace``, ``unlink``, ...) while a workload
runs on a real folder, and logs each as an operation on an inode. :func:`crash_states`
then builds every on-disk state that POSIX allows after a power cut at each point of that log:

- a file's data operations are durable only once an ``fsync`` of that file follows them;
- a directory's entries (create, mkdir, rename, unlink) only once an ``fsync`` of that
  directory follows them;
- anything not yet durable may be lost, kept, kept in part (a torn write), or kept while
  an earlier unsynced operation is lost (reordering).

:func:`materialise` writes one state into a fresh folder, where the test runs recovery and
checks the evidence. SIGKILL (nothing lost that was written) is the state that keeps all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DATA = ("write", "truncate")
ENTRY = ("create", "mkdir", "rename", "unlink")


@dataclass(frozen=True)
class Op:
    kind: str  # write | truncate | create | mkdir | rename | unlink | fsync | mark
    ino: int = 0  # the inode a data op or fsync is on; the inode an entry op names
    path: str = ""  # relative path an entry op changes (rename: the source)
    dest: str = ""  # rename: the destination
    offset: int = 0
    data: bytes = b""
    size: int = 0
    label: str = ""  # mark: what had just completed


@dataclass
class Image:
    """A file-system image: directory entries pointing at inodes, and inode contents."""

    names: dict[str, int] = field(default_factory=dict)  # relative path -> inode
    dirs: set[int] = field(default_factory=set)
    contents: dict[int, bytearray] = field(default_factory=dict)

    def copy(self) -> Image:
        return Image(
            dict(self.names), set(self.dirs), {k: bytearray(v) for k, v in self.contents.items()}
        )

    def apply(self, op: Op, partial: bool = False) -> None:
        if op.kind == "write":
            buf = self.contents.setdefault(op.ino, bytearray())
            data = op.data[: len(op.data) // 2] if partial else op.data
            if len(buf) < op.offset:
                buf.extend(b"\0" * (op.offset - len(buf)))
            buf[op.offset : op.offset + len(data)] = data
        elif op.kind == "truncate":
            buf = self.contents.setdefault(op.ino, bytearray())
            del buf[op.size :]
            buf.extend(b"\0" * (op.size - len(buf)))
        elif op.kind == "create":
            self.names[op.path] = op.ino
            self.contents.setdefault(op.ino, bytearray())
        elif op.kind == "mkdir":
            self.names[op.path] = op.ino
            self.dirs.add(op.ino)
        elif op.kind == "rename":
            # Atomic, and about the inode: the new name points at it even where the old
            # name's own creation never reached the disk.
            self.names.pop(op.path, None)
            for name in [n for n in self.names if n.startswith(op.dest + "/")]:
                del self.names[name]
            self.names[op.dest] = op.ino
            self.contents.setdefault(op.ino, bytearray())
            if op.ino in self.dirs:  # a renamed folder takes its entries with it
                prefix = op.path + "/"
                for name in [n for n in self.names if n.startswith(prefix)]:
                    self.names[op.dest + "/" + name[len(prefix) :]] = self.names.pop(name)
        elif op.kind == "unlink":
            self.names.pop(op.path, None)

    def visible(self) -> dict[str, bytes | None]:
        """Path -> bytes (None for a folder), only what is reachable from the root."""
        out: dict[str, bytes | None] = {}
        for name in sorted(self.names, key=lambda n: n.count("/")):
            parent = name.rsplit("/", 1)[0] if "/" in name else ""
            if parent and (parent not in out or out[parent] is not None):
                continue
            ino = self.names[name]
            out[name] = None if ino in self.dirs else bytes(self.contents.get(ino, b""))
        return out


def snapshot(root: Path) -> Image:
    """The durable image of ``root`` before the workload (everything on it is synced)."""
    image = Image()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        image.names[rel] = st.st_ino
        if stat.S_ISDIR(st.st_mode):
            image.dirs.add(st.st_ino)
        elif stat.S_ISREG(st.st_mode):
            image.contents[st.st_ino] = bytearray(path.read_bytes())
    return image


class Recorder:
    """Logs the file-system operations under ``root`` while installed (a context manager).

    Only paths under ``root`` are logged; descriptors are followed by inode, so a write
    after a rename lands on the right file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.ops: list[Op] = []
        self._fds: dict[int, tuple[int, bool]] = {}  # fd -> (inode, append)
        self._saved: dict[str, object] = {}

    def mark(self, label: str) -> None:
        self.ops.append(Op("mark", label=label))

    def _rel(self, path: object) -> str | None:
        if isinstance(path, int):
            return None
        p = Path(os.fsdecode(path))
        p = (p if p.is_absolute() else Path.cwd() / p).resolve(strict=False)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return None

    def __enter__(self) -> Recorder:
        real = {
            n: getattr(os, n)
            for n in (
                "open",
                "close",
                "write",
                "ftruncate",
                "posix_fallocate",
                "truncate",
                "fsync",
                "fdatasync",
                "mkdir",
                "rename",
                "replace",
                "unlink",
                "remove",
                "rmdir",
                "link",
            )
        }
        self._saved = real
        rec = self

        def _open(path, flags, mode=0o777, *, dir_fd=None):
            rel = rec._rel(path)
            existed = rel is not None and os.path.lexists(path)
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            if rel is not None:
                ino = os.fstat(fd).st_ino
                rec._fds[fd] = (ino, bool(flags & os.O_APPEND))
                if not existed and flags & os.O_CREAT:
                    rec.ops.append(Op("create", ino=ino, path=rel))
                elif flags & os.O_TRUNC:
                    rec.ops.append(Op("truncate", ino=ino, size=0))
            return fd

        def _close(fd):
            rec._fds.pop(fd, None)
            return real["close"](fd)

        def _write(fd, data):
            tracked = rec._fds.get(fd)
            if tracked is None:
                return real["write"](fd, data)
            ino, append = tracked
            offset = os.fstat(fd).st_size if append else os.lseek(fd, 0, os.SEEK_CUR)
            n = real["write"](fd, data)
            rec.ops.append(Op("write", ino=ino, offset=offset, data=bytes(memoryview(data)[:n])))
            return n

        def _ftruncate(fd, size):
            real["ftruncate"](fd, size)
            if fd in rec._fds:
                rec.ops.append(Op("truncate", ino=rec._fds[fd][0], size=size))

        def _fallocate(fd, offset, length):
            before = os.fstat(fd).st_size
            real["posix_fallocate"](fd, offset, length)
            after = os.fstat(fd).st_size
            if fd in rec._fds and after > before:  # room taken, read back as zeros
                rec.ops.append(Op("truncate", ino=rec._fds[fd][0], size=after))

        def _truncate(path, size):
            real["truncate"](path, size)
            if not isinstance(path, int) and rec._rel(path) is not None:
                rec.ops.append(Op("truncate", ino=os.stat(path).st_ino, size=size))

        def _fsync(fd):
            real["fsync"](fd)
            if fd in rec._fds:
                rec.ops.append(Op("fsync", ino=rec._fds[fd][0]))

        def _mkdir(path, mode=0o777, *, dir_fd=None):
            real["mkdir"](path, mode, dir_fd=dir_fd)
            rel = rec._rel(path)
            if rel is not None:
                rec.ops.append(Op("mkdir", ino=os.stat(path).st_ino, path=rel))

        def _rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None, which="replace"):
            real[which](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            a, b = rec._rel(src), rec._rel(dst)
            if a is not None and b is not None:
                rec.ops.append(Op("rename", ino=os.lstat(dst).st_ino, path=a, dest=b))

        def _unlink(path, *, dir_fd=None, which="unlink"):
            rel = rec._rel(path)
            real[which](path, dir_fd=dir_fd)
            if rel is not None:
                rec.ops.append(Op("unlink", path=rel))

        def _link(src, dst, *a, **k):
            real["link"](src, dst, *a, **k)
            b = rec._rel(dst)
            if b is not None:
                rec.ops.append(Op("create", ino=os.lstat(dst).st_ino, path=b))

        os.open = _open
        os.close = _close
        os.write = _write
        os.ftruncate = _ftruncate
        os.posix_fallocate = _fallocate
        os.truncate = _truncate
        os.fsync = _fsync
        os.fdatasync = _fsync
        os.mkdir = _mkdir
        os.rename = lambda s, d, **k: _rename(s, d, which="rename", **k)
        os.replace = lambda s, d, **k: _rename(s, d, which="replace", **k)
        os.unlink = _unlink
        os.remove = lambda p, **k: _unlink(p, which="remove", **k)
        os.rmdir = lambda p, **k: _unlink(p, which="rmdir", **k)
        os.link = _link
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            setattr(os, name, fn)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def durable_upto(ops: list[Op], base: Image, k: int) -> list[bool]:
    """For each of ``ops[:k]``: is it durable at a crash just after op ``k - 1``?"""
    names = dict(base.names)  # path -> inode, to find the inode of a parent folder
    root_ino = -1
    durable = [False] * k
    pending_data: dict[int, list[int]] = {}
    pending_entry: dict[int, list[int]] = {}  # folder inode -> entry ops in it
    for i, op in enumerate(ops[:k]):
        if op.kind in DATA:
            pending_data.setdefault(op.ino, []).append(i)
        elif op.kind in ENTRY:
            folders = {_parent(op.path)} | ({_parent(op.dest)} if op.kind == "rename" else set())
            for folder in folders:
                ino = names.get(folder, root_ino) if folder else root_ino
                pending_entry.setdefault(ino, []).append(i)
            if op.kind in ("create", "mkdir"):
                names[op.path] = op.ino
            elif op.kind == "rename":
                names[op.dest] = names.pop(op.path, op.ino)
        elif op.kind == "fsync":
            for j in pending_data.pop(op.ino, []):
                durable[j] = True
            for j in pending_entry.pop(op.ino, []):
                durable[j] = True
        else:
            durable[i] = True  # marks
    return durable


@dataclass(frozen=True)
class CrashState:
    point: int  # ops[:point] were issued before the power cut
    how: str  # what the state keeps of what was not yet durable
    files: dict[str, bytes | None]
    completed: tuple[str, ...]  # marks reached before the cut

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for name, data in sorted(self.files.items()):
            h.update(name.encode() + b"\0" + (b"D" if data is None else b"F" + data) + b"\0")
        return h.hexdigest()


def crash_states(base: Image, ops: list[Op], root_ino: int) -> Iterator[CrashState]:
    """Every distinct state after a power cut at each point of ``ops``.

    ``root_ino`` is the inode of the workload's root folder (an ``fsync`` of it makes
    entries at the top level durable).
    """
    ops = [Op("fsync", ino=-1) if o.kind == "fsync" and o.ino == root_ino else o for o in ops]
    seen: set[str] = set()
    for k in range(len(ops) + 1):
        if k and ops[k - 1].kind == "mark":
            continue  # the same state as just before the mark
        durable = durable_upto(ops, base, k)
        loose = [i for i in range(k) if not durable[i] and ops[i].kind != "mark"]
        completed = tuple(o.label for o in ops[:k] if o.kind == "mark")
        variants: list[tuple[str, set[int], int | None]] = [
            ("all kept (SIGKILL)", set(loose), None),
            ("unsynced lost", set(), None),
        ]
        for n in range(1, len(loose)):
            variants.append((f"first {n} unsynced kept", set(loose[:n]), None))
        for i in loose:
            variants.append((f"op {i} ({ops[i].kind}) lost, later kept", set(loose) - {i}, None))
            if ops[i].kind == "write" and len(ops[i].data) > 1:
                variants.append((f"op {i} written in part", set(loose), i))
        for how, kept, torn in variants:
            image = base.copy()
            for i in range(k):
                if durable[i] or i in kept:
                    image.apply(ops[i], partial=(i == torn))
            state = CrashState(k, how, image.visible(), completed)
            if state.key not in seen:
                seen.add(state.key)
                yield state


def materialise(state: CrashState, into: Path) -> Path:
    """Write ``state`` into a fresh folder ``into`` (emptied first) and return it."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for name, data in sorted(state.files.items(), key=lambda kv: kv[0].count("/")):
        path = into / name
        if data is None:
            path.mkdir(exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return into
