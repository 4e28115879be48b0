"""Bays: one worker per serial port, each docking whatever camera appears on it.

A bay waits for its port (``/dev/ttyACM0`` appears when a camera is plugged in), runs one
:class:`~dock.session.DockSession`, then waits for the camera to leave (the port vanishes
or is replaced) before serving the next one. Progress goes to
``<store>/.status/<bay>.json`` (written atomically, at most 4 times a second), which
``bodycam-dock status`` reads.

A session never takes the bay down: whatever a camera sends, the session ends with a
REFUSE and a flag and the bay serves the next docking. A bay that *cannot* serve (the dock
itself failed: its store, index or registry; or the bay thread hit a bug) stops every bay
and makes the process exit with status 70 (EX_SOFTWARE), so that systemd restarts it and
the start-up checks run again, instead of a live process that serves nobody.

Threads: each bay is a daemon thread with the shared stop Event and a bounded join.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from evidence.clock import format_utc
from evidence.identity import DeviceIdentity

from .session import DockSession, SessionLimits
from .store import DIR_MODE, FILE_MODE, STATUS_DIR, Store

_log = logging.getLogger(__name__)
EXIT_CANNOT_SERVE = 70  # EX_SOFTWARE: systemd's Restart=on-failure restarts the bay


def bay_name(port: str) -> str:
    """``ttyACM0`` for ``/dev/ttyACM0``; ``pts3`` for the simulator's ``/dev/pts/3``."""
    path = Path(port)
    return f"{path.parent.name}{path.name}" if path.parent.name == "pts" else path.name or "bay"


def write_status(store_root: Path, name: str, info: dict[str, Any]) -> None:
    """Progress for operators (not evidence: replaced atomically, not fsynced)."""
    folder = store_root / STATUS_DIR
    folder.mkdir(mode=DIR_MODE, exist_ok=True)
    tmp = folder / f".{name}.json.tmp-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
    os.replace(tmp, folder / f"{name}.json")


def read_status(store_root: Path) -> list[dict[str, Any]]:
    folder = store_root / STATUS_DIR
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _port_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


class Bay:
    """Serves one port until ``stop`` is set."""

    def __init__(
        self,
        port: str,
        store: Store,
        identity: DeviceIdentity,
        stop: threading.Event,
        timeout: float = 10.0,
        poll: float = 0.2,
        open_port=None,
        limits: SessionLimits | None = None,
        exit_on_fault: bool = True,
    ) -> None:
        """``exit_on_fault``: when the bay cannot serve, make the process exit non-zero
        (at interpreter exit, after the daemon's orderly stop); off for in-process use."""
        self.port = port
        self.name = bay_name(port)
        self.store = store
        self.identity = identity
        self.stop = stop
        self.timeout = timeout
        self.poll = poll
        self._open = open_port or self._open_serial
        self.limits = limits
        self.exit_on_fault = exit_on_fault
        self.sessions = 0
        self.failed: str | None = None  # why the bay cannot serve (it has stopped)
        self.last: dict[str, Any] | None = None
        self.done = threading.Event()  # set after each session (tests wait on it)
        self._thread: threading.Thread | None = None
        self._last_write = 0.0
        self._last_state: str | None = None

    @staticmethod
    def _open_serial(path: str, timeout: float):
        import serial

        return serial.Serial(path, baudrate=115200, timeout=min(timeout, 1.0), exclusive=True)

    def _status(self, info: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and info.get("state") == self._last_state and now - self._last_write < 0.25:
            return
        self._last_write = now
        self._last_state = info.get("state")
        info = {
            "bay": self.name,
            "port": self.port,
            "pid": os.getpid(),
            "updated_utc": format_utc(time.time_ns()),
            "last": self.last,
            **info,
        }
        try:
            write_status(self.store.root, self.name, info)
        except OSError as exc:
            _log.warning("bay %s: cannot write status: %s", self.name, exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"bay-{self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 15.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        try:
            self._status({"state": "waiting"}, force=True)
            while not self.stop.is_set():
                plugged = _port_id(self.port)
                if plugged is None:
                    self.stop.wait(self.poll)
                    continue
                self.serve_once()
                if self.failed:
                    break
                while not self.stop.is_set() and _port_id(self.port) == plugged:
                    self.stop.wait(self.poll)  # the camera is still in the bay
                self._status({"state": "waiting"}, force=True)
        except Exception as exc:  # a bug in the bay itself: not silently a dead thread
            _log.exception("bay %s: the bay thread failed", self.name)
            self.cannot_serve(f"the bay thread failed: {type(exc).__name__}: {exc}")
        if self.failed:
            self._status({"state": "failed", "reason": self.failed}, force=True)
        else:
            self._status({"state": "stopped"}, force=True)

    def cannot_serve(self, reason: str) -> None:
        """Stop every bay of this process and make it exit with EXIT_CANNOT_SERVE."""
        self.failed = reason
        _log.critical(
            "bay %s cannot serve: %s; stopping so that systemd restarts the dock (exit %d)",
            self.name,
            reason,
            EXIT_CANNOT_SERVE,
        )
        self.stop.set()
        if self.exit_on_fault:
            # After the daemon's main thread has stopped the other bays and closed the
            # store (it returns 0 on a stop), the interpreter exits with our status.
            atexit.register(os._exit, EXIT_CANNOT_SERVE)

    def serve_once(self) -> dict[str, Any] | None:
        """Dock the camera on the port now; returns the session result as a dict."""
        try:
            port = self._open(self.port, self.timeout)
        except OSError as exc:  # pyserial's SerialException is an OSError
            _log.warning("bay %s: cannot open %s: %s", self.name, self.port, exc)
            self.stop.wait(1.0)
            return None
        try:
            session = DockSession(
                self.store,
                self.identity,
                self.name,
                self.timeout,
                progress=lambda info: self._status(info, force=info.pop("milestone", True)),
                limits=self.limits,
            )
            result = session.run(port).to_dict()
        finally:
            try:
                port.close()
            except Exception as exc:  # a hung-up port may fail to close; still served
                _log.warning("bay %s: closing %s: %s", self.name, self.port, exc)
        self.sessions += 1
        self.last = {
            k: result[k]
            for k in (
                "device",
                "outcome",
                "reason",
                "records",
                "media",
                "bytes",
                "receipt_upto",
                "seconds",
            )
        }
        self._status({"state": result["outcome"], "device": result["device"]}, force=True)
        if session.fault is not None:
            self.cannot_serve(session.fault)
        self.done.set()
        return result
