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

Unplugging: a pulled cable hangs the port up. A hung-up tty polls as "data waiting" *and*
hung up, reads fail with EIO, and ``tcflush`` (pyserial's ``reset_input_buffer``) raises
``termios.error``, which is not an ``OSError``. The thread checks for the hang-up first,
treats any of these as "the cable is gone", closes the port and waits for it again, so the
camera docks again when it is put back, without a reboot. Nothing a port or a dock does
ends the thread: an unexpected error is logged and the port is opened again.

Threads: the session runs here and appends to the recorder's thread-safe journal; the state
machine and the LEDs stay with the main loop (:meth:`Recorder.dock_begin` /
:meth:`Recorder.dock_end` post to it). A daemon thread with a stop Event and a bounded join;
the recorder stops it before it closes the journal.
"""

from __future__ import annotations

import contextlib
import logging
import select
import termios
import threading
from collections.abc import Callable, Mapping
from typing import Any

from evidence.exc import EvidenceError
from evidence.registry import DockEntry
from wire.cable import CableError, FrameType, LinkClosed
from wire.link import Link

from .dock_link import MAX_CLOCK_STEP_S, DockLink

_log = logging.getLogger(__name__)

PORT_ERRORS = (OSError, termios.error, ValueError)
"""What a vanished port raises: pyserial's SerialException is an OSError, termios.error (from
tcflush/tcgetattr on a hung-up tty) is not, and a closed pyserial port raises ValueError."""
_HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL


def open_serial(path: str, timeout: float) -> Any:
    """The gadget port through pyserial (the dock link's timeouts apply on top)."""
    import serial

    return serial.Serial(path, timeout=min(timeout, 1.0), exclusive=True)


class SessionGate:
    """One dock session at a time on a camera, the cable first.

    The cable dock and the network uploader (:mod:`firmware.netdock`) serve the same
    journal and card; two sessions at once could wipe a file the other is sending. A
    network session holds the gate while it runs and gives it up as soon as the cable
    wants it (:attr:`cable_waiting` makes its connection fail, see
    :class:`wire.net.NetPort`): the cable then carries what the network did not, and the
    interrupted file resumes at its next session. Threads: the dock thread and the
    uploader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cable_waiting = threading.Event()

    @contextlib.contextmanager
    def cable(self, timeout: float):
        """For the cable's session: yields whether the gate was taken within ``timeout``
        (a network session notices within a second and ends)."""
        self.cable_waiting.set()
        try:
            got = self._lock.acquire(timeout=timeout)
        finally:
            self.cable_waiting.clear()
        try:
            yield got
        finally:
            if got:
                self._lock.release()

    @contextlib.contextmanager
    def network(self, timeout: float = 1.0):
        """For a network session: yields False while the cable has (or wants) the gate."""
        got = not self.cable_waiting.is_set() and self._lock.acquire(timeout=timeout)
        try:
            yield got
        finally:
            if got:
                self._lock.release()


class DockWorker:
    """Serves docks on ``port_path`` for ``recorder`` until :meth:`stop`."""

    def __init__(
        self,
        recorder: Any,
        port_path: str,
        trusted_docks: Mapping[str, str | DockEntry],
        *,
        timeout: float = 10.0,
        poll_s: float = 1.0,
        max_clock_step_s: float = MAX_CLOCK_STEP_S,
        open_port: Callable[[str, float], Any] = open_serial,
        gate: SessionGate | None = None,
    ) -> None:
        """``gate``: shared with the network uploader, so that one session runs at a time."""
        self.recorder = recorder
        self.gate = gate or SessionGate()
        self.port_path = port_path
        self.trusted_docks = dict(trusted_docks)
        self.max_clock_step_s = max_clock_step_s
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
            except PORT_ERRORS as exc:  # absent (not docked), busy, or hung up at open
                if not waiting_logged:
                    _log.info("waiting for a dock on %s (%s)", self.port_path, exc)
                    waiting_logged = True
                self._stop.wait(self.poll_s)
                continue
            _log.info("dock port %s open, waiting for the dock to speak", self.port_path)
            waiting_logged = False
            try:
                self._serve(port)
            except Exception:  # the thread outlives anything a port or a dock does
                _log.exception("dock thread: unexpected error; opening %s again", self.port_path)
            finally:
                with contextlib.suppress(*PORT_ERRORS):
                    port.close()
            self._stop.wait(self.poll_s)  # the cable was pulled: look for the port again

    def _serve(self, port: Any) -> None:
        """Sessions on an open port until it hangs up (unplugged) or the recorder stops."""
        while not self._stop.is_set():
            state = self._wait_for_dock(port)
            if state == "hangup":
                _log.info("dock port %s hung up (undocked)", self.port_path)
                return
            if state == "data" and not self._session(port):
                _log.info("dock port %s lost during the session (undocked)", self.port_path)
                return

    def _wait_for_dock(self, port: Any) -> str:
        """``"hangup"``, ``"data"`` or ``"idle"``. A hung-up tty polls as readable too, so
        the hang-up is checked first (else a session would start on a dead line)."""
        try:
            poller = select.poll()
            poller.register(port.fileno(), select.POLLIN)
            ready = poller.poll(int(self.poll_s * 1000))
        except PORT_ERRORS:
            return "hangup"
        for _, events in ready:
            if events & _HANGUP:
                return "hangup"
            if events & select.POLLIN:
                return "data"
        return "idle"

    def _session(self, port: Any) -> bool:
        """One docking; False when the line was lost (the port must be opened again)."""
        refusal = self.recorder.dock_begin()
        if refusal:
            return self._turn_away(port, refusal)
        with self.gate.cable(self.timeout / 2) as got:
            if got:
                return self._cable_session(port)
        self.recorder.dock_end()
        return self._turn_away(port, "a network offload is still ending: dock again in a moment")

    def _turn_away(self, port: Any, reason: str) -> bool:
        """Tell the dock why not, then drop what it sent; False when the line was lost."""
        _log.warning("dock refused: %s", reason)
        try:
            self._refuse(port, reason)
        except LinkClosed as exc:
            _log.warning("could not tell the dock: %s", exc)
            return False
        except (EvidenceError, *PORT_ERRORS) as exc:
            _log.warning("could not tell the dock: %s", exc)
        return self._drop_input(port)

    def _cable_session(self, port: Any) -> bool:
        alive = True
        try:
            link = DockLink(
                self.recorder.root,
                self.recorder.journal,
                self.recorder.clock,
                self.trusted_docks,
                timeout=self.timeout,
                max_clock_step_s=self.max_clock_step_s,
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
        except LinkClosed as exc:  # the cable was pulled mid-session
            _log.warning("docking ended early: %s", exc)
            alive = False
        except (EvidenceError, *PORT_ERRORS) as exc:  # nothing wiped unless journaled
            _log.warning("docking ended early: %s", exc)
        finally:
            self.sessions += 1
            self.recorder.dock_end()
        return self._drop_input(port) and alive

    def _drop_input(self, port: Any) -> bool:
        """Drop what is left of a broken session (it is not a new one); False when the
        port is gone (a hung-up tty refuses even this, with termios.error)."""
        if not hasattr(port, "reset_input_buffer"):
            return True
        try:
            port.reset_input_buffer()
        except PORT_ERRORS as exc:
            _log.info("dock port %s: %s", self.port_path, exc)
            return False
        return True

    def _refuse(self, port: Any, reason: str) -> None:
        """Read the dock's challenge and answer REFUSE with the reason."""
        link = Link(port, self.timeout)
        link.expect_any_first_seq()
        try:
            link.expect(FrameType.CHALLENGE)
        except LinkClosed:
            raise
        except CableError as exc:  # not a dock's opening (e.g. the end of an old session)
            _log.info("not answering a stray frame: %s", exc)
        else:
            link.refuse(reason)
