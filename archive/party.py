"""The party's copy: an act's segments joined into one MP4 that plays anywhere, with the
requester and date burned in, and a signed record of how it was derived.

Why a derived file and not the originals: a party needs something a phone or a laptop
plays (MPEG-TS segments of a minute each do not), and a copy that names who it was given
to, so that a copy passed on is traceable (Art. 36). Why the derivation is signed: the
copy is not evidence by itself; its record names the SHA-256 of every source segment (the
same hashes the camera signed), what was done, by whom, for whom, and the output's
SHA-256, signed with the archive's key, so anyone can see it comes from the originals and
how. The originals are never changed.

The watermark names the requester as the request records them, in Chinese or any script
(:mod:`archive.watermark`: a CJK TrueType font, rendered once per copy, burned into the
luma of every frame); the derivation record names the lines, the font file and its SHA-256.

The MP4 is written to a temporary file beside ``out``, fsynced and renamed; so is the
record (``<out>.derivation.json``), after it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from evidence.clock import SystemClock, format_utc
from evidence.exc import EvidenceError
from evidence.identity import DeviceIdentity
from evidence.media import hash_file
from evidence.storage import atomic_write_bytes, fsync_dir

from .signed import ArchiveMessage
from .watermark import Watermark, find_font, render_watermark

__all__ = ["Derivation", "PartyCopy", "PartyCopyError", "make_party_copy", "watermark_lines"]

PURPOSE = "bodycam-party-copy-v1"
DERIVATION_SUFFIX = ".derivation.json"
CRF = 23
AUDIO_BITRATE = 64_000


class PartyCopyError(EvidenceError):
    """The copy cannot be made as asked (a source altered, no segments)."""


class Derivation(ArchiveMessage):
    """A signed message (journal-format.md section 4) of kind ``derivation``: ``device``
    is the signer's id (the archive's), ``body`` says what was derived from what."""

    KIND = "derivation"
    MAX_BYTES = 1 << 20
    WHAT = "derivation record"


@dataclass(frozen=True)
class PartyCopy:
    path: Path
    record_path: Path
    derivation: Derivation
    frames: int
    seconds: float  # the copy's duration


def watermark_lines(requester: str, date: str, request: str = "") -> list[str]:
    """What the watermark says, zh-CN first: for whom, when, and which request (white
    space in the name, a line break say, becomes one space: the lines are the layout's)."""
    requester = " ".join(requester.split())
    zh = f"仅供 {requester} 使用 · {date} 复制"
    en = f"copy for {requester} only · {date}"
    if request:
        zh, en = f"{zh} · 申请 {request}", f"{en} · request {request}"
    return [zh, en]


def _sources(segments: Sequence[Any], expected: Sequence[str] | None) -> list[dict[str, Any]]:
    if not segments:
        raise PartyCopyError("no segments given: a copy needs at least one")
    if expected is not None and len(expected) != len(segments):
        raise PartyCopyError(f"{len(segments)} segments but {len(expected)} expected hashes")
    found = []
    for i, seg in enumerate(segments):
        path = Path(seg) if _is_path(seg) else Path(seg.name)
        try:
            size, digest = hash_file(path) if _is_path(seg) else _hash_source(seg)
        except OSError as exc:
            raise PartyCopyError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if expected is not None and expected[i] != digest:
            raise PartyCopyError(
                f"{path}: sha256 {digest[:16]}... is not the signed {expected[i][:16]}...: "
                "not copying an altered source"
            )
        found.append({"file": path.name, "size": size, "sha256": digest})
    return found


def _is_path(seg: Any) -> bool:
    return isinstance(seg, (str, os.PathLike))


def _hash_source(seg: Any) -> tuple[int, str]:
    """A sealed source (``archive.sealing.SealedMedia``): it decrypts and checks the
    camera's hash itself."""
    import hashlib

    with seg.open() as f:
        data = f.read()
    return len(data), hashlib.sha256(data).hexdigest()


def _open_av(segment: Any):
    """A segment for PyAV: a path, or a sealed source's checked plaintext in memory."""
    return av.open(str(segment)) if _is_path(segment) else av.open(segment.open())


def make_party_copy(
    segments: Sequence[Any],
    out: str | os.PathLike,
    *,
    requester: str,
    date: str,
    by: str,
    identity: DeviceIdentity,
    expected_sha256: Sequence[str] | None = None,
    request: str = "",
    clock: Any = None,
    font: str | os.PathLike | None = None,
) -> PartyCopy:
    """Join ``segments`` (in order) into the MP4 ``out`` with the requester's name, ``date``
    and ``request`` burned into every frame (:func:`watermark_lines`); sign the derivation
    with ``identity``.

    ``expected_sha256``: the hashes the camera's records sign, checked before anything is
    decoded. A segment is a path, or a sealed recording's source (``open()``: its checked
    plaintext, :class:`archive.sealing.SealedMedia`). ``by``: who made the copy (the
    archivist). ``request``: the request's id.
    ``font``: the watermark's font file (default: :func:`archive.watermark.find_font`).
    """
    out = Path(out)
    text = watermark_lines(requester, date, request)
    font_path = find_font(font)  # before anything is read or written
    sources = _sources(segments, expected_sha256)
    clock = clock or SystemClock()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        frames, seconds, mark = _encode(
            [Path(s) if _is_path(s) else s for s in segments], tmp, text, font_path
        )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        size, digest = hash_file(tmp)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    watermark = mark.record()
    body = {
        "purpose": PURPOSE,
        "request": request,
        "requester": requester,
        "date": date,
        "by": by,
        "sources": sources,
        "operations": [
            f"decoded {len(sources)} MPEG-TS segment(s) in the order listed and joined them",
            f"burned a watermark into the luma of every frame, top left: {' / '.join(mark.lines)!r} "
            f"({watermark['font']['family']} {mark.px} px, white with a black outline)",
            f"encoded H.264 (libx264, crf {CRF}) and AAC ({AUDIO_BITRATE // 1000} kb/s) into MP4, moov first (faststart)",
        ],
        "watermark": watermark,
        "output": {"file": out.name, "size": size, "sha256": digest, "frames": frames},
    }
    derivation = Derivation.sign(identity, format_utc(clock.time_ns()), body)
    record_path = out.with_name(out.name + DERIVATION_SUFFIX)
    atomic_write_bytes(record_path, derivation.to_bytes() + b"\n")
    return PartyCopy(out, record_path, derivation, frames, seconds)


def _encode(
    segments: list[Any], out: Path, text: list[str], font: Path
) -> tuple[int, float, Watermark]:
    """Decode, watermark and re-encode; ``(video frames, duration s, the watermark)``."""
    first = _open_av(segments[0])
    try:
        v0 = first.streams.video[0]
        width, height = v0.codec_context.width, v0.codec_context.height
        fps = v0.average_rate or v0.guessed_rate or Fraction(30)
        a0 = first.streams.audio[0] if first.streams.audio else None
        rate = a0.codec_context.sample_rate if a0 is not None else 0
        layout = a0.codec_context.layout.name if a0 is not None else ""
    finally:
        first.close()
    mark = render_watermark(width, height, text, font)  # once per copy
    container = av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vout = container.add_stream("libx264", rate=fps)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.options = {"preset": "veryfast", "crf": str(CRF)}
        aout = None
        if rate:
            aout = container.add_stream("aac", rate=rate)
            aout.layout = layout
            aout.bit_rate = AUDIO_BITRATE
        frame_count = 0
        samples = 0
        for segment in segments:
            # each segment starts where the video so far ends; sound follows its video
            samples = max(samples, round(frame_count / fps * rate)) if rate else 0
            frame_count, samples = _segment(
                segment, container, vout, aout, frame_count, samples, mark
            )
        for packet in vout.encode():
            container.mux(packet)
        if aout is not None:
            for packet in aout.encode():
                container.mux(packet)
    finally:
        container.close()
    return frame_count, float(frame_count / fps), mark


def _segment(segment, container, vout, aout, frame_count, samples, mark: Watermark):
    src = _open_av(segment)
    try:
        streams = [src.streams.video[0]] + (
            [src.streams.audio[0]] if aout and src.streams.audio else []
        )
        for frame in src.decode(*streams):
            if isinstance(frame, av.VideoFrame):
                planes = frame.to_ndarray(format="yuv420p")
                mark.burn(planes, frame.height)
                marked = av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv420p")
                marked.pts = frame_count
                marked.time_base = 1 / Fraction(vout.average_rate or 30)
                frame_count += 1
                for packet in vout.encode(marked):
                    container.mux(packet)
            else:
                frame.pts = samples
                frame.time_base = Fraction(1, aout.codec_context.sample_rate)
                samples += frame.samples
                for packet in aout.encode(frame):
                    container.mux(packet)
    finally:
        src.close()
    return frame_count, samples
