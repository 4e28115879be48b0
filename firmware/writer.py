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

Only frames are bounded (:class:`FrameQueue`): the camera thread waits at most
``put_timeout_s`` and then drops, while a command never waits, so the recorder's main loop
cannot block behind a writer whose card stalls (it watches :meth:`SegmentWriter.stalled_s`
instead). A writer thread that dies of an unexpected exception reports a ``writer_fault``
and can be started again (:meth:`SegmentWriter.restart`); a journal that refuses a segment
record (the card is full) is a ``storage_full``, and the record is appended once the
journal takes records again.

Camera timestamps are microseconds on the recorder clock's monotonic time (picamera2's
sensor timestamps are CLOCK_BOOTTIME, which is CLOCK_MONOTONIC on a camera that never
suspends), so a segment's UTC times are its timestamps plus the clock's UTC offset.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from evidence.clock import Clock
from evidence.exc import JournalError
from evidence.journal import Journal

from .preevent import Frame, PreEventBuffer
from .segment import SegmentFile, VideoFormat, segment_name

_log = logging.getLogger(__name__)


class Command(NamedTuple):
    name: str  # "begin" | "end" | "sign" | "exit"
    arg: Any = None


class FrameQueue:
    """Frames and commands in one FIFO. Frames are bounded (``put_frame`` waits at most its
    timeout for room); commands are not (``put_command`` never waits): the main loop posts
    a handful of them, and must never block behind a stalled card."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self._items: deque = deque()
        self._frames = 0
        self._cond = threading.Condition(threading.Lock())

    def put_frame(self, frame: Frame, timeout: float) -> bool:
        """The camera thread: False when there was no room within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames < self.max_frames, timeout):
                return False
            self._items.append(frame)
            self._frames += 1
            self._cond.notify_all()
            return True

    def put_command(self, command: Command) -> None:
        """Any thread: enqueue without waiting."""
        with self._cond:
            self._items.append(command)
            self._cond.notify_all()

    def get(self) -> Frame | Command:
        """The writer thread: the next item, waiting for one."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            if isinstance(item, Frame):
                self._frames -= 1
                self._cond.notify_all()
            return item

    def full(self) -> bool:
        with self._cond:
            return self._frames >= self.max_frames

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)


class QueueOutput:
    """A picamera2 ``Output``: the camera's thread calls :meth:`outputframe`, which only
    enqueues. When the writer falls behind for ``put_timeout_s`` the frame is dropped (and
    counted), and video is skipped until the next keyframe so the file stays decodable."""

    def __init__(self, q: FrameQueue, clock: Clock, put_timeout_s: float) -> None:
        self._queue = q
        self._clock = clock
        self._timeout = put_timeout_s
        self.last_frame_ns: int | None = None
        self.frames = 0
        self.dropped = 0
        self._resync = False
        self._streak = 0  # frames dropped since the writer last took one (logged once)

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
        if self._queue.put_frame(
            Frame(data, bool(keyframe), int(timestamp), bool(audio)), self._timeout
        ):
            self.frames += 1
            if self._streak:
                _log.warning("writer caught up: %d frames dropped meanwhile", self._streak)
                self._streak = 0
        else:
            self.dropped += 1
            if not audio:
                self._resync = True
            if not self._streak:
                _log.warning("writer is behind: dropping frames until it catches up")
            self._streak += 1


class SegmentWriter:
    """The writer worker: pre-event buffering, segment cutting, muxing, signing.

    ``notify(kind, info)`` is called from the writer thread with ``("segment", body)``,
    ``("stopped", {})`` or ``("error", {"reason": ..., "detail": ...})``; it must only
    hand the news to the recorder's own thread. A reason is ``storage_full`` (the card or
    the journal refused bytes) or ``writer_fault`` (the thread died of a bug; it stays
    dead until :meth:`restart`).
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
        self.queue = FrameQueue(queue_frames)
        self.output = QueueOutput(self.queue, clock, put_timeout_s)
        self.buffer = PreEventBuffer(pre_event_s, pre_event_max_bytes, pre_event_audio)
        self.counter = first_counter
        self.cpu_s = 0.0
        self.last_error = ""  # why the thread died, for the restart record
        self.closed_ok = 0  # segments cut or ended by this thread (not by its dying)
        self._busy_since: float | None = None  # time.monotonic() when the item began
        self._unsigned: list[dict] = []  # closed segments the journal refused, in order
        self._sign_asked = threading.Event()  # a "sign" command is in the queue
        self._segment: SegmentFile | None = None
        self._recording = False
        self._origin_us: int | None = None
        self._last_flush_us = 0
        self._prev_keyframe_us: int | None = None
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name="segment-writer", daemon=True)

    # -- called from the recorder's thread (never blocks on the writer) ----------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def restart(self) -> None:
        """Start a new thread after the last one died (it cleaned up as it died): it takes
        the queue from where the dead one left it, commands included."""
        if self._thread.is_alive():
            return
        self._busy_since = None
        self.closed_ok = 0
        self._thread = self._new_thread()
        self._thread.start()

    def stalled_s(self) -> float:
        """Real seconds the writer has been stuck on one frame or command (0 when idle or
        keeping up): a card that stalls shows here, a dead thread does not."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    @property
    def unsigned(self) -> int:
        """Closed segments the journal has refused so far and not yet taken."""
        return len(self._unsigned)

    def retry_signing(self) -> None:
        """Ask the writer to journal the segments the journal refused (once per request in
        the queue): the recorder asks at each health poll while there are any."""
        if self._unsigned and not self._sign_asked.is_set():
            self._sign_asked.set()
            self.queue.put_command(Command("sign"))

    def begin(self, pre_event_s: float) -> None:
        """Start recording at this point of the frame stream, pre-event buffer first."""
        self.queue.put_command(Command("begin", pre_event_s))

    def end(self, by: str) -> None:
        """Close and sign the open segment at this point of the frame stream."""
        self.queue.put_command(Command("end", by))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish (closing any open segment) and join the thread, at most ``timeout``."""
        if self._thread.is_alive():
            self.queue.put_command(Command("exit"))
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.error("writer thread did not finish within %.1f s", timeout)

    # -- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                self._busy_since = time.monotonic()
                if isinstance(item, Frame):
                    self._frame(item)
                elif item.name == "begin":
                    self._begin(item.arg)
                elif item.name == "end":
                    self._close("end")
                    self._recording = False
                    self.notify("stopped", {"by": item.arg})
                elif item.name == "sign":
                    self._sign_asked.clear()
                    self._sign_unsigned()
                elif item.name == "exit":
                    self._close("exit")
                    return
                self._busy_since = None
        except Exception as exc:  # a bug, not the storage: say so, and clean up for a restart
            _log.exception("writer thread failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._abandon()
            self.notify(
                "error", {"reason": "writer_fault", "detail": f"writer failed: {self.last_error}"}
            )
        finally:
            self._busy_since = None
            self.cpu_s = time.thread_time()

    def _abandon(self) -> None:
        """The thread is dying: sign what the open segment holds on storage (or leave it
        for recovery at the next start) and stop recording; frames queued since go to the
        pre-event buffer of the next thread."""
        try:
            self._close("fault")
        except Exception as exc:  # the file stays unsigned: recovered at the next start
            _log.error("closing the segment of the failed writer: %s", exc)
        self._segment = None
        self._recording = False

    def _begin(self, pre_event_s: float) -> None:
        self._sign_unsigned()
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
        if self._unsigned and not self._sign_unsigned():
            self._recording = False  # the journal still refuses records: the card is full
            self.notify("error", {"reason": "storage_full", "detail": "journal: still full"})
            return False
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
        if why in ("cut", "end", "exit"):
            self.closed_ok += 1
        if not self.sign:
            return
        utc_offset = self.clock.time_ns() - self.clock.monotonic_ns()
        body = seg.body(info, utc_offset)
        self._unsigned.append(body)
        if not self._sign_unsigned():
            _log.error(
                "segment %s not signed yet (the journal refuses records); it is signed "
                "once the journal takes records again, or recovered at the next start",
                info.file,
            )
            self.notify("error", {"reason": "storage_full", "detail": "journal: full"})
            return
        _log.debug("segment %s closed (%s): %d frames", info.file, why, seg.frames)

    def _sign_unsigned(self) -> bool:
        """Journal the closed segments not signed yet, in order; False while the journal
        refuses records (full card: short writes are rolled back by the journal)."""
        while self._unsigned:
            body = self._unsigned[0]
            try:
                if self.journal is not None:
                    self.journal.append("segment", body)
            except (OSError, JournalError) as exc:
                _log.warning("journal refused segment %s: %s", body["file"], exc)
                return False
            self._unsigned.pop(0)
            self.notify("segment", body)
        return True

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
