"""The network bay: the dock protocol over TLS TCP, for fixed cameras and for body cameras
on the station's Wi-Fi (``dock.listen``, ``bodycam-dock serve --listen HOST:PORT``).

The listener accepts a connection, completes a TLS 1.3 handshake with the certificate of
the dock's own key (:func:`wire.net.server_context`), and runs the very
:class:`~dock.session.DockSession` a cable bay runs, on a :class:`~wire.net.NetPort`. The
camera pins the dock's key; the dock authenticates the camera by its signed answer to the
nonce, as on the cable (an unregistered or revoked camera is refused and flagged).

A peer that is not TLS, offers another application protocol, or stalls in the handshake
is refused with the reason in the log (it is no docking: nothing is flagged), and the
listener serves the next connection. Connections beyond ``dock.listen_connections`` are
closed at once, with the reason logged. Sessions of the same camera wait a little for each
other (:meth:`~dock.store.Store.device_lock`): after a dropped connection the camera may be
back before the dock has noticed that the old session is dead.

A session that finds the dock itself broken (its store, index or registry) stops the
daemon with status 70, as a cable bay does (:mod:`dock.bay`).

Threads: one accept thread (a daemon with the shared stop Event and a bounded join) and one
daemon thread per connection; :meth:`stop_sessions` breaks their connections at shutdown.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from wire.net import NetError, NetPort, format_address, require_alpn, server_context

from .bay import EXIT_CANNOT_SERVE, write_status
from .session import DockSession, SessionLimits
from .store import Store

_log = logging.getLogger(__name__)
STATUS_NAME = "net"


class NetListener:
    """Serves dock sessions on ``address`` (``(host, port)``; port 0 picks a free one,
    see :attr:`address`) until ``stop`` is set."""

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        identity: DeviceIdentity,
        stop: threading.Event,
        timeout: float = 10.0,
        *,
        limits: SessionLimits | None = None,
        max_connections: int = 8,
        exit_on_fault: bool = True,
    ) -> None:
        self.store = store
        self.identity = identity
        self.stop = stop
        self.timeout = timeout
        self.limits = limits
        self.exit_on_fault = exit_on_fault
        self.context = server_context(identity)
        self._sock = socket.create_server(
            address,
            family=socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
            backlog=16,
        )
        self._sock.settimeout(0.5)  # the accept loop looks at ``stop`` this often
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max = max_connections
        self._lock = threading.Lock()
        self._active: set[NetPort] = set()
        self._thread: threading.Thread | None = None
        self.sessions = 0
        self.refusals: collections.deque[tuple[str, str]] = collections.deque(maxlen=100)
        self.results: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self.failed: str | None = None
        self.done = threading.Condition()  # notified after each session or refusal

    @property
    def name(self) -> str:
        return format_address(self.address)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="dock-net", daemon=True)
        self._thread.start()
        _log.info("network bay listening on %s (TLS 1.3, dock key pinned)", self.name)

    def join(self, timeout: float = 15.0) -> None:
        """After ``stop`` is set: break the sessions' connections and wait for them."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.stop_sessions()
        deadline = time.monotonic() + timeout
        for _ in range(self._max):  # every slot back = every session ended
            if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _log.warning("network bay: sessions still running at shutdown")
                break

    def stop_sessions(self) -> None:
        with self._lock:
            ports = list(self._active)
        for port in ports:
            try:
                # TCP level (not the TLS object the session thread is using): its
                # next read fails and the session ends as interrupted.
                socket.socket.shutdown(port.sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _status(self, info: dict[str, Any]) -> None:
        info = {
            "bay": STATUS_NAME,
            "port": self.name,
            "pid": os.getpid(),
            "updated_utc": format_utc(time.time_ns()),
            "last": self.results[-1] if self.results else None,
            **info,
        }
        try:
            write_status(self.store.root, STATUS_NAME, info)
        except OSError as exc:
            _log.warning("network bay: cannot write status: %s", exc)

    def run(self) -> None:
        self._status({"state": "waiting"})
        try:
            while not self.stop.is_set():
                try:
                    conn, peer = self._sock.accept()
                except TimeoutError:
                    continue
                except OSError as exc:  # e.g. EMFILE: log, breathe, go on
                    _log.warning("network bay: accept failed: %s", exc)
                    self.stop.wait(0.5)
                    continue
                who = format_address(peer)
                if not self._slots.acquire(blocking=False):
                    self._refused(
                        who, f"{self._max} connections already open (dock.listen_connections)"
                    )
                    conn.close()
                    continue
                threading.Thread(
                    target=self._serve, args=(conn, who), name=f"dock-net-{who}", daemon=True
                ).start()
        finally:
            self._sock.close()
            self._status({"state": "failed" if self.failed else "stopped", "reason": self.failed})

    def _refused(self, who: str, reason: str) -> None:
        _log.warning("network bay: refused %s: %s", who, reason)
        self.refusals.append((who, reason))
        with self.done:
            self.done.notify_all()

    def _serve(self, conn: socket.socket, who: str) -> None:
        try:
            port = self._handshake(conn, who)
            if port is not None:
                self._session(port, who)
        except Exception:  # the listener outlives anything a peer does
            _log.exception("network bay: connection from %s failed", who)
        finally:
            self._slots.release()

    def _handshake(self, conn: socket.socket, who: str) -> NetPort | None:
        """The TLS connection of ``conn``, or None (refused, logged, closed)."""
        conn.settimeout(self.timeout)  # a peer that stalls in the handshake is dropped
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            conn.close()
            self._refused(who, f"TLS handshake failed: {_reason(exc)}")
            return None
        try:
            require_alpn(tls)
        except NetError as exc:
            tls.close()
            self._refused(who, str(exc))
            return None
        return NetPort(tls, who)

    def _session(self, port: NetPort, who: str) -> None:
        with self._lock:
            self._active.add(port)
        try:
            session = DockSession(
                self.store,
                self.identity,
                f"net {who}",
                self.timeout,
                progress=lambda info: self._status({**info, "peer": who}),
                limits=self.limits,
                lock_wait_s=self.timeout / 2,
            )
            result = session.run(port).to_dict()
        finally:
            with self._lock:
                self._active.discard(port)
            port.close()
        self.sessions += 1
        keep = (
            "device",
            "outcome",
            "reason",
            "records",
            "media",
            "bytes",
            "resumed_bytes",
            "receipt_upto",
        )
        self.results.append({"peer": who, **{k: result[k] for k in keep}})
        self._status({"state": "waiting"})
        if session.fault is not None:
            self.cannot_serve(session.fault)
        with self.done:
            self.done.notify_all()

    def cannot_serve(self, reason: str) -> None:
        """Stop the daemon and make it exit with EXIT_CANNOT_SERVE (as a cable bay does)."""
        self.failed = reason
        _log.critical(
            "network bay cannot serve: %s; stopping so that systemd restarts the dock (exit %d)",
            reason,
            EXIT_CANNOT_SERVE,
        )
        self.stop.set()
        if self.exit_on_fault:
            atexit.register(os._exit, EXIT_CANNOT_SERVE)


def _reason(exc: BaseException) -> str:
    """One line for a failed handshake: OpenSSL's reason, or the socket's."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library or 'ssl'})"
    if isinstance(exc, TimeoutError):
        return "the peer sent no TLS handshake in time"
    return str(exc) or type(exc).__name__
