"""Written documents of case files: hashed in, encrypted at rest above ``internal``.

A mixin of :class:`archive.service.Archive`. A document of a public or internal case is
kept as ``documents/<sha256>`` (0440, once per content). A document of a case classified
above internal is kept only as ``documents/enc-<random id>``, encrypted with its own
data key (:mod:`archive.vault`), the key wrapped by the master key in the database; and
when a case is classified above internal later, its plain documents are encrypted then
and the plain file removed unless another case still holds it in the clear. Reading goes
through :meth:`read_document` only: the access check, the audit, the hash check.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from evidence.storage import fsync_dir, makedirs_durable

from .exc import ArchiveError, NotFound
from .policy import rank
from .schema import entries
from .session import Session
from .vault import Vault, VaultError, decrypt_stream, encrypt_stream, next_key_path

DOCUMENTS = "documents"
CLEAR_UP_TO = "internal"


@dataclass(frozen=True)
class StoredDocument:
    sha256: str  # of the plaintext
    size: int
    stored: str | None = None  # the encrypted file's name; None: documents/<sha256>
    wrapped_key: str | None = None


def needs_encryption(classification: str) -> bool:
    return rank(classification) > rank(CLEAR_UP_TO)


def _sync(fd: BinaryIO) -> None:
    fd.flush()
    os.fsync(fd.fileno())


class Documents:
    """Document storage (mixed into :class:`archive.service.Archive`)."""

    @property
    def vault(self) -> Vault:
        if getattr(self, "_vault", None) is None:
            self._vault = Vault(self.master_key_path, next_key_path(self.folder))
        return self._vault

    def _doc_folder(self) -> Path:
        return makedirs_durable(self.folder / DOCUMENTS, 0o750)

    def store_document(self, source: str | os.PathLike, encrypt: bool) -> StoredDocument:
        """Bring a file into the archive durably (temporary name, fsync, rename, fsync)."""
        source = Path(source)
        if not source.is_file():
            raise ArchiveError(f"{source}: not a readable file")
        folder = self._doc_folder()
        tmp = folder / f".incoming-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(source, "rb") as src, open(tmp, "wb") as out:
                if encrypt:
                    data_key = secrets.token_bytes(32)
                    size, sha256 = encrypt_stream(src, out, data_key)
                else:
                    digest, size = hashlib.sha256(), 0
                    while chunk := src.read(1 << 17):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    sha256 = digest.hexdigest()
                _sync(out)
            os.chmod(tmp, 0o440)
            if encrypt:
                name = f"enc-{secrets.token_hex(16)}"
                wrapped = self.vault.wrap(data_key, name)
                os.replace(tmp, folder / name)
                fsync_dir(folder)
                return StoredDocument(sha256, size, name, wrapped)
            target = folder / sha256
            if target.exists():
                tmp.unlink()
            else:
                os.replace(tmp, target)
                fsync_dir(folder)
            return StoredDocument(sha256, size)
        finally:
            tmp.unlink(missing_ok=True)

    def read_document(
        self, session: Session, number: str, sha256: str, out: str | os.PathLike
    ) -> int:
        """Write a case's document to ``out`` (a new file), after the access check; audited.
        An encrypted one is opened with its unwrapped key; either way its hash is checked."""
        with self.engine.connect() as conn:
            row = self._case_row(conn, number)
            entry = (
                conn.execute(
                    sa.select(entries).where(
                        entries.c.case_id == row["id"],
                        entries.c.kind == "document",
                        entries.c.sha256 == sha256,
                    )
                )
                .mappings()
                .first()
            )
        self.require(session, "view", self.material_of(row))
        if entry is None:
            raise NotFound(f"case {number} has no document {sha256[:16]}...")
        out = Path(out)
        if out.exists():
            raise ArchiveError(f"{out}: already exists; not overwriting it")
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as dst:
                if entry["encrypted"]:
                    path = self.folder / DOCUMENTS / entry["stored"]
                    key = self.vault.unwrap(entry["wrapped_key"], entry["stored"])
                    with open(path, "rb") as src:
                        size, digest = decrypt_stream(src, dst, key, str(path))
                else:
                    path = self.folder / DOCUMENTS / sha256
                    h, size = hashlib.sha256(), 0
                    with open(path, "rb") as src:
                        while chunk := src.read(1 << 17):
                            h.update(chunk)
                            dst.write(chunk)
                            size += len(chunk)
                    digest = h.hexdigest()
                _sync(dst)
            if digest != sha256:
                raise VaultError(f"{path}: the document's content no longer matches its hash")
            os.replace(tmp, out)
        except FileNotFoundError:
            raise VaultError(f"{path}: the document's file is missing") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.audit_now(
            "view",
            session,
            f"case {number}",
            {"what": "document", "sha256": sha256, "title": entry["title"]},
        )
        return size

    def _seal_documents(self, conn: sa.Connection, case_id: int) -> list[str]:
        """Encrypt the case's plain documents (a case classified above internal now);
        the plain files that may be removed once the transaction commits."""
        plain = (
            conn.execute(
                sa.select(entries).where(
                    entries.c.case_id == case_id,
                    entries.c.kind == "document",
                    entries.c.encrypted.is_(False),
                )
            )
            .mappings()
            .all()
        )
        for e in plain:
            sealed = self.store_document(self.folder / DOCUMENTS / e["sha256"], encrypt=True)
            if sealed.sha256 != e["sha256"]:
                raise VaultError(f"documents/{e['sha256']}: altered on disk; not sealing it")
            conn.execute(
                entries.update()
                .where(entries.c.id == e["id"])
                .values(encrypted=True, stored=sealed.stored, wrapped_key=sealed.wrapped_key)
            )
        gone = []
        for digest in {e["sha256"] for e in plain}:
            still = conn.execute(
                sa.select(sa.func.count())
                .select_from(entries)
                .where(
                    entries.c.sha256 == digest,
                    entries.c.kind == "document",
                    entries.c.encrypted.is_(False),
                )
            ).scalar()
            if not still:
                gone.append(digest)
        return gone

    def _remove_plain(self, digests: list[str]) -> None:
        folder = self.folder / DOCUMENTS
        for digest in digests:
            (folder / digest).unlink(missing_ok=True)
        if digests:
            fsync_dir(folder)
