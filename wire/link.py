"""A cable link: frames over a serial port (pyserial ``Serial`` or any object with the same
``read(n)``/``write(b)``/``timeout``/``close()`` shape, such as the simulator's pty end).

The link enforces what :mod:`wire.cable` defines, plus a stall timeout: a read that
brings no byte for ``timeout`` seconds raises :class:`LinkTimeout`; a vanished line raises
:class:`LinkClosed`. Both ends of the cable use it.
"""

from __future__ import annotations

import io
import logging
import os
import select
import termios
import time
from typing import Any, Protocol

from evidence.canonical import canonical_bytes

from .cable import (
    HEADER,
    MAX_PAYLOAD,
    TRAILER,
    Frame,
    FrameError,
    FrameType,
    LinkClosed,
    LinkTimeout,
    Refused,
    check_crc,
    encode_frame,
    parse_header,
)

_log = logging.getLogger(__name__)


class Port(Protocol):
    timeout: float | None

    def read(self, size: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


def _disconnect_errors() -> tuple[type[BaseException], ...]:
    try:
        import serial
    except ImportError:  # pragma: no cover - pyserial is a dependency
        return (OSError,)
    return (OSError, serial.SerialException)


def _fast_reader(port: Any, timeout: float) -> io.FileIO | None:
    """For a real tty (pyserial on /dev/ttyACM*, a pty slave): a blocking reader whose
    termios VTIME gives the stall tick, so bulk reads cost one syscall per arrival
    instead of a select and a read. None for other ports (they use ``port.read``)."""
    try:
        fd = port.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if not isinstance(fd, int) or not os.isatty(fd):
        return None
    try:
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 0
        attrs[6][termios.VTIME] = max(1, min(int(timeout * 10), 10))
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as exc:  # a hung-up port (not an OSError)
        raise LinkClosed(f"line closed before the session: {exc}") from None
    os.set_blocking(fd, True)
    return io.FileIO(fd, "rb", closefd=False)


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(0))


class Link:
    """Framed, ordered, checksummed messages over one serial line for one session."""

    def __init__(
        self,
        port: Port,
        timeout: float = 10.0,
        max_payload: int = MAX_PAYLOAD,
        bulk_reader: bool = False,
        *,
        min_rate: float | None = None,
        frame_grace: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        """``bulk_reader``: the side that receives media (the dock) reads the tty with
        blocking VTIME reads; this makes the fd blocking for writes too, so the side that
        sends media (the camera, whose host may vanish mid-write) leaves it off.

        ``min_rate`` (bytes/s): once a frame's first byte has arrived, the whole frame
        must arrive within ``frame_grace + size / min_rate`` seconds, so a peer sending a
        byte a second (under the stall timeout) cannot hold the line. ``deadline``
        (``time.monotonic()``): no read goes on past it (the whole session's time limit).
        Both raise :class:`LinkTimeout` with the reason."""
        self.port = port
        self.timeout = timeout
        self.max_payload = max_payload
        self.min_rate = min_rate
        self.frame_grace = frame_grace
        self.deadline = deadline
        self._frame_t0: float | None = None
        self._frame_size = HEADER.size
        self.port.timeout = min(timeout, 1.0)
        if hasattr(port, "write_timeout"):
            port.write_timeout = timeout  # a host that stops reading must not block us
        self._file = _fast_reader(port, timeout) if bulk_reader else None
        self._send_seq = 0
        self._recv_seq: int | None = 0
        self._errors = _disconnect_errors()

    def expect_any_first_seq(self) -> None:
        """Accept whatever sequence the next frame has (a camera joining mid-line)."""
        self._recv_seq = None

    # -- sending ---------------------------------------------------------------------
    def send(self, type_: FrameType, payload: bytes | memoryview = b"") -> None:
        data = encode_frame(type_, self._send_seq, payload)
        self._send_seq = (self._send_seq + 1) & 0xFFFFFFFF
        try:
            self.port.write(data)
        except self._errors as exc:
            raise LinkClosed(f"line closed while sending {type_.name}: {exc}") from None

    def send_json(self, type_: FrameType, body: dict[str, Any]) -> None:
        self.send(type_, canonical_bytes(body))

    def refuse(self, reason: str) -> None:
        """Tell the peer why the session ends; never raises (the line may be gone)."""
        try:
            self.send_json(FrameType.REFUSE, {"reason": reason[:500]})
        except (LinkClosed, FrameError):
            pass

    # -- receiving -------------------------------------------------------------------
    def _read_exact(self, n: int, what: str) -> bytes | bytearray:
        if self._file is not None:
            return self._read_fd(n, what)
        parts = []
        need = n
        stalled = 0.0
        while need:
            try:
                data = self.port.read(need)
            except self._errors as exc:
                raise LinkClosed(f"line closed while reading {what}: {exc}") from None
            if not data:
                stalled += self.port.timeout or 1.0
                if stalled >= self.timeout:
                    raise LinkTimeout(f"peer stalled: no byte for {self.timeout:g} s ({what})")
                self._check_pace(what)
                continue
            stalled = 0.0
            parts.append(data)
            need -= len(data)
            self._check_pace(what, arrived=True)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _check_pace(self, what: str, arrived: bool = False) -> None:
        """Enforce ``deadline`` and ``min_rate`` (see ``__init__``)."""
        if self.min_rate is None and self.deadline is None:
            return
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise LinkTimeout(f"the session's time limit is reached ({what})")
        if self.min_rate is None:
            return
        if self._frame_t0 is None:
            if arrived:
                self._frame_t0 = now
            return
        allowed = self.frame_grace + self._frame_size / self.min_rate
        if now - self._frame_t0 > allowed:
            raise LinkTimeout(
                f"peer too slow: a {self._frame_size}-byte frame took more than "
                f"{allowed:.1f} s (at least {self.min_rate:g} bytes/s required) ({what})"
            )

    def _read_fd(self, n: int, what: str) -> bytearray:
        """Blocking reads straight into the frame's buffer (one copy, few syscalls)."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        stalled_since = None
        while got < n:
            try:
                k = self._file.readinto(view[got:])
            except OSError as exc:
                raise LinkClosed(f"line closed while reading {what}: {exc}") from None
            if k:
                got += k
                stalled_since = None
                self._check_pace(what, arrived=True)
                continue
            if _hung_up(self._file.fileno()):
                raise LinkClosed(f"line closed while reading {what}: the peer hung up")
            self._check_pace(what)
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since >= self.timeout:
                raise LinkTimeout(f"peer stalled: no byte for {self.timeout:g} s ({what})")
        return buf

    def recv(self, what: str = "a frame") -> Frame:
        self._frame_t0, self._frame_size = None, HEADER.size + TRAILER.size
        header = self._read_exact(HEADER.size, what)
        ftype, seq, length = parse_header(header, self._recv_seq, self.max_payload)
        self._frame_size = HEADER.size + length + TRAILER.size
        rest = self._read_exact(length + TRAILER.size, what)
        body = memoryview(rest)[:length]
        check_crc(header, body, bytes(rest[length:]))
        self._recv_seq = (seq + 1) & 0xFFFFFFFF
        return Frame(ftype, seq, bytes(body) if length < 65536 else body)

    def expect(self, *types: FrameType) -> Frame:
        """The next frame, which must be one of ``types``; a REFUSE raises :class:`Refused`."""
        names = "/".join(t.name for t in types)
        frame = self.recv(names)
        if frame.type is FrameType.REFUSE and FrameType.REFUSE not in types:
            try:
                reason = str(frame.json().get("reason", "no reason given"))
            except FrameError as exc:
                reason = str(exc)
            raise Refused(f"peer refused: {reason}")
        if frame.type not in types:
            raise FrameError(f"unexpected {frame.type.name} frame, expected {names}")
        return frame

    def close(self) -> None:
        try:
            self.port.close()
        except self._errors:
            pass
