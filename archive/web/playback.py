"""What the player needs of the archive and the store, and what it keeps between requests.

:class:`Player` (one per console, :func:`archive.web.player.player_of`) finds the act a
record belongs to (each device's journal parsed once until it changes), weighs who may see
its recordings (every case that holds one, through :meth:`archive.service.Archive.require`),
and gives a segment's bytes only once they match the camera's signed size and SHA-256: the
stored file as it lies, the plaintext of a sealed one (decrypted in memory through the
archive's key), or the browser's rendition where its sound has holes
(:class:`archive.web.hls.Rendition`). Renditions and plaintexts are kept in memory only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..exc import ArchiveError, NotFound
from ..policy import Material
from ..refs import RecordingRef, Removal
from ..schema import cases, entries, recordings, removals
from ..session import Session
from . import hls

_log = logging.getLogger(__name__)

RENDITION_CACHE_BYTES = 256 << 20
"""Renditions and decrypted segments kept in memory (a few minutes of 1080p)."""
CHUNK = 1 << 20


class MediaUnavailable(ArchiveError):
    """A segment cannot be served: missing, damaged, or not playable. ``status`` is the
    HTTP status that says which."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Device:
    unit: str
    officer: str
    folder: Path
    records: list[Any]
    acts: list[Any]


class _Lru:
    """Bytes by key, at most ``limit`` bytes in all (the oldest go first)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: Any, data: bytes) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self.size -= len(old) if old is not None else 0
            self._items[key] = data
            self.size += len(data)
            while self.size > self.limit:
                _, gone = self._items.popitem(last=False)
                self.size -= len(gone)


class Player:
    """What the player's routes need of the archive and the store, with what they may keep
    between requests: each device's parsed journal (until the journal changes), each file's
    checked state, and recent renditions (in memory only)."""

    def __init__(self, archive: Any) -> None:
        self.archive = archive
        self._devices: dict[str, tuple[tuple, _Device]] = {}
        self._checked: dict[tuple[str, str], tuple] = {}  # (device, file) -> stat that hashed
        self._holes: dict[str, bool] = {}  # sha256 -> its sound has holes to fill
        self._cache = _Lru(RENDITION_CACHE_BYTES)
        self._lock = threading.Lock()

    # -- the act -----------------------------------------------------------------------

    def _device(self, device: str) -> _Device:
        from dock.compliance import acts_of
        from dock.store import INDEX_NAME, Store
        from evidence.journal import JOURNAL_NAME, readable_records
        from evidence.procedures import load_procedures

        root = Path(self.archive.store_root)
        unit = self.archive._units().get(device)
        if unit is None or not (root / INDEX_NAME).exists():
            raise NotFound(f"device {device!r} is not in the dock store")
        folder = root / unit / device
        journal = folder / JOURNAL_NAME
        try:
            st = journal.stat()
        except OSError:
            raise NotFound(f"device {device!r} has no journal in the dock store") from None
        registry = root / "registry.json"
        reg_st = registry.stat() if registry.exists() else None
        key = (st.st_ino, st.st_size, st.st_mtime_ns, reg_st and reg_st.st_mtime_ns)
        with self._lock:
            kept = self._devices.get(device)
        if kept is not None and kept[0] == key:
            return kept[1]
        store = Store(root)
        try:
            officer = next((e.officer for e in store.registry() if e.device_id == device), "")
            relabels = {s: made for (d, s), made in store.relabels().items() if d == device}
        except Exception as exc:  # an unreadable registry: nothing names the officer
            _log.warning("%s: registry or relabels not readable: %s", root, exc)
            officer, relabels = "", {}
        finally:
            store.close()
        records = readable_records(journal)
        acts = acts_of(
            records,
            load_procedures(),
            officer=officer,
            now_ns=self.archive.clock.time_ns(),
            relabels=relabels,
        )
        found = _Device(unit, officer, folder, records, acts)
        with self._lock:
            self._devices[device] = (key, found)
        return found

    def playback(self, device: str, seq: int) -> tuple[hls.Playback, _Device]:
        """The act of ``device`` that record ``seq`` belongs to, as the player shows it."""
        dev = self._device(device)
        act = hls.act_containing(dev.acts, seq)
        if act is None:
            raise NotFound(f"device {device!r} has no recording with record {seq}")
        playback = hls.playback_of(dev.records, act)
        if not playback.pieces:
            raise NotFound(f"the act of {device} at record {seq} has no segment in the store")
        return playback, dev

    def ref(self, playback: hls.Playback, dev: _Device, piece: hls.Piece) -> RecordingRef:
        return RecordingRef(
            playback.device,
            dev.unit,
            piece.seq,
            piece.file,
            piece.sha256,
            piece.size,
            piece.start_utc,
            piece.end_utc,
        )

    # -- who may see it ------------------------------------------------------------------

    def materials(self, device: str, officer: str, seqs: list[int]) -> list[Material]:
        """What the policy weighs for these recordings: each case that holds one of them
        (its classification and officers), and, for those in no case, ``internal`` naming
        the officer the archive's index recorded for each (as the day page and every other
        check do), or the camera's officer now for one not indexed yet: a camera handed to
        another officer does not hand them its earlier recordings."""
        q = (
            sa.select(entries.c.seq, cases.c.number, cases.c.classification, cases.c.officers)
            .join(cases, cases.c.id == entries.c.case_id)
            .where(entries.c.kind == "recording", entries.c.device == device)
        )
        wanted = set(seqs)
        with self.archive.engine.connect() as conn:
            rows = [r for r in conn.execute(q) if r.seq in wanted]
        found: dict[str, Material] = {}
        for r in rows:
            found[r.number] = Material(
                r.classification, frozenset(json.loads(r.officers)), f"case {r.number}"
            )
        loose = sorted(wanted - {r.seq for r in rows})
        if loose:
            rec = recordings.c
            q = sa.select(rec.seq, rec.officer).where(rec.device == device, rec.seq.in_(loose))
            with self.archive.engine.connect() as conn:
                indexed = dict(conn.execute(q).all())
            label = f"recordings of {device}"
            for who in sorted({indexed.get(seq, officer) for seq in loose}):
                found[f" {who}"] = Material("internal", frozenset({who} - {""}), label)
        return list(found.values())

    def removals(self, device: str, seqs: list[int]) -> dict[int, Removal]:
        """Of these segments of ``device``, those retention removed from the store (the
        ``removals`` table, one query): when, by whom, under what category."""
        q = sa.select(
            removals.c.seq, removals.c.removed_utc, removals.c.by_user, removals.c.category
        ).where(removals.c.device == device, removals.c.seq.in_(sorted(set(seqs))))
        with self.archive.engine.connect() as conn:
            return {r.seq: Removal(r.removed_utc, r.by_user, r.category) for r in conn.execute(q)}

    def require_view(self, session: Session, device: str, officer: str, seqs: list[int]) -> None:
        """The one access check for every recording named (raises Refused, audited)."""
        for material in self.materials(device, officer, seqs):
            self.archive.require(session, "view", material)

    # -- the media -----------------------------------------------------------------------

    def _sealed(self, ref: RecordingRef) -> Any | None:
        try:
            return self.archive.sealed_source(ref)
        except (OSError, ValueError) as exc:
            raise MediaUnavailable(
                f"{ref.file}: the store's journal is unreadable: {exc}", 500
            ) from None

    def _plaintext(self, ref: RecordingRef) -> bytes:
        """The segment's bytes, checked against the camera's signed size and SHA-256."""
        from ..vault import VaultError

        path = ref.path(self.archive.store_root)
        if not os.path.lexists(path):
            source = self._sealed(ref)
            if source is None:
                raise MediaUnavailable(f"{ref.file} is not in the dock store", 404)
            try:
                return source.open().getvalue()  # decrypted in memory, hash checked
            except VaultError as exc:
                raise MediaUnavailable(
                    f"{ref.file}: the sealed recording does not open: {exc}", 409
                ) from None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MediaUnavailable(
                f"{ref.file} cannot be read: {exc.strerror or exc}", 500
            ) from None
        self._check(ref, len(data), hashlib.sha256(data).hexdigest())
        return data

    @staticmethod
    def _check(ref: RecordingRef, size: int, digest: str) -> None:
        if (size, digest) != (ref.size, ref.sha256):
            raise MediaUnavailable(
                f"{ref.file} is damaged: {size} bytes, sha256 {digest[:16]}..., not the "
                f"camera's signed {ref.size} bytes, {ref.sha256[:16]}... (run bodycam-verify "
                "on the store)",
                409,
            )

    def stored_file(self, ref: RecordingRef) -> Path | None:
        """The clear original's path when it can be served as it lies (checked once per
        file state against the signed hash), else None (sealed, or its sound has holes)."""
        if self._holes.get(ref.sha256, True):
            return None
        path = ref.path(self.archive.store_root)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MediaUnavailable(
                f"{ref.file} cannot be read: {exc.strerror or exc}", 500
            ) from None
        state = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        key = (ref.device, ref.file)
        if self._checked.get(key) != state:
            size, digest = _hash_path(path)
            self._check(ref, size, digest)
            self._checked[key] = state
        return path

    def rendition(self, ref: RecordingRef) -> bytes | Iterator[bytes]:
        """What the browser plays of a segment that cannot be served from its file: the
        plaintext of a sealed one, and, where its sound has holes, the rendition with them
        filled (:class:`archive.web.hls.Rendition`). A rendition not made yet comes as
        chunks while PyAV muxes it (the first bytes leave at once); once whole it is kept
        in memory a while, as decrypted plaintexts are."""
        key = (ref.device, ref.sha256)
        data = self._cache.get(key)
        if data is not None:
            return data
        plain = self._plaintext(ref)
        try:
            made = hls.rendition_of(plain)
        except hls.MediaError as exc:
            raise MediaUnavailable(f"{ref.file} cannot be played: {exc}", 422) from None
        self._holes[ref.sha256] = made is not None
        path = ref.path(self.archive.store_root)
        if made is None:
            if os.path.lexists(path):  # served from its file from now on
                self._checked[(ref.device, ref.file)] = _state(path)
            else:
                self._cache.put(key, plain)
            return plain
        return self._muxed(key, ref, made)

    def _muxed(self, key: Any, ref: RecordingRef, made: hls.Rendition) -> Iterator[bytes]:
        parts: list[bytes] = []
        try:
            for chunk in made.chunks():
                parts.append(chunk)
                yield chunk
        except hls.MediaError as exc:  # the response is cut short: the player says so
            _log.error("%s: the rendition failed while it was sent: %s", ref.file, exc)
            raise
        self._cache.put(key, b"".join(parts))

    def whole(self, ref: RecordingRef) -> bytes:
        """:meth:`rendition` in one piece (for a Range request)."""
        got = self.rendition(ref)
        return got if isinstance(got, bytes) else b"".join(got)

    def missing(self, playback: hls.Playback, dev: _Device) -> list[int]:
        """Seqs of the act's segments the store holds neither in clear nor sealed."""
        from evidence.dockjournal import sealed_name

        gone = []
        for p in playback.pieces:
            path = dev.folder / p.file
            if not os.path.lexists(path) and not (dev.folder / sealed_name(p.file)).is_file():
                gone.append(p.seq)
        return gone


def _state(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash_path(path: Path) -> tuple[int, str]:
    from evidence.media import hash_file

    try:
        return hash_file(path)
    except OSError as exc:
        raise MediaUnavailable(f"{path.name} cannot be read: {exc.strerror or exc}", 500) from None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range: bytes=`` header, None for the whole file;
    ValueError when it cannot be satisfied (HTTP 416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # not a range we serve: the whole file (RFC 9110 allows ignoring it)
    first_text, _, last_text = spec.strip().partition("-")
    try:
        if first_text == "":
            length = int(last_text)
            if length <= 0:
                raise ValueError
            first, last = max(0, size - length), size - 1
        else:
            first = int(first_text)
            last = int(last_text) if last_text else size - 1
    except ValueError:
        raise ValueError(f"bad range {header!r}") from None
    if first < 0 or first >= size or last < first:
        raise ValueError(f"range {header!r} is outside the {size} bytes")
    return first, min(last, size - 1)
