"""A dependency-free sd_notify client, shared by the recorder and the dock daemons.

Why not python-systemd: it is a C extension that is not on PyPI under that name and would
be one more thing to build on a Pi Zero. The protocol is one datagram per message to the
AF_UNIX socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).

Every function is a no-op returning ``False`` when the process was not started by systemd
(``NOTIFY_SOCKET`` unset), so the daemons call them unconditionally.

Daemons call :func:`ready` once serving, :func:`watchdog_ping` from their main loop (at
least every :func:`watchdog_interval` / 2 seconds), :func:`status` on state changes and
:func:`stopping` on the way out. A hung main loop then stops pinging and systemd restarts
the service (``WatchdogSec=`` with ``Restart=on-failure``).
"""

from __future__ import annotations

import logging
import os
import socket

_log = logging.getLogger(__name__)

__all__ = ["notify", "ready", "stopping", "status", "watchdog_ping", "watchdog_interval"]


def _address(name: str) -> str | bytes:
    """The socket address for ``NOTIFY_SOCKET``: ``@name`` is the abstract namespace."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send one sd_notify message (e.g. ``"READY=1"`` or several lines joined by ``\\n``).

    Returns ``True`` when the message was sent, ``False`` without ``NOTIFY_SOCKET`` or when
    the socket is gone (logged at WARNING: the service keeps running; systemd will act on
    the missing notification itself).
    """
    env = os.environ if env is None else env
    name = env.get("NOTIFY_SOCKET")
    if not name:
        return False
    if not name.startswith(("/", "@")):
        _log.warning("ignoring NOTIFY_SOCKET %r: not a path or abstract socket", name)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(name))
            sock.sendall(state.encode())
    except OSError as exc:
        _log.warning("sd_notify %r failed: %s", state.split("\n", 1)[0], exc)
        return False
    return True


def ready(text: str | None = None) -> bool:
    """Tell systemd the service is up (``Type=notify`` units wait for this)."""
    msg = "READY=1"
    if text:
        msg += "\nSTATUS=" + _one_line(text)
    return notify(msg)


def stopping(text: str | None = None) -> bool:
    """Tell systemd the service is shutting down on purpose (not a hang)."""
    msg = "STOPPING=1"
    if text:
        msg += "\nSTATUS=" + _one_line(text)
    return notify(msg)


def status(text: str) -> bool:
    """Free-form status text, shown by ``systemctl status``."""
    return notify("STATUS=" + _one_line(text))


def watchdog_ping() -> bool:
    """Keep the watchdog fed; call from the main loop, never from a helper thread."""
    return notify("WATCHDOG=1")


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from ``WATCHDOG_USEC``, or ``None`` when off.

    ``WATCHDOG_PID``, when set, must be this process: a child that inherited the
    environment must not believe it owns the watchdog. Ping at half this interval.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        _log.warning("ignoring WATCHDOG_USEC %r: not an integer", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000


def _one_line(text: str) -> str:
    """Status is one line in the protocol: a newline would start a new assignment."""
    return " ".join(text.splitlines())
