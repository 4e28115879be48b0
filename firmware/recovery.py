"""Recovery at start: after a crash or power cut, sign what the journal does not name yet.

The journal is opened with ``repair_torn=True`` (a torn last line is moved aside and
journaled as ``torn_tail``); then every media file no record names (the segment that was
open at the cut, a photo being written) is hashed as it is on storage and signed with
``recovered: true``, so closed segments are never lost and the open one is kept up to the
cut. An empty or unplayable file is signed too: what is there is what the verifier reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av

from evidence.clock import format_utc, parse_utc
from evidence.journal import Journal
from evidence.layout import MEDIA_DIR
from evidence.media import hash_file

_log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".ts", ".jpg")


def named_media(journal: Journal) -> set[str]:
    """Every media path a record names (segment, photo, or wiped after a receipt)."""
    names: set[str] = set()
    for record in journal.records():
        if record.media is not None:
            names.add(record.media[0])
        elif record.kind == "wiped":
            names.update(f for f in record.body.get("files", []) if isinstance(f, str))
    return names


def unsigned_media(root: Path, journal: Journal) -> list[str]:
    """Media files under ``root/media`` that no record names, oldest name first."""
    media = root / MEDIA_DIR
    if not media.is_dir():
        return []
    known = named_media(journal)
    found = []
    for path in media.rglob("*"):
        if path.suffix in MEDIA_SUFFIXES and path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(root).as_posix()
            if relative not in known:
                found.append(relative)
    return sorted(found, key=lambda r: Path(r).name)


def probe_segment(path: Path) -> tuple[int, int, float]:
    """``(video frames, audio frames, seconds)`` readable in a segment; zeros if none."""
    frames = audio = 0
    first = last = None
    try:
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None:
                    continue
                if packet.stream.type == "video":
                    frames += 1
                    t = float(packet.pts * packet.time_base)
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
                elif packet.stream.type == "audio":
                    audio += 1
            rate = None
            if container.streams.video:
                rate = container.streams.video[0].average_rate
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        _log.warning("%s: unreadable after the cut (%s); signing it as it is", path, exc)
    seconds = 0.0
    if first is not None and last is not None:
        seconds = last - first + (1 / float(rate) if rate else 0.0)
    return frames, audio, seconds


def start_utc_from_name(name: str) -> int | None:
    """The start stamp a segment's name carries (``<device>-YYYYMMDDTHHMMSSmmmZ-<n>``)."""
    try:
        stamp = name.rsplit("-", 2)[-2]
        text = (
            f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
            f"{stamp[13:15]}.{stamp[15:18]}000Z"
        )
        return parse_utc(text)
    except (IndexError, ValueError):
        return None


def recover(
    root: Path, journal: Journal, fallback_utc_ns: int, pending: list[str] | None = None
) -> list[dict[str, Any]]:
    """Sign every unsigned media file as recovered (``pending``: what
    :func:`unsigned_media` already found); returns the bodies journaled."""
    bodies = []
    if pending is None:
        pending = unsigned_media(root, journal)
    for relative in pending:
        path = root / relative
        size, digest = hash_file(path)
        body: dict[str, Any] = {"file": relative, "size": size, "sha256": digest}
        if path.suffix == ".ts":
            frames, audio, seconds = probe_segment(path)
            start = start_utc_from_name(path.stem) or fallback_utc_ns
            body.update(
                start_utc=format_utc(start),
                end_utc=format_utc(start + int(seconds * 1e9)),
                frames=frames,
                audio_frames=audio,
                recovered=True,
            )
            journal.append("segment", body)
        else:
            body["recovered"] = True
            journal.append("photo", body)
        _log.warning("recovered unsigned %s (%d bytes)", relative, size)
        bodies.append(body)
    return bodies
