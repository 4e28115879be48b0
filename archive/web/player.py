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
  the browser's rendition (:class:`archive.web.hls.Rendition`, sent while it is muxed).

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

import json
import logging
import math
import os
from pathlib import Path
from typing import NoReturn

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from ..exc import ArchiveError, NotFound
from ..refs import Removal
from ..session import Session
from . import hls, i18n
from .auth import CurrentSession
from .playback import CHUNK, MediaUnavailable, Player, byte_range
from .render import local_time, render, request_lang

_log = logging.getLogger(__name__)

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
        "error.410": ("已按保存期限删除", "Removed under retention"),
        "player.removed": (
            "这段录像已于 {when} 按保存期限从库中删除，删除人：{who}（保存类别 {category}）。"
            "删除记录见审计日志和基座日志。",
            "This recording was removed from the store under retention on {when} by {who} "
            "(kept as {category}). The audit log and the dock journal record the removal.",
        ),
        "player.removed_some": (
            "以下片段已按保存期限删除，播放时跳过：{files}",
            "These segments were removed under retention and are skipped: {files}",
        ),
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
    """The act, once the access check passed; a 410 page if retention removed all of it."""
    player = player_of(request)
    playback, dev = player.playback(device, seq)
    seqs = [p.seq for p in playback.pieces]
    player.require_view(session, device, dev.officer, seqs)
    gone = player.removals(device, seqs)
    if len(gone) == len(seqs):
        _removed(request, max(gone.values(), key=lambda r: r.removed_utc))
    return player, playback, dev, gone


def _removed(request: Request, removal: Removal) -> NoReturn:
    """The 410 page: removed under retention, when, by whom, under what category."""
    raise HTTPException(
        410,
        i18n.translate(
            "player.removed",
            request_lang(request),
            when=local_time(removal.removed_utc, request.app.state.tz).striptags(),  # text
            who=removal.by_user,
            category=removal.category,
        ),
    )


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
    request: Request, session: CurrentSession, device: str, seq: int, t: float | None = None
) -> Response:
    """The player page: the act of record ``seq``, its timeline, key moments, stoppages;
    ``t``: start that many seconds after the act started (by the clock, as findings are
    timed), else at the segment or moment ``seq`` names."""
    player, playback, dev, gone = _checked_act(request, session, device, seq)
    lang = request_lang(request)
    if t is not None and not math.isfinite(t):
        raise ArchiveError(f"t={t}: not a number of seconds")
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
        missing=[
            p.file.rsplit("/", 1)[-1]
            for p in playback.pieces
            if p.seq in missing and p.seq not in gone
        ],
        removed=[p.file.rsplit("/", 1)[-1] for p in playback.pieces if p.seq in gone],
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
    player, playback, dev, _ = _checked_act(request, session, device, seq)
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
    gone = player.removals(device, [piece.seq])
    if gone:
        _removed(request, gone[piece.seq])
    ref = player.ref(playback, dev, piece)
    headers = {"Cache-Control": "no-store", "Accept-Ranges": "bytes"}  # no disk cache
    try:
        path = player.stored_file(ref)
        if path is not None:
            return _ranged_file(request, path, ref.size, headers)
        if request.headers.get("range"):
            return _ranged_bytes(request, player.whole(ref), headers)
        got = player.rendition(ref)
    except MediaUnavailable as exc:
        _log.warning("segment %s of %s not served: %s", segment, device, exc)
        if exc.status == 404:
            raise NotFound(str(exc)) from None  # the 404 page with this line
        raise HTTPException(exc.status, str(exc)) from None
    if isinstance(got, bytes):
        return _ranged_bytes(request, got, headers)
    return StreamingResponse(got, media_type="video/mp2t", headers=headers)


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
