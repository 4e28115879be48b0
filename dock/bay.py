"""Bays: one worker per serial port, each docking whatever camera appears on it.

A bay waits for its port (``/dev/ttyACM0`` appears when a camera is plugged in), runs one
:class:`~dock.session.DockSession`, then waits for the camera to leave (the port vanishes
or is replaced) before serving the next one. Progress goes to
``<store>/.status/<bay>.json`` (written atomically, at most 4 times a second), which
``bodycam-dock status`` reads.

Threads: each bay is a daemon thread with the shared stop Event and a bounded join.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from evidence.clock import format_utc
from evidence.identity import DeviceIdentity

from .session import DockSession
from .store import STATUS_DIR, Store

_log = logging.getLogger(__name__)


def bay_name(port: str) -> str:
    """``ttyACM0`` for ``/dev/ttyACM0``; ``pts3`` for the simulator's ``/dev/pts/3``."""
    path = Path(port)
    return f"{path.parent.name}{path.name}" if path.parent.name == "pts" else path.name or "bay"


def write_status(store_root: Path, name: str, info: dict[str, Any]) -> None:
    """Progress for operators (not evidence: replaced atomically, not fsynced)."""
    folder = store_root / STATUS_DIR
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{name}.json.tmp-{os.getpid()}-{threading.get_ident()}"
    tmp.write_text(json.dumps(info))
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
    ) -> None:
        self.port = port
        self.name = bay_name(port)
        self.store = store
        self.identity = identity
        self.stop = stop
        self.timeout = timeout
        self.poll = poll
        self._open = open_port or self._open_serial
        self.sessions = 0
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
        self._status({"state": "waiting"}, force=True)
        while not self.stop.is_set():
            plugged = _port_id(self.port)
            if plugged is None:
                self.stop.wait(self.poll)
                continue
            self.serve_once()
            while not self.stop.is_set() and _port_id(self.port) == plugged:
                self.stop.wait(self.poll)  # the camera is still in the bay
            self._status({"state": "waiting"}, force=True)
        self._status({"state": "stopped"}, force=True)

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
            )
            result = session.run(port).to_dict()
        finally:
            try:
                port.close()
            except OSError:
                pass
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
        self.done.set()
        return result
