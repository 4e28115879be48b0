"""The player: an act played in the browser across its segments, with its key moments.

Routes (``router``):

- ``GET /play/{device}/{seq}`` (``play_recording``): the player page of the act that
  record ``seq`` of ``device`` belongs to (its first record, a segment, a marker...), from
  that segment or moment, or from ``?t=SECONDS`` after the act's start (its first
  record's time: a finding at ``utc`` is ``utc - start_utc`` seconds in);
- ``GET /play/{device}/{seq}/index.m3u8`` (``play_playlist``): its HLS media playlist
  (:func:`archive.web.hls.media_playlist`);
- ``GET /play/{device}/{seq}/media/{segment}.ts`` (``play_segment``): one segment, with
  HTTP Range: the stored bytes as the camera signed them, or, where its sound has a hole,
  the browser's rendition (:func:`archive.web.hls.fill_audio_holes`).

Every request asks :meth:`archive.service.Archive.require` ("view") for each recording it
touches, with the classification of every case that holds it (a recording in no case counts
as internal and names its camera's officer), so a refusal is logged and audited; opening the
page is audited as a view. A segment is checked against the camera's signed size and
SHA-256 before any byte leaves (a verdict kept per file state), so a damaged file is an
HTTP error naming it, never a traceback and never changed media. Media of a case above
internal is sealed at rest (:mod:`archive.sealing`): it is decrypted in memory, through the
archive's key and only after the same check, and its plaintext checked against the
camera's hash; nothing decrypted is written to disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from ..exc import ArchiveError, NotFound
from ..policy import Material
from ..refs import RecordingRef
from ..schema import cases, entries
from ..session import Session
from . import hls, i18n
from .auth import CurrentSession
from .render import render, request_lang

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
        the camera's officer."""
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
        held = {r.seq for r in rows}
        if wanted - held:
            label = f"recordings of {device}"
            found[""] = Material("internal", frozenset({officer} - {""}), label)
        return list(found.values())

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

    def rendition(self, ref: RecordingRef) -> bytes:
        """What the browser plays of a segment that cannot be served from its file: the
        plaintext of a sealed one, and, where its sound has holes, the rendition with them
        filled (:func:`archive.web.hls.fill_audio_holes`). Kept in memory a while."""
        key = (ref.device, ref.sha256)
        data = self._cache.get(key)
        if data is not None:
            return data
        plain = self._plaintext(ref)
        try:
            holes = hls.scan(plain)
            data = hls.fill_audio_holes(plain) if holes is not None else plain
        except hls.MediaError as exc:
            raise MediaUnavailable(f"{ref.file} cannot be played: {exc}", 422) from None
        self._holes[ref.sha256] = holes is not None
        path = ref.path(self.archive.store_root)
        if holes is None and os.path.lexists(path):  # served from its file from now on
            self._checked[(ref.device, ref.file)] = _state(path)
        else:
            self._cache.put(key, data)
        return data

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


# -- the routes ------------------------------------------------------------------------

router = APIRouter()

STOPPAGE_REASONS: dict[str, tuple[str, str]] = {
    "weather": ("天气原因", "weather"),
    "camera": ("摄像头故障", "camera fault"),
    "storage_full": ("存储已满", "storage full"),
    "storage_stalled": ("存储卡无响应", "storage stalled"),
    "writer_fault": ("录像程序故障", "recorder fault"),
    "battery_critical": ("电量耗尽", "battery critical"),
    "overheat": ("设备过热", "overheating"),
    "microphone": ("麦克风故障", "microphone fault"),
}
"""Every reason a camera journals for a stoppage (firmware.state.STOPPAGE_REASONS)."""

i18n.add(
    {
        "player.title": ("播放录像", "Playback"),
        "player.heading": ("{device} 的执法记录", "Recording of {device}"),
        "player.act": ("执法过程", "Act"),
        "player.procedure": ("执法程序", "Procedure"),
        "player.no_procedure": ("未选择", "none chosen"),
        "player.officer": ("执法人员", "Officer"),
        "player.span": ("记录时间", "Recorded"),
        "player.length": ("时长", "Length"),
        "player.segments": ("{n} 个片段", "{n} segments"),
        "player.timeline": ("时间轴（点击定位）", "Timeline (click to seek)"),
        "player.moments": ("重点环节", "Key moments"),
        "player.no_moments": ("本次执法没有标记重点环节。", "No key moment was marked."),
        "player.stoppages": ("中止记录", "Stoppages"),
        "player.moment_other": ("其他需要音像记录的情况", "other matters to record"),
        "player.at": ("时间", "Time"),
        "player.position": ("播放位置", "Position"),
        "player.missing": (
            "以下片段不在存储中，播放时跳过：{files}",
            "These segments are not in the store and are skipped: {files}",
        ),
        "player.sealed": (
            "本录像属于密级案卷，已加密存储；仅在服务器内存中解密供您观看。",
            "This recording belongs to a confidential case and is sealed at rest; it is "
            "decrypted in the server's memory only, for you to watch.",
        ),
        "player.osd": (
            "画面上的时间与设备信息（OSD）是录制时写入的原始画面。",
            "The time and device overlay (OSD) is part of the recorded frames.",
        ),
        "player.media_error": ("无法播放：{reason}", "Cannot play: {reason}"),
        "player.original": ("原始文件", "original file"),
        "player.no_script": (
            "播放需要启用 JavaScript（hls.js）。",
            "Playback needs JavaScript (hls.js).",
        ),
        **{f"stoppage.{k}": v for k, v in STOPPAGE_REASONS.items()},
    }
)


def player_of(request: Request) -> Player:
    """The app's one :class:`Player` (made at the first request)."""
    state = request.app.state
    player = getattr(state, "player", None)
    if player is None:
        player = state.player = Player(state.archive)
    return player


def play_url(device: str, seq: int, t: float | None = None) -> str:
    """The player page of ``device``'s record ``seq`` (``?t=`` seconds after its act's
    start, wall-clock)."""
    base = f"/play/{device}/{seq}"
    return base if t is None else f"{base}?t={t:.1f}"


def _checked_act(request: Request, session: Session, device: str, seq: int):
    player = player_of(request)
    playback, dev = player.playback(device, seq)
    player.require_view(session, device, dev.officer, [p.seq for p in playback.pieces])
    return player, playback, dev


def _moment_label(lang: str, procedure: str | None, moment: str) -> str:
    from evidence.procedures import OTHER, load_procedures

    if moment == OTHER:
        return i18n.translate("player.moment_other", lang)
    proc = load_procedures().get(procedure or "")
    if proc is not None:
        try:
            m = proc.moment(moment)
        except KeyError:
            return moment
        return m.zh if lang == "zh-CN" else m.en
    return moment


@router.get("/play/{device}/{seq}", name="play_recording")
def play_recording(
    request: Request,
    session: CurrentSession,
    device: str,
    seq: int,
    t: Annotated[float | None, Query(allow_inf_nan=False, ge=-1e9, le=1e9)] = None,
) -> Response:
    """The player page: the act of record ``seq``, its timeline, key moments, stoppages;
    ``t``: start that many seconds after the act started (by the clock, as findings are
    timed), else at the segment or moment ``seq`` names."""
    player, playback, dev = _checked_act(request, session, device, seq)
    lang = request_lang(request)
    start = playback.start_of(seq) if t is None else playback.time_at(t)
    missing = set(player.missing(playback, dev))
    sealed = [
        p.seq
        for p in playback.pieces
        if p.seq not in missing and not os.path.lexists(dev.folder / p.file)
    ]
    player.archive.audit_now(
        "view",
        session,
        f"recording {device}:{playback.start_seq}",
        {"what": "play", "segments": len(playback.pieces), "sealed": len(sealed), "from": seq},
    )
    marks = [
        {
            "kind": m.kind,
            "t": round(m.t, 3),
            "seq": m.seq,
            "utc": m.utc,
            "label": _moment_label(lang, playback.procedure, m.label)
            if m.kind == "moment"
            else i18n.translate(f"stoppage.{m.label}", lang),
            "detail": m.detail,
        }
        for m in playback.marks
    ]
    data = {
        "playlist": f"/play/{device}/{seq}/index.m3u8",
        "start": round(start, 3),
        "duration": round(playback.duration_s, 3),
        "pieces": [
            {
                "seq": p.seq,
                "offset": p.offset_s,
                "duration": p.duration_s,
                "start_utc": p.start_utc,
                "discontinuity": p.discontinuity,
                "missing": p.seq in missing,
            }
            for p in playback.pieces
        ],
        "marks": marks,
        "lang": lang,
        "tz": getattr(request.app.state.tz, "key", None),
        "error_text": i18n.translate("player.media_error", lang, reason="{reason}"),
    }
    return render(
        request,
        "player.html",
        playback=playback,
        device=device,
        officer=dev.officer,
        marks=marks,
        missing=[p.file.rsplit("/", 1)[-1] for p in playback.pieces if p.seq in missing],
        sealed=bool(sealed),
        data=json.dumps(data, ensure_ascii=False).replace("<", "\\u003c"),
        clock=_clock,
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@router.get("/play/{device}/{seq}/index.m3u8", name="play_playlist")
def play_playlist(request: Request, session: CurrentSession, device: str, seq: int) -> Response:
    """The act's HLS media playlist (a segment the store lacks is an #EXT-X-GAP)."""
    player, playback, dev = _checked_act(request, session, device, seq)
    text = hls.media_playlist(
        playback,
        lambda p: f"/play/{device}/{seq}/media/{p.seq}.ts",
        gaps=player.missing(playback, dev),
    )
    return Response(
        text,
        media_type="application/vnd.apple.mpegurl",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/play/{device}/{seq}/media/{segment}.ts", name="play_segment")
def play_segment(
    request: Request, session: CurrentSession, device: str, seq: int, segment: int
) -> Response:
    """One segment of the act, with HTTP Range; checked against the camera's signed hash."""
    player = player_of(request)
    playback, dev = player.playback(device, seq)
    piece = playback.piece(segment)
    if piece is None:
        raise NotFound(f"segment {segment} is not part of the act of {device} at record {seq}")
    player.require_view(session, device, dev.officer, [piece.seq])
    ref = player.ref(playback, dev, piece)
    headers = {"Cache-Control": "no-store", "Accept-Ranges": "bytes"}  # no disk cache
    try:
        path = player.stored_file(ref)
        if path is not None:
            return _ranged_file(request, path, ref.size, headers)
        data = player.rendition(ref)
    except MediaUnavailable as exc:
        _log.warning("segment %s of %s not served: %s", segment, device, exc)
        if exc.status == 404:
            raise NotFound(str(exc)) from None  # the 404 page with this line
        raise HTTPException(exc.status, str(exc)) from None
    return _ranged_bytes(request, data, headers)


def _range_or_416(request: Request, size: int) -> tuple[int, int] | None:
    try:
        return byte_range(request.headers.get("range"), size)
    except ValueError as exc:
        raise HTTPException(416, str(exc), headers={"Content-Range": f"bytes */{size}"}) from None


def _ranged_bytes(request: Request, data: bytes, headers: dict[str, str]) -> Response:
    span = _range_or_416(request, len(data))
    if span is None:
        return Response(data, media_type="video/mp2t", headers=headers)
    first, last = span
    headers = headers | {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
    return Response(data[first : last + 1], 206, media_type="video/mp2t", headers=headers)


class _SegmentFile(FileResponse):
    """Starlette's file response (Range, If-Range, 416) in 1 MiB reads, not 64 KiB."""

    chunk_size = 4 * CHUNK


def _ranged_file(request: Request, path: Path, size: int, headers: dict[str, str]) -> Response:
    if request.headers.get("range") or size > 64 * CHUNK:
        return _SegmentFile(path, media_type="video/mp2t", headers=headers)
    return Response(path.read_bytes(), media_type="video/mp2t", headers=headers)
