"""PartialFile: media hashed and written by a writer thread while the cable is read."""

from __future__ import annotations

import hashlib
import os

import pytest

from dock.exc import DockError, MediaMismatch
from dock.store import Store


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    yield store
    store.close()


def _complete(partial, data: bytes) -> None:
    """Finish and sync ``partial``; the file on disk must then hold exactly ``data``."""
    partial.finish()
    partial.sync()
    assert partial.path.read_bytes() == data


def test_frames_are_hashed_written_and_verified(store):
    data = os.urandom(3 * 256 * 1024 + 17)
    partial = store.partial("cam-1", "media/20260101/a.ts", len(data), _digest(data))
    for i in range(0, len(data), 256 * 1024):
        partial.write(bytearray(data[i : i + 256 * 1024]))
    _complete(partial, data)


def test_more_bytes_than_signed_are_refused_at_once(store):
    partial = store.partial("cam-1", "media/20260101/b.ts", 10, _digest(b"0" * 10))
    partial.write(b"0" * 8)
    with pytest.raises(MediaMismatch, match="more than the 10 bytes"):
        partial.write(b"0" * 3)
    partial.discard()


def test_a_suspended_file_resumes_with_the_same_hash(store):
    data = os.urandom(100_000)
    first = store.partial("cam-1", "media/20260101/c.ts", len(data), _digest(data))
    first.write(data[:60_000])
    first.suspend()  # the cable was pulled
    second = store.partial("cam-1", "media/20260101/c.ts", len(data), _digest(data))
    assert second.offset == 60_000
    second.write(data[60_000:])
    _complete(second, data)


def test_a_failed_write_is_reported_not_lost(store):
    partial = store.partial("cam-1", "media/20260101/d.ts", 10, _digest(b"1" * 10))
    os.close(partial._fd)  # the store's disk goes away under the writer
    partial._fd = os.open(os.devnull, os.O_RDONLY)
    partial.write(b"1" * 10)
    with pytest.raises(DockError, match="could not write"):
        partial.finish()
    partial.discard()
