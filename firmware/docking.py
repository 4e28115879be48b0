"""The recorder's dock thread: wait for the dock cable, serve one dock session at a time.

On the camera the USB gadget's serial port (``/dev/ttyGS0``) appears when it is put in a
dock. This thread opens it (pyserial) as soon as it can, then waits for the dock to speak
(the dock sends the first frame, and pyserial flushes a port's input when it opens it, so
the port is kept open between sessions). Each session is :class:`firmware.dock_link.DockLink`
with the recorder's own journal and clock.

A camera that is recording is not offloaded: it keeps recording, refuses the dock with the
reason (``REFUSE``: the dock shows it and records the docking as refused), and is offloaded
at the next docking after the recording has stopped. Why not offload while recording: the
dock's 24-hour count and the officer's handover assume a stopped camera, and a wipe under a
receipt while the officer is still recording would be surprising. A record press during a
session is never ignored, though: evidence comes first, and the session stays safe (it
serves and wipes only what the dock's receipt names).

Threads: the session runs here and appends to the recorder's thread-safe journal; the state
machine and the LEDs stay with the main loop (:meth:`Recorder.dock_begin` /
:meth:`Recorder.dock_end` post to it). A daemon thread with a stop Event and a bounded join;
the recorder stops it before it closes the journal.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from evidence.cable import CableError, FrameType
from evidence.cable_link import Link
from evidence.exc import EvidenceError

from .dock_link import DockLink

_log = logging.getLogger(__name__)


def open_serial(path: str, timeout: float) -> Any:
    """The gadget port through pyserial (the dock link's timeouts apply on top)."""
    import serial

    return serial.Serial(path, timeout=min(timeout, 1.0), exclusive=True)


class DockWorker:
    """Serves docks on ``port_path`` for ``recorder`` until :meth:`stop`."""

    def __init__(
        self,
        recorder: Any,
        port_path: str,
        trusted_docks: dict[str, str],
        *,
        timeout: float = 10.0,
        poll_s: float = 1.0,
        open_port: Callable[[str, float], Any] = open_serial,
    ) -> None:
        self.recorder = recorder
        self.port_path = port_path
        self.trusted_docks = dict(trusted_docks)
        self.timeout = timeout
        self.poll_s = poll_s
        self._open = open_port
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sessions = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="dock-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop waiting; a session in progress ends at the dock's pace (bounded join)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout + 5)
            if self._thread.is_alive():
                _log.warning("dock thread still busy at shutdown")

    def run(self) -> None:
        waiting_logged = False
        while not self._stop.is_set():
            try:
                port = self._open(self.port_path, self.timeout)
            except OSError as exc:  # absent (not docked) or busy; pyserial's error is an OSError
                if not waiting_logged:
                    _log.info("waiting for a dock on %s (%s)", self.port_path, exc)
                    waiting_logged = True
                self._stop.wait(self.poll_s)
                continue
            _log.info("dock port %s open, waiting for the dock to speak", self.port_path)
            waiting_logged = False
            try:
                self._serve(port)
            finally:
                try:
                    port.close()
                except OSError:
                    pass
            self._stop.wait(self.poll_s)  # the cable was pulled: look for the port again

    def _serve(self, port: Any) -> None:
        """Sessions on an open port until it hangs up (unplugged) or the recorder stops."""
        while not self._stop.is_set():
            state = self._wait_for_dock(port)
            if state == "hangup":
                _log.info("dock port %s closed (undocked)", self.port_path)
                return
            if state == "data":
                self._session(port)

    def _wait_for_dock(self, port: Any) -> str:
        poller = select.poll()
        poller.register(port.fileno(), select.POLLIN)
        for _, events in poller.poll(int(self.poll_s * 1000)):
            if events & select.POLLIN:
                return "data"
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return "hangup"
        return "idle"

    def _session(self, port: Any) -> None:
        refusal = self.recorder.dock_begin()
        if refusal:
            _log.warning("dock refused: %s", refusal)
            try:
                self._refuse(port, refusal)
            except (EvidenceError, OSError) as exc:  # cable pulled: keep serving docks
                _log.warning("could not tell the dock: %s", exc)
            return
        try:
            link = DockLink(
                self.recorder.root,
                self.recorder.journal,
                self.recorder.clock,
                self.trusted_docks,
                timeout=self.timeout,
            )
            outcome = link.run_session(port)
            _log.info(
                "docking with %s: %s; %d records, %d bytes sent, %d file(s) wiped%s",
                outcome.dock,
                outcome.outcome or "ended",
                outcome.records_sent,
                outcome.bytes_sent,
                len(outcome.wiped),
                f" ({outcome.reason})" if outcome.reason else "",
            )
        except (EvidenceError, OSError, ValueError) as exc:  # nothing wiped unless journaled
            _log.warning("docking ended early: %s", exc)
        finally:
            self.sessions += 1
            self.recorder.dock_end()
            if hasattr(port, "reset_input_buffer"):
                # What is left of a broken session is not a new one; a pulled cable may
                # refuse even this, and the wait for the next docking handles that.
                with contextlib.suppress(OSError):
                    port.reset_input_buffer()

    def _refuse(self, port: Any, reason: str) -> None:
        """Read the dock's challenge and answer REFUSE with the reason."""
        link = Link(port, self.timeout)
        link.expect_any_first_seq()
        try:
            link.expect(FrameType.CHALLENGE)
        except CableError as exc:  # not a dock's opening (e.g. the end of an old session)
            _log.info("not answering a stray frame: %s", exc)
        else:
            link.refuse(reason)
        if hasattr(port, "reset_input_buffer"):
            port.reset_input_buffer()
