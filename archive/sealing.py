"""Sealing: the media of confidential cases kept only encrypted in the dock store.

A mixin of :class:`archive.service.Archive`. When a recording is in a case classified
above ``internal`` (attached to one, or its case classified up), the archive seals it:

1. a fresh data key, wrapped by the master key (:mod:`archive.vault`, the recording's
   identity as associated data), is written beside the sealed file as
   ``<unit>/<device>/sealed/<day>/<name>.key`` (write, fsync, rename, fsync the folder);
2. the segment's bytes are encrypted as an authenticated stream (XChaCha20-Poly1305
   secretstream, every chunk bound to the recording's identity) into
   ``sealed/<day>/<name>.sealed``, fsynced and renamed in; the plaintext read on the way
   must hash to the camera's signed SHA-256, or nothing is sealed;
3. the decision is audited (``seal``: the case, the user);
4. the dock journals a signed ``sealed`` record (:meth:`dock.store.Store.seal_media`,
   with the dock's own key from ``dock_config``): the plaintext's size and SHA-256, the
   sealed file's name, size and SHA-256, the authority (archive, case, user, audit seq);
5. only then is the clear file removed (the folder fsynced).

A crash at any point leaves the clear file or the complete, recorded sealed file (both,
between 4 and 5): :meth:`seal_pending` (``bodycam-archive seal``) finishes or redoes it.
The wrapped keys live in their own small files, so rotating the master key
(:meth:`rotate_master_key`) rewrites keys, never evidence. Reading is only through a
court bundle or a party copy of an approved export (:meth:`sealed_source`, called by
:meth:`archive.copies.CopyRequests.export_copy` after the access check), which decrypts
into the output and checks the camera's hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from evidence.dockjournal import key_name, sealed_name
from evidence.storage import fsync_dir, makedirs_durable

from .documents import needs_encryption
from .exc import ArchiveError
from .refs import RecordingRef
from .schema import cases, entries
from .session import Session
from .vault import Vault, VaultError, decrypt_stream, encrypt_stream, next_key_path

_log = logging.getLogger(__name__)

SEALED_MAGIC = b"bodycam-sealed-1\n"
KEY_FORMAT = "bodycam-sealed-key-1"
WRITE_BLOCK = 1 << 20
_TMP = ".sealing-"


def identity_ad(device: str, file: str, sha256: str) -> bytes:
    """What a sealed file and its wrapped key are bound to: a key or a sealed file moved
    to another recording does not open."""
    return f"bodycam-sealed-v1\n{device}\n{file}\n{sha256}".encode()


class SealError(ArchiveError):
    """A recording could not be sealed (the store's copy altered, no dock key...)."""


class _FdOut:
    """A buffered writer on a raw descriptor (``os.write``: what crash tests log)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf, self.size = fd, bytearray(), 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= WRITE_BLOCK:
            self.flush()

    def flush(self) -> None:
        view = memoryview(bytes(self.buf))
        self.digest.update(view)
        self.size += len(view)
        while view:
            view = view[os.write(self.fd, view) :]
        self.buf.clear()


def _write_new(path: Path, data: bytes) -> None:
    """A small file, durably: temporary name, fsync, rename, fsync the folder."""
    tmp = path.with_name(f"{_TMP}{secrets.token_hex(4)}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class SealedMedia:
    """A sealed recording, opened only through an approved export: decrypts with its
    unwrapped key and checks the plaintext against the camera's signed hash."""

    ref: RecordingRef
    sealed: Path
    key_file: Path
    vault: Vault

    @property
    def name(self) -> str:
        return Path(self.ref.file).name

    def _key(self) -> bytes:
        try:
            doc = json.loads(self.key_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VaultError(f"{self.key_file}: the sealed recording's key is missing") from None
        except (OSError, ValueError) as exc:
            raise VaultError(f"{self.key_file}: not a sealed recording's key ({exc})") from None
        return self.vault.unwrap(
            doc.get("wrapped", ""),
            identity_ad(self.ref.device, self.ref.file, self.ref.sha256).hex(),
        )

    def copy_to(self, out: BinaryIO) -> tuple[int, str]:
        """Write the plaintext to ``out``; ``(size, sha256)``, checked against the record."""
        ad = identity_ad(self.ref.device, self.ref.file, self.ref.sha256)
        try:
            with open(self.sealed, "rb") as src:
                got = decrypt_stream(
                    src, out, self._key(), str(self.sealed), magic=SEALED_MAGIC, ad=ad
                )
        except FileNotFoundError:
            raise VaultError(f"{self.sealed}: the sealed recording is missing") from None
        if got != (self.ref.size, self.ref.sha256):
            raise VaultError(
                f"{self.sealed}: opens to {got[0]} bytes, sha256 {got[1][:16]}..., not the "
                "camera's signed recording"
            )
        return got

    def open(self) -> BinaryIO:
        """The checked plaintext, in memory (one segment: for decoding a party copy)."""
        buf = io.BytesIO()
        self.copy_to(buf)
        buf.seek(0)
        return buf


class Sealing:
    """Sealing of confidential media (mixed into :class:`archive.service.Archive`)."""

    # -- where -------------------------------------------------------------------------

    def _folder_of(self, ref: RecordingRef) -> Path:
        return Path(self.store_root) / ref.unit / ref.device

    def sealed_paths(self, ref: RecordingRef) -> tuple[Path, Path]:
        """The sealed file and its key file of ``ref`` (whether or not they exist)."""
        name = sealed_name(ref.file)
        return self._folder_of(ref) / name, self._folder_of(ref) / key_name(name)

    def is_sealed(self, device: str, file: str) -> bool:
        """Whether the store keeps ``device``'s ``file`` only sealed (no clear file)."""
        unit = self._units().get(device, "")
        folder = Path(self.store_root) / unit / device
        return not os.path.lexists(folder / file) and (folder / sealed_name(file)).is_file()

    def _media_vault(self) -> Vault:
        return Vault(self.master_key_path, next_key_path(self.folder))

    def sealed_source(self, ref: RecordingRef) -> SealedMedia | None:
        """The sealed form of ``ref`` if the dock journal records it sealed, else None.
        Only the export path calls this, after its access check."""
        from dock.store import store_ledger

        ledger = store_ledger(self.store_root, ref.device)
        if ledger is None or ref.file not in ledger.sealed:
            return None
        sealed, key_file = self.sealed_paths(ref)
        return SealedMedia(ref, sealed, key_file, self._media_vault())

    def require_sealed_clearance(
        self, session: Session, refs: list[RecordingRef], material: Any, action: str = "export"
    ) -> None:
        """A recording that another, higher-classified case also holds (and so sealed) is
        exported, or filed into a lower case, only by someone the policy clears for that
        case too: the copy or the list of an internal case must not open or name what a
        state-secret case made confidential."""
        from dataclasses import replace

        from .policy import Material, rank

        wanted = {(r.device, r.seq) for r in refs}
        q = (
            sa.select(entries.c.device, entries.c.seq, cases.c.number, cases.c.classification)
            .add_columns(cases.c.officers)
            .join(cases, cases.c.id == entries.c.case_id)
            .where(entries.c.kind == "recording")
            .where(entries.c.device.in_(sorted({r.device for r in refs})))
        )
        with self.engine.connect() as conn:
            rows = [r for r in conn.execute(q) if (r.device, r.seq) in wanted]
        seen: set[str] = set()
        for r in rows:
            if r.number in seen or not needs_encryption(r.classification):
                continue
            if rank(r.classification) <= rank(material.classification):
                continue
            seen.add(r.number)
            self.require(
                session,
                action,
                replace(
                    Material(
                        r.classification,
                        frozenset(json.loads(r.officers)),
                        f"recording {r.device}:{r.seq}, also in case {r.number}",
                    ),
                    approved=True,
                ),
            )

    def sealed_source_of(self, unit: str, record: Any) -> SealedMedia | None:
        """:meth:`sealed_source` for a device's media record (the court bundle's hook)."""
        file, size, sha256 = record.media
        b = record.body
        ref = RecordingRef(
            record.device, unit, record.seq, file, sha256, size, b.get("start_utc", ""), ""
        )
        return self.sealed_source(ref)

    def recording_source(self, ref: RecordingRef) -> Path | SealedMedia:
        """The original's path, or its sealed source when the store keeps it sealed (for a
        party copy, after the export's access check)."""
        path = ref.path(self.store_root)
        if not os.path.lexists(path):
            source = self.sealed_source(ref)
            if source is not None:
                return source
        return path

    # -- the dock's key ----------------------------------------------------------------

    def _sealing_store(self, dock_config: str | None = None):
        """The dock store with the dock's own key, loaded as retention's purges load it
        (:meth:`archive.retention.Retention._dock_store`: ``dock_config`` in archive.toml
        names the dock's dock.toml): the ``sealed`` records are the dock's to sign."""
        path = dock_config or getattr(self, "dock_config", "")
        if not path:
            raise SealError(
                "sealing journals through the dock store with the dock's key: set dock_config "
                "in archive.toml to the dock's dock.toml (or give --dock-config)"
            )
        try:
            return self._dock_store(path)
        except ArchiveError as exc:
            raise SealError(str(exc)) from None

    # -- sealing -----------------------------------------------------------------------

    def _confidential_recordings(
        self, number: str | None = None
    ) -> list[tuple[str, str, RecordingRef]]:
        """``(case number, classification, ref)`` of every recording in a case above
        internal (the first such case that holds it), optionally of one case only."""
        q = (
            sa.select(entries, cases.c.number, cases.c.classification)
            .join(cases, cases.c.id == entries.c.case_id)
            .where(entries.c.kind == "recording")
            .order_by(entries.c.id)
        )
        if number:
            q = q.where(cases.c.number == number)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        unit_of = self._units()
        found: dict[tuple[str, int], tuple[str, str, RecordingRef]] = {}
        for e in rows:
            if not needs_encryption(e["classification"]) or (e["device"], e["seq"]) in found:
                continue
            ref = RecordingRef(
                e["device"],
                unit_of.get(e["device"], ""),
                e["seq"],
                e["file"],
                e["sha256"],
                e["size"],
                e["start_utc"],
                e["end_utc"],
            )
            found[(e["device"], e["seq"])] = (e["number"], e["classification"], ref)
        return list(found.values())

    def seal_pending(
        self, session: Session, number: str | None = None, *, dock_config: str | None = None
    ) -> dict[str, Any]:
        """Seal every recording of the cases above internal (or of case ``number``) that
        is still in clear, finishing seals a crash cut short. Each case's sealing is a
        ``case_change`` on it (the access check, audited when refused)."""
        todo = self._confidential_recordings(number)
        checked: set[str] = set()
        sealed, already = [], 0
        store = None
        try:
            for case_number, _cls, ref in todo:
                plain = self._folder_of(ref) / ref.file
                sealed_file, _ = self.sealed_paths(ref)
                if not os.path.lexists(plain) and os.path.exists(sealed_file):
                    already += 1
                    continue
                if case_number not in checked:
                    with self.engine.connect() as conn:
                        row = self._case_row(conn, case_number)
                    self.require(session, "case_change", self.material_of(row))
                    checked.add(case_number)
                if store is None:
                    store = self._sealing_store(dock_config)
                sealed.append(self._seal_one(store, session, case_number, ref))
        finally:
            if store is not None:
                store.close()
        return {"sealed": sealed, "already": already}

    def _seal_one(
        self, store: Any, session: Session, number: str, ref: RecordingRef
    ) -> dict[str, Any]:
        """Steps 1-5 of the module's docstring for one recording (resumable)."""
        folder = self._folder_of(ref)
        plain = folder / ref.file
        sealed, key_file = self.sealed_paths(ref)
        ledger = store.ledger(ref.device)
        if ledger is not None and ref.file in ledger.sealed:  # recorded: finish the unlink
            if ledger.sealed[ref.file].name != sealed_name(ref.file):
                raise SealError(f"{ref.device} {ref.file}: sealed under another name")
            made = store.seal_media(ref.device, ref.file, sealed_name(ref.file), {})
            return self._sealed_row(ref, made, resumed=True)
        if not plain.is_file():
            raise SealError(
                f"{ref.unit}/{ref.device}/{ref.file}: neither the clear file nor a recorded "
                "sealed file is in the store: run bodycam-verify on the store"
            )
        where = makedirs_durable(sealed.parent, 0o750)
        for leftover in where.glob(f"{_TMP}*{Path(ref.file).name}*"):
            leftover.unlink()  # a seal cut short before its renames: begun again
        ad = identity_ad(ref.device, ref.file, ref.sha256)
        data_key = secrets.token_bytes(32)
        vault = self._media_vault()
        doc = {
            "format": KEY_FORMAT,
            "device": ref.device,
            "file": ref.file,
            "sha256": ref.sha256,
            "wrapped": vault.wrap(data_key, ad.hex()),
        }
        if key_file.exists():
            os.unlink(key_file)  # an unrecorded seal's key: its sealed file is remade too
        _write_new(key_file, json.dumps(doc, sort_keys=True).encode() + b"\n")
        tmp = where / f"{_TMP}{secrets.token_hex(4)}-{sealed.name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
        try:
            out = _FdOut(fd)
            with open(plain, "rb") as src:
                size, digest = encrypt_stream(src, out, data_key, magic=SEALED_MAGIC, ad=ad)
            out.flush()
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        if (size, digest) != (ref.size, ref.sha256):
            os.unlink(tmp)
            raise SealError(
                f"{ref.unit}/{ref.device}/{ref.file}: the store's copy is {size} bytes, sha256 "
                f"{digest[:16]}..., not the camera's signed {ref.sha256[:16]}...: not sealing "
                "it (run bodycam-verify on the store)"
            )
        os.replace(tmp, sealed)
        fsync_dir(where)
        with self.engine.begin() as conn:
            entry = self._audit(
                conn,
                "seal",
                session,
                f"case {number}",
                {
                    "event": "sealed",
                    "device": ref.device,
                    "seq": ref.seq,
                    "file": ref.file,
                    "sha256": ref.sha256,
                    "sealed_sha256": out.digest.hexdigest(),
                },
            )
        authority = {
            "archive": self.identity.device_id,
            "case": number,
            "user": session.name,
            "audit_seq": entry.seq,
        }
        made = store.seal_media(ref.device, ref.file, sealed_name(ref.file), authority)
        _log.info("sealed %s seq %s (%s) for case %s", ref.device, ref.seq, ref.file, number)
        return self._sealed_row(ref, made, resumed=False)

    @staticmethod
    def _sealed_row(ref: RecordingRef, made: Any, *, resumed: bool) -> dict[str, Any]:
        return {
            "device": ref.device,
            "seq": ref.seq,
            "file": ref.file,
            "sealed_file": made.body["sealed_file"],
            "sealed_sha256": made.body["sealed_sha256"],
            "dock": made.device,
            "dock_seq": made.seq,
            "resumed": resumed,
        }

    def _seal_after(self, session: Session, number: str) -> dict[str, Any]:
        """After an attachment or a classification committed: seal what it made
        confidential. Raises :class:`SealError` saying the change stands but what is
        still in clear (``bodycam-archive seal`` finishes it). The change was refused
        before it was made when the archive cannot seal (:meth:`refuse_unsealable`)."""
        try:
            return self.seal_pending(session, number)
        except (SealError, VaultError, OSError) as exc:
            _log.error("case %s: recordings not sealed yet: %s", number, exc)
            raise SealError(
                f"case {number} changed, but its recordings are not sealed yet: {exc}; "
                "finish with `bodycam-archive seal`"
            ) from None

    def sealing_unavailable(self) -> str | None:
        """Why this archive cannot seal recordings now, or None: no ``dock_config``, a
        dock.toml whose key, trust or store does not load, or no usable master key.
        Read-only (the dock store is not opened: nothing is journaled)."""
        if not getattr(self, "dock_config", ""):
            return (
                "this archive has no dock_config in archive.toml (the dock's dock.toml, "
                "whose key journals each seal)"
            )
        try:
            self._dock_key(self.dock_config)
            self._media_vault()
        except ArchiveError as exc:
            return str(exc)
        return None

    def refuse_unsealable(self, session: Session, row: dict[str, Any], action: str) -> None:
        """Refuse a change that would put recordings of case ``row`` under a classification
        above internal when they cannot be sealed: media of such a case are never left in
        clear at rest. Audited as a refusal; raised before anything is written."""
        why = self.sealing_unavailable()
        if why is None:
            return
        number = row["number"]
        message = (
            f"refused: the recordings of case {number} would be {row['classification']}, "
            f"kept only sealed in the dock store, but {why}: nothing changed (set "
            "dock_config in archive.toml, then try again)"
        )
        _log.warning("%s", message)
        self.audit_now(
            "refusal",
            session,
            f"case {number}",
            {"action": action, "reason": message, "classification": row["classification"]},
        )
        raise SealError(message)

    def _in_clear(self, conn: sa.Connection, case_id: int) -> int:
        """How many recordings of the case lie in clear in the dock store."""
        unit_of = self._units()
        return sum(
            1
            for e in conn.execute(
                sa.select(entries.c.device, entries.c.file).where(
                    entries.c.case_id == case_id, entries.c.kind == "recording"
                )
            )
            if os.path.lexists(
                Path(self.store_root) / unit_of.get(e.device, "") / e.device / e.file
            )
        )

    # -- rotating the master key -------------------------------------------------------

    def rotate_master_key(self, session: Session) -> dict[str, Any]:
        """Re-wrap every data key (documents and sealed media) under a new master key:
        made as ``key/master.next`` (or the credential ``bodycam-archive-master-next``);
        new keys are wrapped by it while the rotation runs, and both keys open. Each key
        is rewritten atomically, so a rotation cut short is resumed by running it again;
        the new key replaces the old one last. Audited (``key``)."""
        from .vault import create_master_key

        self.require(session, "key_manage")
        nxt = next_key_path(self.folder)
        if not nxt.exists():
            create_master_key(nxt)
        vault = Vault(self.master_key_path, nxt)
        self._vault = vault  # documents written meanwhile use it too
        self.audit_now("key", session, "master key", {"event": "rotation started"})
        docs = media = 0
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(entries.c.id, entries.c.stored, entries.c.wrapped_key).where(
                    entries.c.encrypted.is_(True)
                )
            ).all()
        for row_id, stored, wrapped in rows:
            new = vault.rewrap(wrapped, stored)
            if new is not None:
                with self.engine.begin() as conn:
                    conn.execute(
                        entries.update().where(entries.c.id == row_id).values(wrapped_key=new)
                    )
                docs += 1
        for key_file in sorted(Path(self.store_root).glob(f"*/*/sealed/**/*{'.key'}")):
            if key_file.name.startswith(_TMP):
                continue
            doc = json.loads(key_file.read_text(encoding="utf-8"))
            ad = identity_ad(doc["device"], doc["file"], doc["sha256"]).hex()
            new = vault.rewrap(doc["wrapped"], ad)
            if new is not None:
                _write_new(
                    key_file, json.dumps(doc | {"wrapped": new}, sort_keys=True).encode() + b"\n"
                )
                media += 1
        result = {"documents": docs, "media": media, "credential": False}
        creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
        if creds and str(self.master_key_path).startswith(creds):
            result["credential"] = True  # systemd's copy: the operator replaces it
        else:
            os.replace(nxt, self.master_key_path)
            fsync_dir(self.master_key_path.parent)
        self._vault = None
        with self.engine.begin() as conn:
            self._audit(conn, "key", session, "master key", {"event": "rotated"} | result)
        _log.info("master key rotated: %d document keys, %d media keys", docs, media)
        return result


__all__ = ["SEALED_MAGIC", "SealError", "SealedMedia", "Sealing", "identity_ad"]
