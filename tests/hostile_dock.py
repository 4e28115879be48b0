"""A hostile dock written by hand, for the tests that attack the camera over the cable.

It speaks the cable's frames (:mod:`wire.cable`, the pure codec) on one fd of a real
pty pair that the test holds, and says whatever the test tells it to: any id, any key,
any time, signatures made with any key or copied from another session. The camera on the
other fd is the real :class:`firmware.dock_link.DockLink`, run in a thread by
:class:`CameraSide`. Nothing here reuses ``dock/session.py``: the attacker is not bound by
the honest dock's code.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from typing import Any

from evidence.canonical import canonical_bytes
from evidence.identity import DeviceIdentity
from evidence.receipt import receipt_message
from simulator.dockbay import PtyEnd
from wire.cable import (
    PROTOCOL,
    Frame,
    FrameDecoder,
    FrameType,
    clock_message,
    encode_frame,
)


def cable_pair() -> tuple[int, int]:
    """A raw pty pair ``(camera fd, dock fd)``, both held by the test (never reopened)."""
    camera, dock = os.openpty()
    tty.setraw(camera)
    tty.setraw(dock)
    return camera, dock


class FdPort:
    """pyserial's ``read``/``write``/``timeout`` shape on a pty fd the test holds, for the
    honest dock's side (``fileno`` lets its Link read the tty in bulk). A slave's write
    fails with EIO once the master is gone, so unlike the master's PtyEnd it needs no
    guard thread."""

    def __init__(self, fd: int, timeout: float | None = 1.0) -> None:
        self.fd = fd
        self.timeout = timeout

    def fileno(self) -> int:
        return self.fd

    def _ready(self, event: int) -> bool:
        poller = select.poll()
        poller.register(self.fd, event)
        ready = poller.poll(int((self.timeout or 1.0) * 1000))
        if ready and ready[0][1] & event:
            return True
        if ready and ready[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            raise OSError(errno.EIO, "pty peer hung up")
        return False

    def read(self, size: int) -> bytes:
        if not self._ready(select.POLLIN):
            return b""
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            return b""
        if not data:
            raise OSError(errno.EIO, "pty peer closed")
        return data

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            if not self._ready(select.POLLOUT):
                raise OSError(errno.ETIMEDOUT, "pty peer stopped reading")
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                continue
        return len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class CameraSide:
    """The real camera side (``DockLink.run_session``) on one fd, in a thread."""

    def __init__(self, link: Any, fd: int) -> None:
        self.link = link
        self.end = PtyEnd(fd)
        self.result: Any = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-side", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self.link.run_session(self.end)
        except Exception as exc:  # the test asserts on it
            self.result = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 30.0) -> Any:
        assert self.done.wait(timeout), "the camera's session did not end"
        self._thread.join(5)
        return self.result

    def close(self) -> None:
        self.end.close()


class HostileDock:
    """A dock that says what the test wants, on the dock fd of a pty pair."""

    def __init__(
        self,
        fd: int,
        identity: DeviceIdentity | None,
        dock_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.fd = fd
        self.identity = identity  # the key it signs with (None: it signs nothing)
        self.dock_id = dock_id or (identity.device_id if identity else "dock-x")
        self.timeout = timeout
        self.seq = 0
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []
        self.nonce = os.urandom(16).hex()
        self.camera_nonce = ""
        self.device = ""
        os.set_blocking(fd, False)

    # -- bytes -------------------------------------------------------------------------
    def frame(self, type_: FrameType, body: dict | bytes) -> bytes:
        payload = body if isinstance(body, bytes) else canonical_bytes(body)
        data = encode_frame(type_, self.seq, payload)
        self.seq += 1
        return data

    def write(self, data: bytes, give_up: threading.Event | None = None) -> int:
        """Write ``data``; when ``give_up`` is set and the camera stops reading, return the
        number of bytes it took (a flood need not be read to the end)."""
        view = memoryview(data)
        written = 0
        deadline = time.monotonic() + self.timeout
        while written < len(view):
            poller = select.poll()
            poller.register(self.fd, select.POLLOUT)
            if not poller.poll(100):
                if (give_up is not None and give_up.is_set()) or time.monotonic() > deadline:
                    return written
                continue
            try:
                written += os.write(self.fd, view[written:])
            except BlockingIOError:
                continue
            deadline = time.monotonic() + self.timeout
        return written

    def send(self, type_: FrameType, body: dict | bytes) -> None:
        assert self.write(self.frame(type_, body)) > 0

    def recv(self) -> Frame:
        """The camera's next frame (fails the test after ``timeout`` seconds)."""
        deadline = time.monotonic() + self.timeout
        while not self.pending:
            left = deadline - time.monotonic()
            assert left > 0, "the camera sent nothing"
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if not poller.poll(int(left * 1000)):
                continue
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def recv_json(self, *types: FrameType) -> tuple[FrameType, dict]:
        frame = self.recv()
        assert frame.type in types, f"camera sent {frame.type.name}: {bytes(frame.payload)!r}"
        return frame.type, frame.json()

    # -- the session -----------------------------------------------------------------
    def challenge(
        self, key_hex: str | None = None, proto: int = PROTOCOL
    ) -> tuple[FrameType, dict]:
        """CHALLENGE with any key; returns the camera's RESPONSE (or REFUSE)."""
        key = key_hex or (self.identity.public_key_hex if self.identity else "00" * 32)
        self.send(
            FrameType.CHALLENGE,
            {"dock": self.dock_id, "dock_key": key, "nonce": self.nonce, "proto": proto},
        )
        kind, body = self.recv_json(FrameType.RESPONSE, FrameType.REFUSE)
        if kind is FrameType.RESPONSE:
            self.camera_nonce = body.get("camera_nonce", "")
            self.device = body["device"]
        return kind, body

    @property
    def session(self) -> tuple[str, str]:
        return self.nonce, self.camera_nonce

    def sign(self, message: bytes, identity: DeviceIdentity | None = None) -> str:
        signer = identity or self.identity
        return signer.sign(message).hex() if signer else "00" * 64

    def clock_frame(self, utc_ns: int, identity: DeviceIdentity | None = None) -> bytes:
        sig = self.sign(clock_message(self.dock_id, self.device, self.session, utc_ns), identity)
        return self.frame(FrameType.CLOCK, {"utc_ns": utc_ns, "dock_sig": sig})

    def clock(self, utc_ns: int, identity: DeviceIdentity | None = None) -> tuple[FrameType, dict]:
        """A CLOCK signed for this session (by ``identity``, else the dock's own key)."""
        assert self.write(self.clock_frame(utc_ns, identity)) > 0
        return self.recv_json(FrameType.CLOCK_SET, FrameType.REFUSE)

    def receipt_body(self, upto: tuple[int, str], identity: DeviceIdentity | None = None) -> dict:
        message = receipt_message(self.dock_id, self.device, *upto, self.session)
        return {
            "dock": self.dock_id,
            "device": self.device,
            "upto_seq": upto[0],
            "upto_hash": upto[1],
            "dock_sig": self.sign(message, identity),
        }

    def receipt(self, body: dict) -> tuple[FrameType, dict]:
        self.send(FrameType.RECEIPT, body)
        return self.recv_json(FrameType.WIPED, FrameType.REFUSE)

    def bye(self) -> None:
        self.send(FrameType.BYE, {"outcome": "hostile", "flags": []})
