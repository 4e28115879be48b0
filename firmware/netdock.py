"""The camera's network uploader: the dock protocol over TLS TCP to the station's dock.

With ``[dock] network = "host:port"`` (a fixed camera, always on the network; or a body
camera allowed to use the station's Wi-Fi), this thread connects to the dock each time a
segment (or photo) closes, runs one dock session, the same
:class:`~firmware.dock_link.DockLink` the cable runs, and honours its receipt and wipe
exactly as on the cable. So each segment reaches the store within a minute of closing
whenever the network is up (Art. 4, "real-time transmission and storage"), and the cable
only carries what the network did not.

Who the dock is: after the TLS handshake the camera reads the key of the dock's
certificate and requires it to be a dock key of its unit-signed registry, not revoked
(:func:`pinned_dock`); else it refuses (a REFUSE frame with the reason) and closes. The
session then requires the dock's CHALLENGE to name that same key. The camera proves who
it is by signing the dock's nonce, as on the cable (docs/threat-model.md: why this is
mutual authentication).

Unlike the cable, a network session runs while the camera records: a fixed camera records
all its working hours, and waiting for a stop would break the one-minute rule. The open
segment has no record yet, so no receipt can cover it; only closed, stored files are wiped.
The LEDs do not show ``docked`` (the officer sees the recording state).

Retries: a connection that fails (no network, dock down, cut mid-session) is tried again
after ``network_retry_s``, doubling up to ``network_retry_max_s``; a dock that refuses
the session (or that the camera refuses) is tried again after
``network_refused_retry_s``, so a flagged camera does not flood the dock with flags. An
interrupted session loses nothing: the next one resumes the file where it stopped.

Threads: :meth:`NetUploader.run` is a daemon thread with a stop Event and a bounded join;
the journal listener (:meth:`_on_record`) runs in whichever thread appends and only sets
flags and an Event. A :class:`~firmware.docking.SessionGate` shared with the cable's
:class:`~firmware.docking.DockWorker` keeps one session at a time, the cable first.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from evidence.exc import EvidenceError
from evidence.record import Record
from evidence.registry import DockEntry
from wire.cable import CableError, FrameError, FrameType, Refused, record_file
from wire.link import Link
from wire.net import (
    NetError,
    NetPort,
    PinError,
    connect,
    parse_address,
    peer_key,
    require_alpn,
)

from .dock_link import MAX_CLOCK_STEP_S, DockLink, SessionOutcome
from .docking import SessionGate

_log = logging.getLogger(__name__)


def pinned_dock(key: str, trusted_docks: Mapping[str, str | DockEntry]) -> str:
    """The id of the registry's dock whose key is ``key`` (the TLS peer's); raises
    :class:`~wire.net.PinError` when no dock of the registry has it, or it is revoked."""
    for dock_id, entry in trusted_docks.items():
        public = entry if isinstance(entry, str) else entry.public_key
        if public != key:
            continue
        if isinstance(entry, DockEntry) and entry.revoked:
            raise PinError(f"dock {dock_id}: {entry.problem_at(entry.revoked_utc)}; refused")
        return dock_id
    raise PinError(
        f"the dock's TLS key {key[:16]}... is not a dock key of this camera's registry: refused"
    )


class NetUploader:
    """Uploads ``recorder``'s journal and media to the dock at ``address`` until :meth:`stop`."""

    def __init__(
        self,
        recorder: Any,
        address: str,
        trusted_docks: Mapping[str, str | DockEntry],
        *,
        timeout: float = 10.0,
        retry_s: float = 1.0,
        retry_max_s: float = 20.0,
        refused_retry_s: float = 120.0,
        idle_s: float = 60.0,
        max_clock_step_s: float = MAX_CLOCK_STEP_S,
        clock_tolerance_s: float = 1.0,
        gate: SessionGate | None = None,
        open_connection: Callable[[tuple[str, int], float], Any] = connect,
    ) -> None:
        if not trusted_docks:
            raise ValueError(
                "network docking needs the unit-signed registry (dock.registry): the camera "
                "pins the dock's key from it"
            )
        self.recorder = recorder
        self.address_text = address
        self.address = parse_address(address)
        self.trusted_docks = dict(trusted_docks)
        self.timeout = timeout
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.refused_retry_s = refused_retry_s
        self.idle_s = idle_s
        self.max_clock_step_s = max_clock_step_s
        self.clock_tolerance_s = clock_tolerance_s
        self.gate = gate or SessionGate()
        self._connect = open_connection
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dirty = True  # records not yet uploaded (at start: whatever the card holds)
        self._thread: threading.Thread | None = None
        self.sessions = 0
        self.stored = 0  # sessions that ended with the dock's BYE (stored)
        self.failures = 0
        self.last: SessionOutcome | BaseException | None = None
        self.done = threading.Condition()  # notified after each attempt (tests wait on it)

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.recorder.journal.add_listener(self._on_record)
        self._thread = threading.Thread(target=self.run, name="dock-net", daemon=True)
        self._thread.start()
        _log.info("network docking to %s", self.address_text)

    def stop(self) -> None:
        """Stop; a session in progress is given up at once (the next one resumes it)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout + 5)
            if self._thread.is_alive():
                _log.warning("network dock thread still busy at shutdown")

    def kick(self) -> None:
        """Upload now (a test, or the simulator, may ask)."""
        self._dirty = True
        self._wake.set()

    def _on_record(self, record: Record) -> None:
        """Journal listener (the appending thread): note what the dock does not have yet,
        and wake at once for a closed file or the end of a recording."""
        if threading.current_thread() is self._thread:
            return  # the session's own records: the dock fetches them in the same session
        self._dirty = True
        if record_file(record) is not None or record.kind == "recording_stopped":
            self._wake.set()

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        refused = False
        while not self._stop.is_set():
            if refused:
                self._stop.wait(self.refused_retry_s)
            elif failures:  # a closed segment does not cut the backoff short
                delay = min(self.retry_max_s, self.retry_s * 2 ** (failures - 1))
                self._stop.wait(delay * random.uniform(0.75, 1.0))
            else:
                self._wake.wait(self.idle_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            if not self._dirty:
                failures, refused = 0, False
                continue
            try:
                result = self.attempt()
            except Exception:  # the thread outlives anything a dock or a network does
                _log.exception("network docking: unexpected error")
                result = "failed"
            failures = failures + 1 if result == "failed" else 0
            refused = result == "refused"
            with self.done:
                self.done.notify_all()

    def attempt(self) -> str:
        """One connection and session: ``"stored"``, ``"refused"``, ``"failed"`` (the
        network or the connection failed: try again soon) or ``"busy"`` (the cable)."""
        with self.gate.network() as got:
            if not got:
                return "busy"  # the cable has the camera: it carries everything
            self._dirty = False  # records from now on wait for the next session
            try:
                outcome = self._session()
            except BaseException as exc:
                self._dirty = True
                self.failures += 1
                self.last = exc
                if isinstance(exc, (NetError, FrameError, Refused)):
                    _log.warning("network docking to %s refused: %s", self.address_text, exc)
                    return "refused"
                if isinstance(exc, (OSError, CableError, EvidenceError)):
                    _log.warning("network docking to %s failed: %s", self.address_text, exc)
                    return "failed"
                raise
        self.last = outcome
        if outcome.outcome != "stored":
            self._dirty = True
            _log.warning(
                "network docking with %s: %s (%s)",
                outcome.dock,
                outcome.outcome or "ended",
                outcome.reason or "no reason given",
            )
            return "refused"
        self.stored += 1
        _log.info(
            "network docking with %s: stored; %d records, %d bytes sent, %d file(s) wiped",
            outcome.dock,
            outcome.records_sent,
            outcome.bytes_sent,
            len(outcome.wiped),
        )
        return "stored"

    def _session(self) -> SessionOutcome:
        sock = self._connect(self.address, self.timeout)
        port = NetPort(
            sock,
            self.address_text,
            cancelled=lambda: self._stop.is_set() or self.gate.cable_waiting.is_set(),
        )
        try:
            self.sessions += 1
            try:
                require_alpn(sock)
                key = peer_key(sock)
                dock_id = pinned_dock(key, self.trusted_docks)
            except NetError as exc:
                self._refuse(port, str(exc))
                raise
            _log.info("network docking to %s: dock %s, key pinned", self.address_text, dock_id)
            link = DockLink(
                self.recorder.root,
                self.recorder.journal,
                self.recorder.clock,
                self.trusted_docks,
                timeout=self.timeout,
                max_clock_step_s=self.max_clock_step_s,
                pinned_key=key,
                clock_tolerance_s=self.clock_tolerance_s,
            )
            return link.run_session(port)
        finally:
            port.close()

    def _refuse(self, port: NetPort, reason: str) -> None:
        """Read the dock's challenge (a frame, parsed and dropped) and answer REFUSE with
        the reason, as the cable's refusal does: the operator of a misconfigured dock
        sees why in its log and index."""
        link = Link(port, self.timeout)
        link.expect_any_first_seq()
        try:
            link.expect(FrameType.CHALLENGE)
        except CableError:
            return  # no dock's opening: nothing to answer
        link.refuse(reason)


def uploader_for(
    recorder: Any,
    dock: Mapping[str, Any],
    trusted_docks: Mapping[str, str | DockEntry],
    gate: SessionGate | None = None,
) -> NetUploader:
    """The uploader the ``[dock]`` config section describes (``network`` must be set)."""
    return NetUploader(
        recorder,
        dock["network"],
        trusted_docks,
        timeout=dock["timeout_s"],
        retry_s=dock["network_retry_s"],
        retry_max_s=dock["network_retry_max_s"],
        refused_retry_s=dock["network_refused_retry_s"],
        idle_s=dock["network_idle_s"],
        max_clock_step_s=dock["max_clock_step_s"],
        clock_tolerance_s=dock["network_clock_tolerance_s"],
        gate=gate,
    )
