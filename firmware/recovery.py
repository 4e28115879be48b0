"""Recovery at start: after a crash or power cut, sign what the journal does not name yet.

The journal is opened with ``repair_torn=True`` (a torn last line is moved aside and
journaled as ``torn_tail``); then every media file no record names (the segment that was
open at the cut, a photo being written) is hashed as it is on storage and signed with
``recovered: true``, so closed segments are never lost and the open one is kept up to the
cut. An empty or unplayable file is signed too: what is there is what the verifier reads.

Before that, :func:`read_journal` reads every line of the journal (the journal itself only
reads its last one to find its head): a line that does not parse, belongs to another
device, or does not chain onto the record before it is *damage*. The recorder journals
new damage once as ``journal_damaged`` (an alert) and goes on recording; records after
the damage still chain on and verify, and the verifier reports the damaged lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from evidence.canonical import GENESIS_HASH, sha256_hex
from evidence.clock import format_utc, parse_utc
from evidence.exc import RecordError
from evidence.journal import Journal, scan_journal
from evidence.layout import MEDIA_DIR
from evidence.media import hash_file
from evidence.record import Record

_log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".ts", ".jpg")


DAMAGE_REPORTED_MAX = 16
"""Damaged lines named in one ``journal_damaged`` record (the alert must stay small); the
record counts the rest."""


@dataclass(frozen=True)
class Damage:
    """One journal line that is not a link of the chain: where, what bytes, why."""

    offset: int
    size: int
    sha256: str
    problem: str

    def body(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "size": self.size,
            "sha256": self.sha256,
            "problem": self.problem[:160],
        }


def read_journal(path: str | Path, device_id: str) -> tuple[list[Record], list[Damage]]:
    """Every readable record of the journal at ``path``, and every damaged line.

    Cheap enough for every start on a months-long journal: each line is parsed and hashed
    once; signatures are left to the verifier (a changed line breaks the chain at the
    next one, which is reported). The torn last line is the journal's to repair."""
    records: list[Record] = []
    damage: list[Damage] = []
    if not Path(path).exists():
        return records, damage
    prev: Record | None = None
    skipped = 0  # damaged lines since ``prev``
    for offset, line in scan_journal(path).lines:

        def damaged(problem: str, line: bytes = line, offset: int = offset) -> None:
            damage.append(Damage(offset, len(line) + 1, sha256_hex(line), problem))

        if not line:
            damaged("an empty line")
            skipped += 1
            continue
        try:
            record = Record.from_bytes(line)
        except RecordError as exc:
            damaged(f"unreadable: {exc}")
            skipped += 1
            continue
        if record.device != device_id:
            damaged(f"a record of device {record.device!r}")
            skipped += 1
            continue
        if prev is None and not skipped and (record.seq, record.prev) != (0, GENESIS_HASH):
            damaged(f"the journal starts at seq {record.seq}, not at seq 0")
        elif prev is not None and not skipped and record.seq != prev.seq + 1:
            damaged(f"seq {record.seq} follows seq {prev.seq}")
        elif prev is not None and not skipped and record.prev != prev.hash:
            damaged(f"seq {record.seq} does not chain onto seq {prev.seq} (a changed record)")
        elif prev is not None and skipped and record.seq <= prev.seq:
            damaged(f"seq {record.seq} after seq {prev.seq}")
        records.append(record)
        prev, skipped = record, 0
    return records, damage


def new_damage(records: list[Record], damage: list[Damage]) -> list[Damage]:
    """The damage no earlier ``journal_damaged`` record named (by offset and hash): each
    damaged line is journaled, and alerted, once."""
    known: set[tuple[int, str]] = set()
    for record in records:
        if record.kind == "journal_damaged":
            for line in record.body.get("lines", []):
                if isinstance(line, dict):
                    known.add((line.get("offset"), line.get("sha256")))
    return [d for d in damage if (d.offset, d.sha256) not in known]


def damage_body(damage: list[Damage]) -> dict[str, Any]:
    """The ``journal_damaged`` body: the first lines in full, how many more."""
    shown = damage[:DAMAGE_REPORTED_MAX]
    return {"lines": [d.body() for d in shown], "more": len(damage) - len(shown)}


def named_media(journal: Journal, records: list[Record] | None = None) -> set[str]:
    """Every media path a record names (segment, photo, or wiped after a receipt)."""
    names: set[str] = set()
    for record in journal.records() if records is None else records:
        if record.media is not None:
            names.add(record.media[0])
        elif record.kind == "wiped":
            names.update(f for f in record.body.get("files", []) if isinstance(f, str))
    return names


def unsigned_media(root: Path, journal: Journal, records: list[Record] | None = None) -> list[str]:
    """Media files under ``root/media`` that no record names, oldest name first
    (``records``: the readable ones, from :func:`read_journal`)."""
    media = root / MEDIA_DIR
    if not media.is_dir():
        return []
    known = named_media(journal, records)
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
