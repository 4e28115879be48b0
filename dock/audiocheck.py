"""Is the announcement audible in the recording? Decode, find, and keep the answer.

A camera's ``announcement`` record says the WAV was played. This module checks the
recorded audio itself: it decodes the AAC track of the stored segment(s) around the
record's time (PyAV), lays them on one timeline (an announcement may straddle a segment
boundary), finds the WAV in it (:func:`dock.audiomatch.find`) and journals the answer in
the dock's own signed journal as an ``announcement_audio`` record
(docs/journal-format.md section 10). The compliance report reads those records and never
decodes audio itself, so it stays as fast as reading the journals.

When: right after a docking has stored a device's records and media
(:func:`check_after_docking`, called by :class:`dock.session.DockSession` in the bay's
thread, under the device's lock, after the camera got its receipt), for the announcements
of that docking; and on demand for stores docked before (``bodycam-dock check
announcements``, :func:`check_store`).

The window searched: from ``BEFORE_S`` seconds before the play can have started (the
record is written when the play has ended, so the start is about the WAV's length
earlier) to ``AFTER_S`` seconds after the record. An announcement whose window has a
segment that is named in the journal but not stored yet is left unchecked (the report
says so) until it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from evidence.clock import format_utc, parse_utc
from evidence.exc import RecordError
from evidence.journal import JOURNAL_NAME, readable_records
from evidence.record import Record

from .announcements import KIND, results
from .audiomatch import THRESHOLD, find
from .exc import DockError
from .store import unit_of

_log = logging.getLogger(__name__)

METHOD = "ncc-preemphasis-1"
BEFORE_S = 30.0
AFTER_S = 10.0
NS = 1_000_000_000
#: The WAV this release's cameras play (the same distribution ships both; no import).
SHIPPED_WAV = Path(__file__).resolve().parents[1] / "firmware" / "assets" / "announcement.wav"


class Template:
    """The announcement WAV: its SHA-256 (what ``announcement`` records name) and its
    samples, decoded once per sample rate (mono float32)."""

    def __init__(self, path: str | Path = SHIPPED_WAV) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._pcm: dict[int, np.ndarray] = {}
        self.duration_s = len(self.pcm(16_000)) / 16_000

    def pcm(self, rate: int) -> np.ndarray:
        if rate not in self._pcm:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            with av.open(str(self.path)) as container:
                for frame in container.decode(audio=0):
                    chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
            self._pcm[rate] = np.concatenate(chunks).astype(np.float32)
        return self._pcm[rate]


@dataclass
class SegmentAudio:
    """A segment's decoded audio: ``(seconds after the segment's first video frame,
    mono samples)`` per AAC frame, at ``rate``."""

    rate: int
    frames: list[tuple[float, np.ndarray]]


def decode_segment(path: str | Path) -> SegmentAudio | None:
    """The AAC track of one MPEG-TS segment, timed against its first video frame (which
    is the segment record's ``start_utc``); None when it has no audio. Raises
    ``av.error.FFmpegError`` (an OSError) for a file PyAV cannot read."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        audio = container.streams.audio[0]
        video = container.streams.video[0] if container.streams.video else None
        first_video: Fraction | None = None
        timed: list[tuple[Fraction, np.ndarray]] = []
        streams = [audio] + ([video] if video is not None else [])
        for packet in container.demux(*streams):
            if packet.pts is None:
                continue
            if packet.stream is video:
                if first_video is None:
                    first_video = packet.pts * video.time_base
                continue
            for frame in packet.decode():
                if frame.pts is None:
                    continue
                pcm = frame.to_ndarray()
                if pcm.ndim == 2 and pcm.shape[0] > 1 and frame.format.is_planar:
                    pcm = pcm.mean(axis=0)
                elif pcm.ndim == 2 and pcm.shape[0] > 1:
                    pcm = pcm.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                else:
                    pcm = pcm.reshape(-1)
                timed.append((frame.pts * frame.time_base, pcm.astype(np.float32)))
        rate = audio.codec_context.sample_rate or audio.rate
    if not timed:
        return None
    zero = first_video if first_video is not None else timed[0][0]
    return SegmentAudio(int(rate), [(float(t - zero), pcm) for t, pcm in timed])


def window(announcement: Record, duration_s: float) -> tuple[int, int]:
    """UTC ns where the search starts and ends for this announcement record."""
    at = parse_utc(announcement.utc)
    return at - int((duration_s + BEFORE_S) * NS), at + int(AFTER_S * NS)


def covering(segments: Iterable[Record], start_ns: int, end_ns: int) -> list[Record]:
    """The segment records whose time overlaps ``[start_ns, end_ns)``, in time order."""
    found = []
    for seg in segments:
        try:
            a, b = parse_utc(seg.body["start_utc"]), parse_utc(seg.body["end_utc"])
        except (KeyError, TypeError, ValueError):
            continue
        if a < end_ns and b > start_ns:
            found.append(seg)
    return sorted(found, key=lambda s: s.body["start_utc"])


def check_one(
    device: str,
    unit: str,
    folder: Path,
    announcement: Record,
    segments: list[Record],
    template: Template,
) -> dict[str, Any] | None:
    """The ``announcement_audio`` body for one announcement, or None when it cannot be
    decided yet (a segment of its window is not stored)."""
    start_ns, end_ns = window(announcement, template.duration_s)
    chosen = covering(segments, start_ns, end_ns)
    decoded: list[tuple[Record, SegmentAudio]] = []
    for seg in chosen:
        path = folder / seg.body["file"]
        if not path.is_file():
            _log.info("%s seq %d: %s not stored yet", device, announcement.seq, seg.body["file"])
            return None
        try:
            audio = decode_segment(path)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            _log.warning("%s: audio not decodable: %s", seg.body["file"], exc)
            audio = None
        if audio is not None:
            decoded.append((seg, audio))
    body: dict[str, Any] = {
        "device": device,
        "unit": unit,
        "seq": announcement.seq,
        "wav_sha256": template.sha256,
        "files": [seg.body["file"] for seg in chosen],
        "method": METHOD,
        "threshold_milli": round(THRESHOLD * 1000),
        "verdict": "no_audio",
        "score_milli": 0,
        "start_utc": None,
        "file": None,
        "offset_ms": None,
    }
    if not decoded:
        return body
    rate = decoded[0][1].rate
    timeline = np.zeros(int((end_ns - start_ns) * rate // NS), dtype=np.float32)
    for seg, audio in decoded:
        if audio.rate != rate:
            _log.warning("%s: audio at %d Hz, not %d: left out", seg.body["file"], audio.rate, rate)
            continue
        seg_ns = parse_utc(seg.body["start_utc"])
        for t, pcm in audio.frames:
            at = round((seg_ns + t * NS - start_ns) * rate / NS)
            lo, hi = max(at, 0), min(at + len(pcm), len(timeline))
            if hi > lo:
                timeline[lo:hi] = pcm[lo - at : hi - at]
    match = find(timeline, template.pcm(rate))
    found_ns = start_ns + match.offset * NS // rate
    holder = chosen[0]
    for seg, _ in decoded:
        if parse_utc(seg.body["start_utc"]) <= found_ns:
            holder = seg
    body.update(
        verdict="heard" if match.heard else "not_heard",
        score_milli=max(0, round(match.score * 1000)),
        start_utc=format_utc(found_ns),
        file=holder.body["file"],
        offset_ms=(found_ns - parse_utc(holder.body["start_utc"])) // 1_000_000,
    )
    return body


def check_records(
    store: Any,
    device: str,
    unit: str,
    records: list[Record],
    template: Template,
    done: Collection[int] = (),
    say: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Check every announcement among ``records`` not in ``done`` (seqs), journal each
    answer in the dock journal, and return the bodies journaled."""
    folder = store.device_dir(device, unit)
    segments = [r for r in records if r.kind == "segment"]
    bodies = []
    for ann in records:
        if ann.kind != "announcement" or ann.seq in done:
            continue
        wav = ann.body.get("sha256")
        if wav != template.sha256:
            msg = f"{device} seq {ann.seq}: played a WAV (sha256 {wav}) this dock does not have"
            _log.warning("%s", msg)
            if say:
                say(f"unchecked {msg}")
            continue
        body = check_one(device, unit, folder, ann, segments, template)
        if body is None:
            if say:
                say(f"unchecked {device} seq {ann.seq}: a segment of its window is not stored")
            continue
        store.log(KIND, body)
        bodies.append(body)
        line = describe(body)
        _log.info("%s", line)
        if say:
            say(line)
    return bodies


def describe(body: dict[str, Any]) -> str:
    """One line for a person: the verdict, where the announcement starts, the score."""
    score = body["score_milli"] / 1000
    head = f"{body['device']} seq {body['seq']}: announcement {body['verdict'].replace('_', ' ')}"
    if body["verdict"] == "no_audio":
        return f"{head} (no audio in {', '.join(body['files']) or 'any stored segment'})"
    return (
        f"{head}, best match at {body['start_utc']} ({body['file']} +"
        f"{body['offset_ms'] / 1000:.3f} s), score {score:.3f} (threshold "
        f"{body['threshold_milli'] / 1000:.3f})"
    )


def tail_records(path: Path, after_seq: int) -> list[Record]:
    """The records of a journal after ``after_seq``, read from the end (a year's journal
    is not read to check one docking)."""
    found: list[Record] = []
    with open(path, "rb") as f:
        pos = f.seek(0, 2)
        carry = b""
        while pos > 0:
            step = min(1 << 20, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + carry).split(b"\n")
            carry = lines.pop(0) if pos > 0 else b""
            for line in reversed(lines):
                if not line:
                    continue
                try:
                    record = Record.from_bytes(line)
                except RecordError:
                    continue
                if record.seq <= after_seq:
                    return found[::-1]
                found.append(record)
    return found[::-1]


def check_after_docking(store: Any, entry: Any, after: tuple[int, str] | None) -> None:
    """Check the announcements a docking just stored (records after ``after``). Never
    raises: a failed check leaves them unchecked, which the report shows."""
    try:
        path = store.device_dir(entry.device_id, unit_of(entry)) / JOURNAL_NAME
        records = tail_records(path, -1 if after is None else after[0])
        if not any(r.kind == "announcement" for r in records):
            return
        done = set(results(store.root).get(entry.device_id, {}))
        unit = path.parent.parent.name
        check_records(store, entry.device_id, unit, records, Template(), done)
    except Exception as exc:  # the docking is done; the check is retried by the command
        _log.warning(
            "%s: announcement audio not checked (%s: %s); run `bodycam-dock check announcements`",
            entry.device_id,
            type(exc).__name__,
            exc,
        )


def check_store(
    store: Any,
    *,
    device: str | None = None,
    again: bool = False,
    wav: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``bodycam-dock check announcements``: every announcement in the store without an
    answer yet (all of them with ``again``); returns the bodies journaled."""
    template = Template(wav or SHIPPED_WAV)
    known = results(store.root)
    bodies: list[dict[str, Any]] = []
    for unit, dev, folder in store.device_folders():
        if device is not None and dev != device:
            continue
        journal = folder / JOURNAL_NAME
        if not journal.exists():
            continue
        records = readable_records(journal)
        done = set() if again else set(known.get(dev, {}))
        try:
            with store.device_lock(dev):
                bodies += check_records(store, dev, unit, records, template, done, say)
        except DockError as exc:  # a bay is offloading it now; it checks that docking
            say(f"skipped {dev}: {exc}")
    return bodies
