"""The journal's core promises: durable signed appends, a chain, torn tails never silent."""

from __future__ import annotations

import os
import stat

import pytest

from evidence.canonical import GENESIS_HASH
from evidence.exc import KeyFileError, TornRecordError
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.media import HashingWriter, hash_file


def test_key_file_is_owner_only_and_never_replaced(tmp_path, identity):
    key = tmp_path / "key" / "device.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(KeyFileError, match="already exists"):
        DeviceIdentity.create(key, "cam-test")
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError, match="owner only"):
        DeviceIdentity.load(key)


def test_records_chain_and_verify(tmp_path, identity):
    journal = Journal(tmp_path / "journal.jsonl", identity)
    first = journal.append("boot", {"firmware": "test"})
    second = journal.append("marker", {"note": "identity checked"})
    assert first.prev == GENESIS_HASH and second.prev == first.hash
    assert journal.head == (1, second.hash)
    for record in journal.records():
        record.verify(identity.public_key_hex)


def test_torn_tail_is_refused_then_kept_when_repaired(tmp_path, identity):
    path = tmp_path / "journal.jsonl"
    Journal(path, identity).append("boot", {})
    with open(path, "ab") as f:
        f.write(b'{"body":{"no')
    with pytest.raises(TornRecordError):
        Journal(path, identity)
    repaired = Journal(path, identity, repair_torn=True)
    kinds = [r.kind for r in repaired.records()]
    assert kinds == ["boot", "torn_tail"]
    assert (
        tmp_path / "journal.torn-{}".format(repaired.records()[1].body["offset"])
    ).read_bytes() == b'{"body":{"no'


def test_hashing_writer_matches_a_second_read(tmp_path):
    writer = HashingWriter(tmp_path, "media/20261127/a.ts")
    for i in range(100):
        writer.write(bytes([i]) * 1000)
    info = writer.close()
    assert (info.size, info.sha256) == hash_file(tmp_path / info.file)
