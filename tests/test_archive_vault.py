"""Encryption at rest, on both backends: a document of a confidential case is unreadable
on disk without the archive's keys, opens only through the archive's access path, and
fails loudly when its ciphertext or its wrapped key is altered; a case classified above
internal later has its plain documents sealed and the plain file removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import Refused
from archive.service import Archive
from archive.vault import VaultError
from simulator.clock import SimClock

SECRET = b"Witness statement: the trade secret is 42 parts of resin per 100.\n" * 2000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


def files_hold(folder: Path, needle: bytes) -> bool:
    """Whether any file under ``folder`` (the archive: documents, database, WAL, audit
    log) holds ``needle``: a copy of the disk."""
    for path in folder.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            return True
    return False


def test_a_confidential_document_is_unreadable_on_disk(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + DAY))
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        arch.add_user(admin, "qian", "auditor", PW)
        wang, qian = arch.login("wang", PW), arch.login("qian", PW)
        src = tmp_path / "statement.txt"
        src.write_bytes(SECRET)
        secret_case = arch.open_case(wang, "seizure", "seizure", [], [], "business_secret")
        digest = arch.attach_document(wang, secret_case, str(src), "statement")
        plain_case = arch.open_case(wang, "seizure", "seizure", [], [], "internal")
        assert arch.attach_document(wang, plain_case, str(src), "copy") == digest
        assert files_hold(arch.folder, SECRET[:64])  # the internal case's copy is in clear
        # classified up: the plain copy is sealed too, and the clear file is gone
        arch.classify(wang, plain_case, "personal_privacy", "names a minor")
        docs = sorted((arch.folder / "documents").iterdir())
        assert len(docs) == 2 and all(p.name.startswith("enc-") for p in docs)
        assert not files_hold(arch.folder, SECRET[:64])
        # readable only through the access path
        with pytest.raises(Refused, match="business_secret"):
            arch.read_document(qian, secret_case, digest, tmp_path / "by-auditor")
        assert not (tmp_path / "by-auditor").exists()
        out = tmp_path / "read.txt"
        assert arch.read_document(wang, secret_case, digest, out) == len(SECRET)
        assert out.read_bytes() == SECRET
        # altered ciphertext: refused, nothing written
        enc = next(p for p in docs if p.stat().st_size > 1000)
        before = enc.read_bytes()
        os.chmod(enc, 0o640)
        enc.write_bytes(before[:-200] + bytes(b ^ 1 for b in before[-200:]))
        readers = [(secret_case, tmp_path / "x1"), (plain_case, tmp_path / "x2")]
        failures = 0
        for number, target in readers:
            try:
                arch.read_document(wang, number, digest, target)
            except VaultError as exc:
                failures += 1
                assert "altered" in str(exc) and not target.exists()
        assert failures == 1
        enc.write_bytes(before[: len(before) // 2])  # cut short
        with pytest.raises(VaultError):
            for number, target in readers:
                arch.read_document(wang, number, digest, tmp_path / f"{target.name}-cut")
        enc.write_bytes(before)
    finally:
        arch.close()
    # without the master key, nothing opens (a copy of the disk without the credential)
    master = tmp_path / "archive" / "key" / "master.key"
    master.rename(tmp_path / "elsewhere.key")
    again = Archive.open(tmp_path / "archive")
    try:
        wang = again.login("wang", PW)
        with pytest.raises(VaultError, match="no master key"):
            again.read_document(wang, secret_case, digest, tmp_path / "nokey")
    finally:
        again.close()
