"""The pre-event buffer: the last N seconds of encoded frames, kept in memory, keyframe-aligned.

picamera2's ``CircularOutput2`` idea as a plain data structure (no threads): frames are kept
as groups of pictures (a keyframe and what follows it). The oldest group is dropped once the
next group still covers the window, or once the buffer exceeds its byte bound, so what is
drained always starts at a keyframe and covers at least ``seconds`` when the camera ran
that long. Only the writer thread touches it.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class Frame(NamedTuple):
    """One encoded frame as the camera hands it to an Output (timestamp in microseconds)."""

    data: bytes
    keyframe: bool
    timestamp: int
    audio: bool


class PreEventBuffer:
    def __init__(self, seconds: float, max_bytes: int, keep_audio: bool) -> None:
        self.window_us = int(seconds * 1_000_000)
        self.max_bytes = max_bytes
        self.keep_audio = keep_audio
        self._gops: deque[list[Frame]] = deque()
        self._gop_bytes: deque[int] = deque()
        self.bytes = 0
        self.peak_bytes = 0

    def add(self, frame: Frame) -> None:
        if frame.audio:
            if self.keep_audio and self._gops:
                self._append(frame)
            return
        if frame.keyframe:
            self._gops.append([])
            self._gop_bytes.append(0)
        elif not self._gops:
            return  # nothing decodable before the first keyframe
        self._append(frame)
        self._trim(frame.timestamp)

    def _append(self, frame: Frame) -> None:
        self._gops[-1].append(frame)
        self._gop_bytes[-1] += len(frame.data)
        self.bytes += len(frame.data)
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _trim(self, newest_us: int) -> None:
        while len(self._gops) > 1 and (
            self._gops[1][0].timestamp <= newest_us - self.window_us or self.bytes > self.max_bytes
        ):
            self._gops.popleft()
            self.bytes -= self._gop_bytes.popleft()

    def drain(self) -> list[Frame]:
        """Everything kept, oldest first, starting at a keyframe; empties the buffer.

        Audio older than the first kept keyframe is dropped so both streams start together."""
        frames = [f for gop in self._gops for f in gop]
        self.clear()
        if not frames:
            return frames
        start = frames[0].timestamp
        return [f for f in frames if not f.audio or f.timestamp >= start]

    def clear(self) -> None:
        self._gops.clear()
        self._gop_bytes.clear()
        self.bytes = 0
