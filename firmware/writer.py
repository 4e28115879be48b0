"""The recording chain behind the camera: a tiny queueing Output and the writer worker.

picamera2's Output chain, split by thread::

    camera thread                 writer thread (this module's worker)
    -------------                 -------------------------------------
    QueueOutput.outputframe  -->  bounded queue  -->  PreEventBuffer (while not recording)
      (only enqueues)                              -> SegmentFile (while recording), cut at
                                                      keyframes, fsynced periodically
                                                   -> journal "segment" record on close

Commands (begin, end, exit) travel through the same queue as the frames, so a recording
starts and stops at exactly the frame where the command was issued, and no frame is lost or
duplicated between the pre-event buffer and the segments, or between two segments.
Writing, hashing and signing happen only in the writer thread, never in ``outputframe``.

Camera timestamps are microseconds on the recorder clock's monotonic time (picamera2's
sensor timestamps are CLOCK_BOOTTIME, which is CLOCK_MONOTONIC on a camera that never
suspends), so a segment's UTC times are its timestamps plus the clock's UTC offset.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from evidence.clock import Clock
from evidence.journal import Journal

from .preevent import Frame, PreEventBuffer
from .segment import SegmentFile, VideoFormat, segment_name

_log = logging.getLogger(__name__)


class Command(NamedTuple):
    name: str  # "begin" | "end" | "exit"
    arg: Any = None


class QueueOutput:
    """A picamera2 ``Output``: the camera's thread calls :meth:`outputframe`, which only
    enqueues. When the writer falls behind for ``put_timeout_s`` the frame is dropped (and
    counted), and video is skipped until the next keyframe so the file stays decodable."""

    def __init__(self, q: queue.Queue, clock: Clock, put_timeout_s: float) -> None:
        self._queue = q
        self._clock = clock
        self._timeout = put_timeout_s
        self.last_frame_ns: int | None = None
        self.frames = 0
        self.dropped = 0
        self._resync = False

    def start(self) -> None:
        if self.last_frame_ns is None:  # a restart must not hide a camera that stays dead
            self.last_frame_ns = self._clock.monotonic_ns()

    def stop(self) -> None:
        pass

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Called from the camera's capture/encoder thread: enqueue and return."""
        now = self._clock.monotonic_ns()
        if not audio:
            self.last_frame_ns = now
            if self._resync and not keyframe:
                self.dropped += 1
                return
            self._resync = False
        if timestamp is None:
            timestamp = now // 1000
        data = frame if isinstance(frame, bytes) else bytes(frame)
        try:
            self._queue.put(
                Frame(data, bool(keyframe), int(timestamp), bool(audio)), timeout=self._timeout
            )
            self.frames += 1
        except queue.Full:
            self.dropped += 1
            if not audio:
                self._resync = True
            _log.warning("writer is behind: dropped a %s frame", "audio" if audio else "video")


class SegmentWriter:
    """The writer worker: pre-event buffering, segment cutting, muxing, signing.

    ``notify(kind, info)`` is called from the writer thread with ``("segment", body)``,
    ``("stopped", {})`` or ``("error", {"reason": ..., "detail": ...})``; it must only
    hand the news to the recorder's own thread.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        journal: Journal | None,
        device_id: str,
        fmt: VideoFormat,
        clock: Clock,
        notify: Callable[[str, dict], None],
        segment_max_s: float = 60.0,
        flush_interval_s: float = 1.0,
        pre_event_s: float = 30.0,
        pre_event_audio: bool = False,
        pre_event_max_bytes: int = 64 << 20,
        queue_frames: int = 250,  # as recorder.toml (the recorder passes its config)
        put_timeout_s: float = 2.0,
        sign: bool = True,
        first_counter: int = 0,
    ) -> None:
        self.root = Path(root)
        self.journal = journal
        self.device_id = device_id
        self.fmt = fmt
        self.clock = clock
        self.notify = notify
        self.max_us = int(segment_max_s * 1_000_000)
        self.flush_us = int(flush_interval_s * 1_000_000)
        self.sign = sign
        self.queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self.output = QueueOutput(self.queue, clock, put_timeout_s)
        self.buffer = PreEventBuffer(pre_event_s, pre_event_max_bytes, pre_event_audio)
        self.counter = first_counter
        self.cpu_s = 0.0
        self._segment: SegmentFile | None = None
        self._recording = False
        self._origin_us: int | None = None
        self._last_flush_us = 0
        self._prev_keyframe_us: int | None = None
        self._thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)

    # -- called from the recorder's thread -------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def begin(self, pre_event_s: float) -> None:
        """Start recording at this point of the frame stream, pre-event buffer first."""
        self.queue.put(Command("begin", pre_event_s))

    def end(self, by: str) -> None:
        """Close and sign the open segment at this point of the frame stream."""
        self.queue.put(Command("end", by))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish (closing any open segment) and join the thread, at most ``timeout``."""
        if self._thread.is_alive():
            self.queue.put(Command("exit"))
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.error("writer thread did not finish within %.1f s", timeout)

    # -- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, Frame):
                    self._frame(item)
                elif item.name == "begin":
                    self._begin(item.arg)
                elif item.name == "end":
                    self._close("end")
                    self._recording = False
                    self.notify("stopped", {"by": item.arg})
                elif item.name == "exit":
                    self._close("exit")
                    return
        except Exception:  # the recorder must hear of any failure, not a silent dead thread
            _log.exception("writer thread failed")
            self.notify("error", {"reason": "storage_full", "detail": "writer thread failed"})
        finally:
            self.cpu_s = time.thread_time()

    def _begin(self, pre_event_s: float) -> None:
        self.buffer.window_us = int(pre_event_s * 1_000_000)
        frames = self.buffer.drain()
        self._recording = True
        self._origin_us = frames[0].timestamp if frames else None
        for frame in frames:
            if not self._recording:
                break
            self._frame(frame)

    def _frame(self, frame: Frame) -> None:
        if not self._recording:
            self.buffer.add(frame)
            if frame.keyframe and not frame.audio:
                self._prev_keyframe_us = frame.timestamp
            return
        seg = self._segment
        if not frame.audio and frame.keyframe:
            if seg is not None and seg.first_us is not None:
                length = frame.timestamp - seg.first_us
                gop = frame.timestamp - (self._prev_keyframe_us or frame.timestamp)
                if length + gop > self.max_us or length >= self.max_us:
                    self._close("cut")
                    seg = None
            self._prev_keyframe_us = frame.timestamp
        if seg is None:
            if frame.audio or not frame.keyframe:
                return  # a segment starts at a keyframe; audio waits for it
            if self._origin_us is None:
                self._origin_us = frame.timestamp
            if not self._open(frame):
                return
            seg = self._segment
        try:
            seg.write(frame)
            if frame.timestamp - self._last_flush_us >= self.flush_us:
                seg.flush()
                self._last_flush_us = frame.timestamp
        except OSError as exc:
            self._fail(exc)

    def _open(self, frame: Frame) -> bool:
        utc = self.clock.time_ns() - self.clock.monotonic_ns() + frame.timestamp * 1000
        day, name = segment_name(self.device_id, utc, self.counter)
        self.counter += 1
        relative = f"media/{day}/{name}.ts"
        try:
            self._segment = SegmentFile(
                self.root, relative, self.fmt, self._origin_us, hashing=self.sign
            )
        except OSError as exc:
            self._fail(exc)
            return False
        self._last_flush_us = frame.timestamp
        return True

    def _close(self, why: str) -> None:
        seg, self._segment = self._segment, None
        if seg is None:
            return
        info = seg.close()
        if not self.sign:
            return
        utc_offset = self.clock.time_ns() - self.clock.monotonic_ns()
        body = seg.body(info, utc_offset)
        try:
            if self.journal is not None:
                self.journal.append("segment", body)
        except OSError as exc:
            _log.error(
                "segment %s not signed (%s); it will be recovered at next start", info.file, exc
            )
            self.notify("error", {"reason": "storage_full", "detail": f"journal: {exc}"})
            return
        _log.debug("segment %s closed (%s): %d frames", info.file, why, seg.frames)
        self.notify("segment", body)

    def _fail(self, exc: OSError) -> None:
        """Storage refused a write: sign what is on storage, stop recording, tell the
        recorder (which journals the stoppage and shows it)."""
        _log.error("segment write failed: %s", exc)
        try:
            self._close("error")
        except OSError as exc2:
            _log.error("closing the failed segment: %s", exc2)
        self._recording = False
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        detail = "storage full" if full else f"write error: {exc.strerror or exc}"
        self.notify("error", {"reason": "storage_full", "detail": detail})
