"""Broker connection settings and the paho-mqtt client built from them, shared by the
camera (:mod:`firmware.mqtt`), the consoles (:mod:`alerting.watch`: the supervisor's and the
web console's) and the dock (:mod:`dock.alerts`), so all of them read the password file and
set up TLS the same way.

Only the connection lives here; each caller keeps its own extras (unit, inflight window,
deadlines, ...) by subclassing :class:`ConnectionSettings`, and its own protocol and
session choices are parameters of :func:`make_client`.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from evidence.exc import ConfigError

__all__ = ["ConnectionSettings", "make_client", "read_password", "transport_problem"]


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the broker is and how to log in. TLS is required: a client without
    ``ca_file`` is refused at construction unless ``insecure`` is set (plain TCP, which
    sends the password in clear text: loopback test brokers and the simulator only).
    ``username`` "" means the caller's default (the camera: its device id; else none)."""

    host: str
    port: int = 8883
    ca_file: str = ""  # CA that signed the broker's certificate
    cert_file: str = ""  # optional client certificate
    key_file: str = ""
    username: str = ""
    password_file: str = ""  # one line, mode 0600, written by scripts/issue-broker-credential
    keepalive_s: int = 30
    insecure: bool = False  # plain TCP, only when said so explicitly

    def __post_init__(self) -> None:
        problem = transport_problem(self.host, self.ca_file, self.insecure)
        if problem:
            raise ConfigError(problem)


def transport_problem(host: str, ca_file: str, insecure: object) -> str | None:
    """Why these settings may not connect, or None: TLS unless ``insecure`` is true."""
    if not isinstance(insecure, bool):
        return f"mqtt.insecure must be true or false, not {insecure!r}"
    if insecure and ca_file:
        return "mqtt.insecure = true and mqtt.ca_file are both set: choose TLS or plain TCP"
    if host and not ca_file and not insecure:
        return (
            f"broker {host}: mqtt.ca_file is empty; TLS is required (set ca_file to the "
            "broker's CA, or insecure = true for a plain-TCP test broker)"
        )
    return None


def read_password(path: str | os.PathLike[str]) -> str:
    """The password in ``path`` (one line), refusing a file other users could read."""
    path = Path(path)
    try:
        if os.stat(path).st_mode & 0o077:
            raise ConfigError(f"{path}: broker password file must be mode 0600")
        return path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"{path}: broker password file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the broker password file: {why}") from None


def make_client(
    settings: ConnectionSettings,
    client_id: str,
    *,
    protocol: MQTTProtocolVersion = mqtt.MQTTv311,
    clean_session: bool | None = None,
    default_username: str = "",
) -> mqtt.Client:
    """A paho client (callback API 2) with credentials and TLS set, not yet connected.

    The password file is read now, so a rotated password takes effect on the next client.
    Raises :class:`ConfigError` for a missing or unreadable password file, and ``OSError``
    naming the files when the TLS files cannot be loaded."""
    problem = transport_problem(settings.host, settings.ca_file, settings.insecure)
    if problem:  # settings made with dataclasses.replace(...) are checked too, but be sure
        raise ConfigError(problem)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=protocol,
    )
    username = settings.username or default_username
    if username:
        password = read_password(settings.password_file) if settings.password_file else None
        client.username_pw_set(username, password)
    if settings.ca_file:
        try:
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file or None,
                keyfile=settings.key_file or None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except OSError as exc:  # ssl.SSLError too; neither names the file
            files = ", ".join(
                f for f in (settings.ca_file, settings.cert_file, settings.key_file) if f
            )
            why = exc.strerror if exc.strerror else str(exc)
            raise OSError(f"cannot load the broker's TLS files ({files}): {why}") from None
    return client
