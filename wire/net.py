"""The dock protocol over TLS TCP: the same frames as the cable (:mod:`wire.cable`), on a
TLS 1.3 connection instead of the USB serial line, for fixed cameras and for body cameras
on the station's Wi-Fi.

Who is who: the dock is the TLS server, and its certificate is a self-signed X.509
certificate made from the dock's own Ed25519 key (:func:`dock_certificate`), so the key
that answers the TLS handshake is the key the unit's registry lists for the dock. The
camera does not trust certificate authorities; it *pins*: after the handshake it reads the
key of the peer's certificate (:func:`peer_key`) and requires it to be a dock key in force
in its signed registry, then requires the dock's CHALLENGE to name that same key. The
camera is authenticated by the protocol's own signed answer to the dock's nonce, as on the
cable. Why that is mutual, and cannot be relayed: ``docs/threat-model.md``.

:class:`NetPort` gives a TLS socket the serial port's shape (``read``/``write``/
``timeout``/``close``, see :class:`wire.link.Port`), so :class:`wire.link.Link` and both
sides' session code run on it unchanged. Pure plumbing: no threads, no files (the dock's
private key reaches OpenSSL through an in-memory file, never the disk).
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from evidence.identity import DeviceIdentity

from .cable import CableError

ALPN = "bodycam-dock/2"
"""The application protocol both ends name in the TLS handshake (the cable protocol,
version 2): a camera pointed at some other TLS service (the broker, say) fails at once,
with that reason, instead of reading its bytes as frames."""
CERT_DAYS = 3650
"""The certificate's validity: the camera pins the key and ignores the dates, but a
certificate must carry some."""
SEND_BUFFER = 256 * 1024
"""The camera's socket send buffer (bytes): a slow link holds at most about this much
that the camera has written and the dock has not read."""
_ADDRESS = re.compile(r"\A(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]+)):(?P<port>\d{1,5})\Z")


class NetError(CableError):
    """The network link failed before the dock protocol began (TLS, ALPN or the pin)."""


class PinError(NetError):
    """The peer's TLS key is not a key this side accepts."""


def parse_address(text: str) -> tuple[str, int]:
    """``("host", port)`` of ``host:port`` or ``[v6]:port``; ValueError with the reason."""
    m = _ADDRESS.match(text.strip()) if isinstance(text, str) else None
    port = int(m["port"]) if m else 0
    if not m or not 0 <= port <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:7443 or [::]:7443)")
    return m["v6"] or m["host"], port


def format_address(address: tuple[str, int] | tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- certificates and contexts ------------------------------------------------------------


def dock_certificate(identity: DeviceIdentity) -> tuple[bytes, bytes]:
    """``(certificate PEM, private key PEM)``: a self-signed certificate of the dock's own
    Ed25519 key, subject CN = the dock id. Made afresh at each start (nothing to renew or
    to keep): only its key matters, and that is the key the registry lists."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    key = Ed25519PrivateKey.from_private_bytes(identity.private_key_bytes())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.device_id)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _tls13(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    return ctx


def server_context(identity: DeviceIdentity) -> ssl.SSLContext:
    """The dock's TLS 1.3 server context, answering with :func:`dock_certificate`.

    OpenSSL loads keys only from files: the PEM goes through a memfd (RAM, closed at once),
    so the key that systemd hands the dock as a credential is never written to a disk."""
    cert, key = dock_certificate(identity)
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    fd = os.memfd_create("bodycam-dock-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert + key)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return ctx


def client_context() -> ssl.SSLContext:
    """The camera's TLS 1.3 client context. No CA and no host name: the camera pins the
    dock's key against its signed registry instead (:func:`peer_key`). TLS 1.3 still
    makes the server prove, in its CertificateVerify, that it holds that key."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_key(sock: ssl.SSLSocket) -> str:
    """The Ed25519 public key (64 hex digits) of the peer's TLS certificate; raises
    :class:`PinError` when there is none or it is not Ed25519."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    der = sock.getpeercert(binary_form=True)
    if not der:
        raise PinError("the peer sent no TLS certificate")
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise PinError(f"the peer's TLS certificate is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PinError(
            f"the peer's TLS key is {type(key).__name__.removeprefix('_')}, not Ed25519 "
            "(a dock answers with its registry key)"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def require_alpn(sock: ssl.SSLSocket) -> None:
    got = sock.selected_alpn_protocol()
    if got != ALPN:
        raise NetError(
            f"the peer does not speak {ALPN} (TLS application protocol {got or 'none'}): "
            "not a bodycam dock connection"
        )


def connect(address: tuple[str, int], timeout: float) -> ssl.SSLSocket:
    """A TLS 1.3 connection to a dock (not yet pinned: see :func:`peer_key`). Raises
    OSError (``ssl.SSLError`` included) when the network or the handshake fails."""
    raw = socket.create_connection(address, timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Little in flight: the camera's stall timeout starts when it has sent a file,
        # and a deep buffer on a slow link would hold more than it can wait for.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock = client_context().wrap_socket(raw, server_hostname=None)
    except BaseException:
        raw.close()
        raise
    return sock


# -- the port ----------------------------------------------------------------------------


class NetPort:
    """A TLS socket in the serial port's shape: ``read(n)`` returns what arrived within
    ``timeout`` (``b""`` when nothing did), raises ``OSError`` once the peer has closed or
    the connection broke; ``write`` sends all or raises ``OSError`` (after
    ``write_timeout`` when the peer stops reading). :class:`wire.link.Link` turns those
    into ``LinkTimeout`` and ``LinkClosed``.

    ``cancelled``: when it returns True (another thread decided), the next read or write
    fails as if the connection broke, within one ``timeout`` tick: the camera gives the
    line up to the cable, or stops, this way, and the session's resume makes it lossless.

    Threads: one session thread reads and writes; ``cancelled`` is called from it.
    """

    def __init__(
        self,
        sock: ssl.SSLSocket,
        peer: str = "",
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.cancelled = cancelled
        self.write_timeout: float | None = 10.0
        self._timeout: float | None = 1.0
        sock.settimeout(self._timeout)

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value
        self.sock.settimeout(value)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise ConnectionAbortedError(errno.ECONNABORTED, "connection given up (cancelled)")

    def read(self, size: int) -> bytes:
        self._check()
        try:
            data = self.sock.recv(size)
        except (TimeoutError, ssl.SSLWantReadError):
            return b""
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "the peer closed the connection")
        return data

    def write(self, data: bytes | memoryview) -> int:
        self._check()
        self.sock.settimeout(self.write_timeout)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(self._timeout)
        return len(data)

    def close(self, linger: float = 1.0) -> None:
        """Close gracefully: send a FIN after what was written, read and drop what the
        peer still sends (for at most ``linger`` s), then close. Closing with unread data
        would reset the connection, and a reset can discard our last frame (a REFUSE or
        a BYE) before the peer reads it."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)  # TCP only: no TLS alert
            self.sock.settimeout(linger)
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline and socket.socket.recv(self.sock, 65536):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()
