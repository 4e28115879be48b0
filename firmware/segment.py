"""One MPEG-TS segment: encoded frames muxed by PyAV through a hashing, fsyncing writer.

Why MPEG-TS: it has no index at the end, so a segment cut short by a power cut still plays
up to the cut. Why PyAV muxing into :class:`evidence.media.HashingWriter`: the SHA-256 is
computed while writing, so signing a closed segment costs no second read. Packets are
written through as they are muxed (``flush_packets``), and :meth:`SegmentFile.flush` fsyncs
them, so what was flushed survives a power cut.

Why video DTS runs DTS_LEAD ahead of PTS: libavformat's interleaver
(``av_interleaved_write_frame``, the only write PyAV offers, which has no flush short of
closing the file) writes a packet only once every stream has one at or after it queued,
so it always keeps the newest packet of whichever stream is ahead. With DTS = PTS that
was the newest video frame (a camera hands the sound of an instant before its frame, and
on the Pi the sound comes later still), lost to a SIGKILL: one frame, several at 30 fps
with late audio. A frame whose DTS is not after the newest audio packet is written at
once, and the interleaver keeps that audio packet instead. PTS, which players show and
sync by, moves by the same constant for both streams, so DTS never goes below 0.
``max_interleave_delta`` of 1 us keeps the interleaver to that one packet when a stream
stops (a dead microphone: the default let it hold 10 s of video); ``pes_payload_size`` 0
makes the mpegts muxer write an audio packet at once instead of keeping it for the next
one (it still keeps one of 170 bytes or less). docs/recorder.md, "Recovery", has the
measurements.

Only the writer thread uses this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from fractions import Fraction

import av

from evidence.clock import format_utc
from evidence.media import HashingWriter, MediaInfo, hash_file

from .preevent import Frame

_log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)
DTS_LEAD = 45_000  # 0.5 s: how late the sound may be and still not hold a frame back
# MPEG-4 Audio sampling frequency index (ISO/IEC 14496-3, 1.6.3.4)
AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def aac_config(sample_rate: int, channels: int) -> bytes:
    """AudioSpecificConfig for AAC-LC: the mpegts muxer needs it to write ADTS headers."""
    index = AAC_RATES.index(sample_rate)
    value = (2 << 11) | (index << 7) | (channels << 3)
    return value.to_bytes(2, "big")


def segment_name(device: str, utc_ns: int, counter: int) -> tuple[str, str]:
    """``(YYYYMMDD, <device>-<YYYYMMDDTHHMMSSmmmZ>-<counter>.ts)`` for a segment starting at
    ``utc_ns``."""
    stamp = format_utc(utc_ns)  # 2026-11-27T04:57:58.123456Z
    day = stamp[0:4] + stamp[5:7] + stamp[8:10]
    compact = f"{day}T{stamp[11:13]}{stamp[14:16]}{stamp[17:19]}{stamp[20:23]}Z"
    return day, f"{device}-{compact}-{counter:06d}"


@dataclass(frozen=True)
class VideoFormat:
    width: int
    height: int
    fps: int
    audio_rate: int | None  # None: no audio stream
    audio_channels: int = 1
    audio_extradata: bytes = b""  # the encoder's AudioSpecificConfig, if it says


class _Sink:
    """The file object PyAV writes to; remembers the first write error (ENOSPC, EIO)
    because PyAV may swallow it inside its I/O callback."""

    def __init__(self, writer: HashingWriter) -> None:
        self.writer = writer
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        try:
            return self.writer.write(data)
        except OSError as exc:
            self.error = exc
            raise


class SegmentFile:
    """An open segment. ``origin_us`` is the camera timestamp that maps to pts 0, shared by
    every segment of one recording so timestamps run on across segment boundaries."""

    def __init__(
        self,
        root: str | os.PathLike,
        relative: str,
        fmt: VideoFormat,
        origin_us: int,
        *,
        hashing: bool = True,
    ) -> None:
        self.relative = relative
        self.origin_us = origin_us
        self.frames = 0
        self.audio_frames = 0
        self.first_us: int | None = None
        self.last_video_us: int | None = None
        self.frame_us = 1_000_000 // fmt.fps
        self._writer = HashingWriter(root, relative) if hashing else _PlainWriter(root, relative)
        self._sink = _Sink(self._writer)
        self._closed = False
        options = {"flush_packets": "1", "max_interleave_delta": "1", "pes_payload_size": "0"}
        self._container = av.open(self._sink, "w", format="mpegts", options=options)
        self._video = self._container.add_stream("h264", rate=fmt.fps)
        self._video.width, self._video.height = fmt.width, fmt.height
        self._video.time_base = TIME_BASE
        self._audio = None
        if fmt.audio_rate:
            self._audio = self._container.add_stream("aac", rate=fmt.audio_rate)
            # Declared in full (PyAV's default layout is stereo), as the camera encodes it.
            self._audio.codec_context.layout = "mono" if fmt.audio_channels == 1 else "stereo"
            self._audio.codec_context.extradata = fmt.audio_extradata or aac_config(
                fmt.audio_rate, fmt.audio_channels
            )
            self._audio.time_base = TIME_BASE

    def duration_us(self) -> int:
        if self.first_us is None or self.last_video_us is None:
            return 0
        return self.last_video_us - self.first_us + self.frame_us

    def write(self, frame: Frame) -> None:
        """Mux one frame; raises OSError when the storage refuses it."""
        if frame.timestamp < self.origin_us:
            return  # audio captured before the first kept keyframe
        stream = self._audio if frame.audio else self._video
        if stream is None:
            return
        packet = av.Packet(frame.data)
        packet.stream = stream
        packet.time_base = TIME_BASE
        ticks = (frame.timestamp - self.origin_us) * 9 // 100
        packet.pts = ticks + DTS_LEAD
        packet.dts = packet.pts if frame.audio else ticks
        if frame.keyframe and not frame.audio:
            packet.is_keyframe = True
        try:
            self._container.mux(packet)
        except av.error.FFmpegError as exc:
            if self._sink.error is not None:
                raise self._sink.error from None
            _log.warning("%s: frame at %d us not muxed: %s", self.relative, frame.timestamp, exc)
            return
        if self._sink.error is not None:
            raise self._sink.error
        if frame.audio:
            self.audio_frames += 1
        else:
            self.frames += 1
            if self.first_us is None:
                self.first_us = frame.timestamp
            self.last_video_us = frame.timestamp

    def flush(self) -> None:
        """Make everything muxed so far durable (fsync)."""
        if self._sink.error is None:
            self._writer.flush()

    def close(self) -> MediaInfo:
        """Finish the file and return its name, size and SHA-256. After a write error the
        file is hashed as it is on storage (what a verifier will read)."""
        if self._closed:
            raise RuntimeError("segment already closed")
        self._closed = True
        try:
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            if self._sink.error is None:
                self._sink.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        if self._sink.error is None:
            try:
                return self._writer.close()
            except OSError as exc:
                self._sink.error = exc
        _force_close(self._writer)
        size, digest = hash_file(self._writer.path)
        return MediaInfo(self.relative, size, digest)

    def body(self, info: MediaInfo, utc_offset_ns: int, recovered: bool = False) -> dict:
        """The journal body of this segment (interfaces: segment record)."""
        first = self.first_us if self.first_us is not None else self.origin_us
        end = first + self.duration_us()
        return info.body(
            start_utc=format_utc(utc_offset_ns + first * 1000),
            end_utc=format_utc(utc_offset_ns + end * 1000),
            frames=self.frames,
            audio_frames=self.audio_frames,
            recovered=recovered,
        )


def _force_close(writer: HashingWriter) -> None:
    """Close a writer whose fsync failed (the descriptor would otherwise leak)."""
    try:
        writer.close()
    except OSError:
        fd, writer._fd = writer._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class _NoHash:
    """Stands in for SHA-256 in the signing-cost benchmark's baseline only."""

    def update(self, data: object) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


class _PlainWriter(HashingWriter):
    """HashingWriter without the hash: the baseline of the signing-cost benchmark only."""

    def __init__(self, root: str | os.PathLike, relative: str) -> None:
        super().__init__(root, relative)
        self._hash = _NoHash()
