"""Playing an act across its stored MPEG-TS segments: the HLS playlist, the media timeline
and the browser's rendition of a segment. Pure logic over records and bytes (no web, no
archive access check: :mod:`archive.web.player` does those).

What the segments are (firmware/segment.py, firmware/writer.py): a recording (button
press to stop, or resume to the next stop) is cut into segments at keyframes, and every
segment of one recording is muxed against one ``origin_us``, so PTS run on across the
cuts (segment *n+1* starts one frame after segment *n* ends: checked on a simulated
shift's store with ffprobe). A new recording (a ``recording_started``: the first of an act,
a resume after a stoppage, a restart after a boot) starts its PTS again at 0.5 s. So the
playlist marks ``#EXT-X-DISCONTINUITY`` only before the first segment of each recording
after the first, never at a plain cut; hls.js then lays the pieces end to end, and the
player's timeline says where a stoppage took the camera off the record.

Why a rendition at all: the pre-event buffer keeps video only (the seconds before the
button press have no sound), so the first segment of every recording has seconds of
video before its first audio packet, and a dead microphone leaves holes. hls.js (1.7)
fills an audio hole with silence only when it is shorter than 10 s; a longer one it closes
up, laying the later audio early (measured: the officer's voice 31 s ahead of the
picture), and Media Source Extensions play only where every track is buffered. So a
segment whose audio has a hole is remuxed with PyAV for the browser: every recorded
packet copied unchanged with its timestamps, the hole filled with AAC-LC silence frames
(the frame hls.js itself inserts). Nothing is decoded or re-encoded, and the original is
never changed; a segment without a hole is served as it is stored. MPEG-TS stays the
container: hls.js transmuxes it to fMP4 in the browser, which plays in Chromium and
Firefox without a plugin.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from evidence.clock import parse_utc
from evidence.record import Record

NS = 1_000_000_000
TICKS = 90_000  # MPEG-TS clock
NEW_TIMELINE = frozenset({"recording_started", "boot"})
"""Records after which the next segment's PTS start again (a new ``origin_us``)."""
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025)
AAC_RATES += (8000, 7350)
SILENT_AAC_LC = {
    1: bytes([0x00, 0xC8, 0x00, 0x80, 0x23, 0x80]),
    2: bytes([0x21, 0x00, 0x49, 0x90, 0x02, 0x19, 0x00, 0x23, 0x80]),
}
"""One raw AAC-LC frame of silence per channel count (the frames hls.js inserts)."""
AUDIO_HOLE_FRAMES = 4
"""An audio hole longer than this many frames (256 ms at 16 kHz) is filled for the browser."""


class MediaError(Exception):
    """A segment's bytes are not MPEG-TS that can be played (damaged, cut, not video)."""


# -- the act's timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One stored segment in the act's playlist, placed on the media timeline."""

    index: int
    seq: int
    file: str
    size: int
    sha256: str
    start_utc: str
    end_utc: str
    offset_s: float  # where it starts on the player's timeline
    duration_s: float
    discontinuity: bool  # its PTS start again (a new recording): #EXT-X-DISCONTINUITY

    @property
    def end_s(self) -> float:
        return self.offset_s + self.duration_s


@dataclass(frozen=True)
class Mark:
    """A point of the act shown on the timeline: a key moment or a stoppage."""

    kind: str  # "moment" | "stoppage"
    label: str  # the moment's id, or the stoppage's reason
    seq: int
    utc: str
    t: float  # seconds on the player's timeline
    detail: str = ""


@dataclass
class Playback:
    """An act as the player shows it: its pieces end to end, and its marks."""

    device: str
    start_seq: int
    end_seq: int | None
    start_utc: str
    end_utc: str | None
    procedure: str | None
    pieces: list[Piece] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.pieces[-1].end_s if self.pieces else 0.0

    def piece(self, seq: int) -> Piece | None:
        return next((p for p in self.pieces if p.seq == seq), None)

    def time_of(self, utc: str) -> float:
        """The timeline position of a wall-clock instant: inside a piece, where its frame
        is; before the first piece, 0; in a time no piece covers (a stoppage), the start
        of the next piece (where the record goes on)."""
        ns = parse_utc(utc)
        for p in self.pieces:
            start, end = parse_utc(p.start_utc), parse_utc(p.end_utc)
            if ns < start:
                return p.offset_s
            if ns < end:
                return p.offset_s + (ns - start) / NS
        return self.duration_s

    def time_at(self, seconds: float) -> float:
        """The timeline position ``seconds`` after the act started by the clock (its first
        record's time, as a finding's ``utc - start_utc``): stoppages are not on the
        timeline, and the pre-event buffer is before the start."""
        from evidence.clock import format_utc

        return self.time_of(format_utc(parse_utc(self.start_utc) + int(seconds * NS)))

    def start_of(self, seq: int) -> float:
        """Where ``/play/DEVICE/SEQ`` starts: the piece ``seq`` names, or the moment or
        stoppage of that record, else the act's start."""
        piece = self.piece(seq)
        if piece is not None:
            return piece.offset_s
        mark = next((m for m in self.marks if m.seq == seq), None)
        return mark.t if mark is not None else 0.0


def _seconds(start_utc: str, end_utc: str) -> float:
    return max(0.0, (parse_utc(end_utc) - parse_utc(start_utc)) / NS)


def playback_of(records: list[Record], act: Any) -> Playback:
    """The playback of ``act`` (a :class:`dock.compliance.Act` of this device's
    ``records``): its segments placed end to end, a discontinuity before the first segment
    of each recording after the first, its key moments and stoppages on the timeline."""
    at = {r.seq: i for i, r in enumerate(records)}
    pieces: list[Piece] = []
    offset = 0.0
    previous: int | None = None  # index in records of the last segment placed
    for segment in act.segments:
        i = at.get(segment.seq)
        if i is None:
            continue
        if previous is None:
            fresh = False
        else:
            between = records[previous + 1 : i]
            fresh = any(r.kind in NEW_TIMELINE for r in between)
        b = segment.body
        duration = _seconds(b["start_utc"], b["end_utc"])
        pieces.append(
            Piece(
                len(pieces),
                segment.seq,
                b["file"],
                int(b["size"]),
                b["sha256"],
                b["start_utc"],
                b["end_utc"],
                round(offset, 6),
                duration,
                fresh,
            )
        )
        offset += duration
        previous = i
    playback = Playback(
        act.device, act.start_seq, act.end_seq, act.start_utc, act.end_utc, act.procedure, pieces
    )
    marks = [Mark("moment", m, s, u, playback.time_of(u)) for m, s, u in act.moments]
    last = act.end_seq if act.end_seq is not None else math.inf
    for r in records:
        if r.kind == "stoppage" and act.start_seq <= r.seq <= last:
            reason = str(r.body.get("reason", ""))
            detail = str(r.body.get("detail", ""))
            marks.append(Mark("stoppage", reason, r.seq, r.utc, playback.time_of(r.utc), detail))
    playback.marks = sorted(marks, key=lambda m: (m.t, m.seq))
    return playback


def act_containing(acts: Iterable[Any], seq: int) -> Any | None:
    """The act that ``seq`` (its first record, a segment, a marker, any record between its
    start and end) belongs to."""
    acts = list(acts)
    for act in acts:
        if act.start_seq == seq or any(s.seq == seq for s in act.segments):
            return act
    for act in acts:
        end = act.end_seq if act.end_seq is not None else math.inf
        if act.start_seq <= seq <= end:
            return act
    return None


def media_playlist(
    playback: Playback, url_of: Callable[[Piece], str], gaps: Iterable[int] = ()
) -> str:
    """The HLS media playlist (VOD) of the act. ``gaps``: seqs of pieces the store cannot
    give (missing): listed as ``#EXT-X-GAP`` so the player goes on past them."""
    gaps = set(gaps)
    target = max((math.ceil(p.duration_s) for p in playback.pieces), default=1)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for p in playback.pieces:
        if p.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if p.seq in gaps:
            lines.append("#EXT-X-GAP")
        lines.append(f"#EXTINF:{p.duration_s:.6f},")
        lines.append(url_of(p))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# -- the browser's rendition of a segment ------------------------------------------------


@dataclass(frozen=True)
class AudioHoles:
    """Where a segment has video but no sound (in 90 kHz ticks)."""

    rate: int
    channels: int
    frame_ticks: int
    fill_at: tuple[int, ...]  # PTS of each silence frame to insert

    @property
    def empty(self) -> bool:
        return not self.fill_at


def adts_frame(payload: bytes, rate: int, channels: int) -> bytes:
    """A raw AAC-LC frame with its ADTS header (ISO/IEC 13818-7), as MPEG-TS carries it."""
    n = len(payload) + 7
    index = AAC_RATES.index(rate)
    header = bytes(
        [
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            (1 << 6) | (index << 2) | (channels >> 2),  # AAC-LC (profile 2 - 1)
            ((channels & 3) << 6) | (n >> 11),
            (n >> 3) & 0xFF,
            ((n & 7) << 5) | 0x1F,
            0xFC,
        ]
    )
    return header + payload


def _adts_config(data: bytes) -> tuple[int, int] | None:
    """``(sample rate, channels)`` from an ADTS header, or None."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF0 != 0xF0:
        return None
    index = (data[2] >> 2) & 0x0F
    channels = ((data[2] & 1) << 2) | (data[3] >> 6)
    if index >= len(AAC_RATES) or channels not in SILENT_AAC_LC:
        return None
    return AAC_RATES[index], channels


def _open(data: bytes):
    import av

    try:
        # A short probe: the first audio packet may come 30 s in (the pre-event buffer has
        # no sound), so the audio's parameters come from its ADTS headers, not the probe.
        return av.open(io.BytesIO(data), format="mpegts")
    except av.error.FFmpegError as exc:
        raise MediaError(f"not playable MPEG-TS: {exc}") from None


def _packets(container) -> list:
    import av

    try:
        return [p for p in container.demux() if p.dts is not None and p.size]
    except av.error.FFmpegError as exc:
        raise MediaError(f"the MPEG-TS does not demux: {exc}") from None


def audio_holes(packets: list) -> AudioHoles | None:
    """Where the audio of a segment's packets leaves the video without sound for more than
    :data:`AUDIO_HOLE_FRAMES` frames; None when it has no AAC audio to fill."""
    video = [p.pts for p in packets if p.stream.type == "video" and p.pts is not None]
    audio = [p for p in packets if p.stream.type == "audio" and p.pts is not None]
    if not video or not audio:
        return None
    config = _adts_config(bytes(audio[0]))
    if config is None:
        return None
    rate, channels = config
    frame = 1024 * TICKS // rate
    ordered = sorted(set(video))
    step = min((b - a for a, b in pairwise(ordered)), default=TICKS // 30)
    last_video = ordered[-1] + step  # where the last frame ends
    fill: list[int] = []
    expected = min(video)
    for p in sorted(audio, key=lambda p: p.pts):
        if p.pts - expected > AUDIO_HOLE_FRAMES * frame:
            fill += range(expected, p.pts - frame // 2, frame)
        expected = max(expected, p.pts + frame)
    if last_video - expected > AUDIO_HOLE_FRAMES * frame:
        fill += range(expected, last_video, frame)
    return AudioHoles(rate, channels, frame, tuple(fill))


def scan(data: bytes) -> AudioHoles | None:
    """Read a segment's packets (no decoding): its audio holes, if any. Raises
    :class:`MediaError` when the bytes are not a playable segment."""
    container = _open(data)
    try:
        _, holes = _read(container)
    finally:
        container.close()
    return holes if holes is not None and not holes.empty else None


def _read(container: Any) -> tuple[list[Any], AudioHoles | None]:
    """A segment's packets and its audio holes; a segment with no video is no segment."""
    packets = _packets(container)
    if not any(p.stream.type == "video" for p in packets):
        raise MediaError("the segment holds no video")
    return packets, audio_holes(packets)


class Rendition:
    """A segment's recorded packets and the silence to add, muxed on demand in chunks (so
    a viewer gets the first bytes while the rest is still being muxed)."""

    def __init__(self, container: Any, packets: list, holes: AudioHoles) -> None:
        self._container, self._packets, self.holes = container, packets, holes

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The rendition's MPEG-TS, about ``size`` bytes at a time: every packet copied as
        recorded (same bytes, same PTS and DTS), the holes filled with silence frames."""
        import av

        buf = io.BytesIO()
        vin, ain = self._container.streams.video[0], self._container.streams.audio[0]
        holes = self.holes
        try:
            out = av.open(buf, "w", format="mpegts")
            vout = out.add_stream_from_template(vin)
            aout = out.add_stream("aac", rate=holes.rate)  # each packet carries its ADTS
            aout.codec_context.layout = "mono" if holes.channels == 1 else "stereo"
            aout.time_base = ain.time_base
            silence = adts_frame(SILENT_AAC_LC[holes.channels], holes.rate, holes.channels)
            packets = self._packets
            queue: list[tuple[int, int, Any]] = [
                (int(p.dts * p.time_base * TICKS), n, p) for n, p in enumerate(packets)
            ]
            queue += [(pts, len(packets) + n, pts) for n, pts in enumerate(holes.fill_at)]
            queue.sort(key=lambda item: (item[0], item[1]))
            for _, _, item in queue:
                if isinstance(item, int):
                    packet = av.Packet(silence)
                    packet.stream = aout
                    packet.time_base = ain.time_base
                    packet.pts = packet.dts = int(item / TICKS / ain.time_base)
                else:
                    packet = item
                    packet.stream = vout if item.stream.type == "video" else aout
                out.mux(packet)
                if buf.tell() >= size:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            out.close()
            if buf.tell():
                yield buf.getvalue()
        except av.error.FFmpegError as exc:
            raise MediaError(f"the segment could not be remuxed: {exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._container.close()
        self._packets = []


def rendition_of(data: bytes) -> Rendition | None:
    """The rendition of a segment whose sound has holes, None when it can be served as it
    is. Reads the packets (no decoding); raises :class:`MediaError` when the bytes are not
    a playable segment."""
    container = _open(data)
    try:
        packets, holes = _read(container)
    except BaseException:
        container.close()
        raise
    if holes is None or holes.empty:
        container.close()
        return None
    return Rendition(container, packets, holes)


def fill_audio_holes(data: bytes) -> bytes:
    """The segment as the browser gets it: :class:`Rendition` muxed whole, or ``data``
    itself when its sound has no hole. Never decodes."""
    rendition = rendition_of(data)
    return data if rendition is None else b"".join(rendition.chunks())


__all__ = [
    "AudioHoles",
    "Mark",
    "MediaError",
    "Piece",
    "Playback",
    "Rendition",
    "act_containing",
    "adts_frame",
    "audio_holes",
    "fill_audio_holes",
    "media_playlist",
    "playback_of",
    "rendition_of",
    "scan",
]
