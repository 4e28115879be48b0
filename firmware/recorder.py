"""The recorder service: wires the state machine to the journal, the camera, the writer, the
buttons, the indicators and the sensors, and runs the main loop.

Threads (who calls what):

- the camera's thread calls ``writer.output.outputframe`` (enqueue only);
- the writer thread muxes, hashes and signs segments and reports through :meth:`_notify`;
  the main loop never waits for it (its commands do not block), watches it for a stalled
  card (``storage_stalled``) and restarts it when it dies (``writer_fault``);
- gpiozero's callback thread calls :meth:`button` (enqueue only);
- the alerts engineer's MQTT thread calls :meth:`acknowledge` (enqueue only);
- the dock thread (``firmware/docking.py``) calls :meth:`dock_begin` / :meth:`dock_end`
  (post and wait for the main loop's answer) and appends to the journal during a session;
- the main loop (:meth:`run`, the daemon's main thread or a simulator thread) owns the
  state machine, journals the non-media records, drives the indicators and polls sensors;
- short helper threads wait for the announcement's end and take photos (each journals when
  done); the main loop starts the announcement itself, at the press.

Time comes from the injected clock: the loop waits with ``clock.wait_event(event, seconds)``
(real seconds on the device's RtcClock, paced ones on the twin's SimClock).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from daemonkit import systemd
from daemonkit.logs import Event
from evidence.clock import Clock
from evidence.exc import JournalError
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.layout import DeviceStorage
from evidence.media import HashingWriter, hash_file
from evidence.procedures import load_procedures
from evidence.schedule import parse_schedule

from . import config as cfg
from .hardware import Camera, Indicators, Microphone, Playback, Power, Speaker
from .recovery import damage_body, new_damage, read_journal, recover, unsigned_media
from .segment import VideoFormat, segment_name
from .state import FAULT, NS, READY, RECORDING, STOPPING, Action, Health, Machine
from .writer import SegmentWriter

_log = logging.getLogger(__name__)

FIRMWARE_VERSION = "bodycam-recorder 0.1.0"


class ClockPacer:
    """Waits in the injected clock's time (``clock.wait_event``): real seconds on the
    device, paced simulated ones in the twin."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock

    def wait(self, wake: threading.Event, seconds: float) -> None:
        self.clock.wait_event(wake, seconds)

    def close(self) -> None:
        pass


@dataclass
class Stats:
    """What the recorder did, for the simulator's summary and the benchmark."""

    segments: int = 0
    photos: int = 0
    markers: int = 0
    recovered: int = 0
    stoppages: dict[str, int] = field(default_factory=dict)
    beeps: dict[str, int] = field(default_factory=dict)
    announcements: int = 0


class Recorder:
    def __init__(
        self,
        config: dict[str, Any],
        *,
        identity: DeviceIdentity,
        clock: Clock,
        camera: Camera,
        indicators: Indicators,
        power: Power,
        speaker: Speaker,
        microphone: Microphone,
        pin_factory: Any = None,
        buttons: bool = True,
        sign: bool = True,
        pacer: Any = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.clock = clock
        self.camera = camera
        self.indicators = indicators
        self.power = power
        self.speaker = speaker
        self.microphone = microphone
        self.storage = DeviceStorage(config["device"]["storage"])
        self.root = self.storage.root
        procedures = load_procedures()
        self.machine = Machine(cfg.settings(config), procedures=list(procedures.values()))
        self.stats = Stats()
        self.sign = sign
        if pacer is None:
            pacer = ClockPacer(clock)
        self.pacer = pacer
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._helpers: list[threading.Thread] = []
        self._pin_factory = pin_factory
        self._want_buttons = buttons
        self._buttons = None
        self._photo_counter = 0
        self._restarting = threading.Lock()
        self._loop_ident: int | None = None
        self._started_ns = 0
        self._last_ping = 0.0
        health = config["health"]
        self._restart_s = float(health["writer_restart_s"])
        self._restarts = int(health["writer_restarts"])
        self._writer_attempts = 0  # restarts since the last segment the writer signed
        self._writer_restart_at: int | None = None  # clock ns; main loop only
        self._writer_given_up = False
        self._unjournaled: list[tuple[str, dict]] = []  # records the journal refused
        sched = config["schedule"]
        self.schedule = (
            parse_schedule({k: sched[k] for k in ("days", "hours", "utc_offset")}, "schedule")
            if sched["fixed"]
            else None
        )  # a fixed camera records in these working hours by itself
        self._reserve_alerts = 0  # reserve spells alerted (Journal.reserve_spends); main loop
        self._reserve_low = False  # a reserve_spent was alerted and the reserve not whole since
        self.wav = cfg.announcement_wav(config)
        self.wav_sha256 = hash_file(self.wav)[1]
        self.journal: Journal | None = None
        self.writer: SegmentWriter | None = None
        self.services: list[Any] = []  # threads using the journal: stop()ped before it closes
        self._docked = False  # main loop only

    # -- life cycle ------------------------------------------------------------------

    def open(self) -> None:
        """Open the journal (repairing a torn tail), recover unsigned media, journal boot."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.storage.read_identity() is None:
            self.storage.write_identity(self.identity)
        path = self.storage.journal_path
        self.journal = Journal(path, self.identity, clock=self.clock, repair_torn=True)
        records, damage = read_journal(path, self.identity.device_id)
        pending = unsigned_media(self.root, self.journal, records)
        # Recovered: the opening repaired a torn tail or finished a repair a crash cut
        # short (the journal says which, whatever the file looked like before), or media
        # were left unsigned.
        reason = "recovered" if (self.journal.repaired or pending) else "start"
        self.journal.append(
            "boot",
            {"firmware": FIRMWARE_VERSION, "boot_id": secrets.token_hex(16), "reason": reason},
        )
        if self.schedule is not None:  # what the compliance report measures the hours by
            self.journal.append("schedule", self.schedule.body())
        fresh = new_damage(records, damage)
        if damage:
            first = damage[0]
            _log.warning(
                "journal damaged: %d line(s) are not links of the chain (%d new), first at "
                "byte %d: %s; recording goes on",
                len(damage),
                len(fresh),
                first.offset,
                first.problem,
            )
        if fresh:  # journaled, and alerted, once per damaged line
            self.journal.append("journal_damaged", damage_body(fresh))
        self.stats.recovered = len(recover(self.root, self.journal, self.clock.time_ns(), pending))
        rec = self.config["recording"]
        cam = self.camera  # the audio layout is the camera's: it knows what it encodes
        fmt = VideoFormat(
            cam.width,
            cam.height,
            cam.fps,
            cam.audio_sample_rate if cam.audio else None,
            cam.audio_channels,
            bytes(cam.audio_extradata),
        )
        self._photo_counter = self.journal.next_seq
        self.writer = SegmentWriter(
            root=self.root,
            journal=self.journal,
            device_id=self.identity.device_id,
            fmt=fmt,
            clock=self.clock,
            notify=self._notify,
            segment_max_s=rec["segment_max_s"],
            flush_interval_s=rec["flush_interval_s"],
            pre_event_s=rec["pre_event_s"],
            pre_event_audio=rec["pre_event_audio"],
            pre_event_max_bytes=int(rec["pre_event_max_mb"]) << 20,
            queue_frames=rec["queue_frames"],
            put_timeout_s=rec["queue_put_timeout_s"],
            sign=self.sign,
            first_counter=self.journal.next_seq,
        )

    def start(self) -> None:
        """Start the writer, the camera and the buttons; show ``ready``."""
        if self.journal is None:
            self.open()
        if self._want_buttons:
            from .controls import Buttons

            self._buttons = Buttons(
                self.button,
                self.clock,
                pin_factory=self._pin_factory,
                bounce_s=self.config["controls"]["bounce_s"],
            )
        self.writer.start()
        self._started_ns = self.clock.monotonic_ns()
        try:
            self.camera.start(self.writer.output)
        except Exception as exc:  # the frame watchdog journals it and the retries begin
            _log.error("camera did not start: %s", exc)
        self._do(Action("show", (self.machine.indicator_state(),)))
        self._health(self.clock.monotonic_ns())
        if self.schedule is not None:  # booted inside working hours: record at once
            window = self.schedule.open_at(self.clock.time_ns())
            self._apply(self.machine.on_schedule(window, self.clock.monotonic_ns()))
        self.ready.set()
        _log.info("recorder ready (device %s)", self.identity.device_id)

    def run(self) -> None:
        """The main loop, until :meth:`request_stop`; then a clean shutdown."""
        if not self.ready.is_set():
            self.start()
        self._loop_ident = threading.get_ident()
        systemd.ready(f"ready, device {self.identity.device_id}")
        poll = int(self.config["health"]["poll_s"] * NS)
        next_health = self.clock.monotonic_ns() + poll
        try:
            while not self._stop.is_set():
                now = self.clock.monotonic_ns()
                deadline = min(next_health, self.machine.next_deadline(now) or next_health)
                if self.schedule is not None:
                    utc = self.clock.time_ns()
                    deadline = min(deadline, now + self.schedule.next_change(utc) - utc)
                if self._writer_restart_at is not None:
                    deadline = min(deadline, self._writer_restart_at)
                if not self._wake.is_set():
                    self.pacer.wait(self._wake, max(0.0, (deadline - now) / NS))
                self._wake.clear()
                syncs = self._drain()
                now = self.clock.monotonic_ns()
                if now >= next_health:
                    self._health(now)
                    next_health = now + poll
                self._apply(self.machine.on_tick(now))
                if self.schedule is not None:
                    window = self.schedule.open_at(self.clock.time_ns())
                    self._apply(self.machine.on_schedule(window, now))
                if self._writer_restart_at is not None and now >= self._writer_restart_at:
                    self._restart_writer(now)
                for done in syncs:
                    done.set()
                self._ping()
        finally:
            self.pacer.close()
            self._shutdown()

    def request_stop(self) -> None:
        """Ask the main loop to stop (signal handlers and other threads call this)."""
        self._stop.set()
        self._wake.set()

    def _shutdown(self) -> None:
        systemd.stopping("recorder stopping")
        for service in self.services:
            service.stop()
        self._apply(self.machine.shutdown())
        deadline = time.monotonic() + 30
        while self.machine.state == STOPPING and self.writer.alive and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
            for done in self._drain():
                done.set()
        if self._buttons is not None:
            self._buttons.close()
        try:
            self.camera.stop()
        except Exception:  # a failed camera must not keep the journal open
            _log.exception("camera did not stop cleanly")
        self.writer.stop()
        for thread in self._helpers:
            thread.join(10)
        self.stopped.set()
        for done in self._drain():
            done.set()
        self.journal.close()
        _log.info("recorder stopped")

    # -- inputs from other threads (enqueue only) ---------------------------------------

    def button(self, name: str, pressed: bool, mono_ns: int | None = None) -> None:
        """A button edge (gpiozero's thread, or a test/simulator driving the recorder)."""
        self._post(
            ("button", name, pressed, self.clock.monotonic_ns() if mono_ns is None else mono_ns)
        )

    def acknowledge(self, alert_seq: int, by: str) -> None:
        """Hook for the MQTT link: a supervisor acknowledged alert ``alert_seq``; the
        officer hears the ``ack`` beep and the journal records ``alert_ack``."""
        self._post(("ack", int(alert_seq), str(by)))

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until the main loop has handled every event posted before this call (a
        simulator holds its clock still meanwhile, so events take effect at their instant)."""
        if self.stopped.is_set() or threading.get_ident() == self._loop_ident:
            return True  # the main loop itself (a clock callback run inside its wait)
        done = threading.Event()
        self._post(("sync", done))
        return done.wait(timeout)

    def dock_begin(self, timeout: float = 10.0) -> str:
        """Dock thread: may a dock session start now? "" = yes (the LEDs show ``docked``
        until :meth:`dock_end`), else the reason it may not (the camera is recording)."""
        reply: dict[str, str] = {}
        done = threading.Event()
        self._post(("dock", True, reply, done))
        if not done.wait(timeout):
            return "the recorder is not answering"
        return reply.get("refused", "")

    def dock_end(self) -> None:
        """Dock thread: the session is over (or the cable was pulled)."""
        self._post(("dock", False, None, None))

    def _notify(self, kind: str, info: dict) -> None:  # the writer thread
        self._post(("writer", kind, info))

    def _post(self, event: tuple) -> None:
        self._events.put(event)
        self._wake.set()

    # -- the main loop's work ---------------------------------------------------------

    def _drain(self) -> list[threading.Event]:
        syncs = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return syncs
            now = self.clock.monotonic_ns()
            if event[0] == "sync":
                syncs.append(event[1])
            elif event[0] == "button":
                if self._stop.is_set():
                    continue  # shutting down: no new recording now
                self._apply(self.machine.on_button(event[1], event[2], event[3]))
            elif event[0] == "dock":
                self._on_dock(*event[1:])
            elif event[0] == "ack":
                self._apply(self.machine.acknowledge(event[1], event[2]))
            elif event[0] == "writer":
                kind, info = event[1], event[2]
                if kind == "stopped":
                    self._apply(self.machine.on_writer_stopped(now))
                elif kind == "error":
                    self._apply(self.machine.on_fault(info["reason"], info["detail"], now))
                    if info["reason"] == "writer_fault":
                        self._writer_died(now)
                elif kind == "segment":
                    self.stats.segments += 1
                    if self.writer.closed_ok:  # it cuts segments again: a fresh count
                        self._writer_attempts = 0
                    _log.info("segment %s signed (%d frames)", info["file"], info["frames"])

    def _on_dock(self, begin: bool, reply: dict | None, done: threading.Event | None) -> None:
        """Enter or leave docked mode (the LEDs); refuse a dock while recording."""
        refused = ""
        if begin and self._stop.is_set():
            refused = "the recorder is shutting down"
        elif begin and self.machine.state in (RECORDING, STOPPING):
            refused = (
                "the camera is recording: it keeps recording; dock it again after "
                "the recording has stopped"
            )
        if refused:
            reply["refused"] = refused
        else:
            self._docked = begin
            self._do(Action("show", (self.machine.indicator_state(),)))
        if done is not None:
            done.set()

    def _health(self, now: int) -> None:
        try:
            last = self.writer.output.last_frame_ns or self._started_ns
            age = max(0, now - last) / NS
            sample = Health(
                battery_percent=float(self.power.battery_percent()),
                temperature_c=float(self.power.temperature_c()),
                free_bytes=int(self.power.free_bytes(str(self.root))),
                microphone_ok=bool(self.microphone.healthy()),
                frame_age_s=age,
                writer_stalled_s=self.writer.stalled_s(),
                journal_ok=self._journal_backlog() and not self.writer.unsigned,
            )
        except (OSError, ValueError) as exc:
            _log.warning("sensor read failed: %s", exc)
            return
        self.writer.retry_signing()  # segments the journal refused, while there are any
        self._apply(self.machine.on_health(sample, now))
        self._watch_reserve(sample.free_bytes)

    def _watch_reserve(self, free_bytes: int) -> None:
        """Alert ``reserve_spent`` once per spell in which the journal gave its reserve back
        (the card is full, and the room kept for reporting that is being used up), so the
        supervisor knows that records may soon be refused; counted by the journal at each
        give-back, so a spell shorter than a health poll is alerted too."""
        journal = self.journal
        if journal.reserve_spends > self._reserve_alerts:
            self._reserve_alerts = journal.reserve_spends
            self._reserve_low = True
            held, size = journal.reserve.held, journal.reserve.size
            _log.warning("journal reserve spent: %d of %d bytes left", held, size)
            self._journal(
                "reserve_spent",
                {"reserve_bytes": size, "left_bytes": held, "free_bytes": max(0, free_bytes)},
            )
        elif self._reserve_low and not journal.reserve_spent:
            self._reserve_low = False
            _log.info("journal reserve whole again")

    def _writer_died(self, now: int) -> None:
        """The writer thread died of a bug (its stoppage is journaled): restart it after
        a backoff that doubles, or give up after ``writer_restarts`` attempts in a row."""
        if self._writer_given_up or self._writer_restart_at is not None:
            return
        if self._writer_attempts >= self._restarts:
            self._writer_given_up = True
            _log.error("writer failed %d times in a row; not restarting it", self._restarts)
            self._journal(
                "writer_gave_up",
                {"attempts": self._writer_attempts, "error": self.writer.last_error},
            )
            # Nothing will answer the stop the fault asked for: the writer closed what it
            # had as it died.
            self._apply(self.machine.on_writer_stopped(now))
            return
        delay = self._restart_s * 2**self._writer_attempts
        self._writer_restart_at = now + int(delay * NS)
        _log.warning("writer failed; restarting it in %.1f s", delay)

    def _restart_writer(self, now: int) -> None:
        self._writer_restart_at = None
        self._writer_attempts += 1
        self.writer.restart()
        _log.warning("writer restarted (attempt %d)", self._writer_attempts)
        self._journal(
            "writer_restarted",
            {"attempt": self._writer_attempts, "error": self.writer.last_error},
        )
        self._apply(self.machine.on_clear("writer_fault", now))

    def _ping(self) -> None:
        real = time.monotonic()
        if real - self._last_ping >= 1.0:
            self._last_ping = real
            systemd.watchdog_ping()

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._do(action)
            except (OSError, JournalError) as exc:  # storage refused: the writer reports it
                _log.error("%s failed: %s", action.kind, exc)

    def _journal(self, kind: str, body: dict) -> bool:
        """Append, or keep the record for the next health poll when the journal refuses it
        (a full card): a stoppage's alert must go out once there is room, and in order."""
        if self._unjournaled and not self._journal_backlog():
            self._unjournaled.append((kind, body))
            return False
        try:
            self.journal.append(kind, body)
        except (OSError, JournalError) as exc:
            _log.error("journal refused %s (%s); kept to append when there is room", kind, exc)
            self._unjournaled.append((kind, body))
            return False
        return True

    def _journal_backlog(self) -> bool:
        """Append the records the journal refused, oldest first; True once none is left."""
        while self._unjournaled:
            kind, body = self._unjournaled[0]
            try:
                self.journal.append(kind, body)
            except (OSError, JournalError):
                return False
            self._unjournaled.pop(0)
            _log.warning("journaled %s late (the journal refused it before)", kind)
        return True

    def _do(self, action: Action) -> None:
        kind, args = action.kind, action.args
        if kind == "journal":
            record_kind, body = args
            self._journal(record_kind, body)
            if record_kind == "marker":
                self.stats.markers += 1
            elif record_kind == "stoppage":
                reason = body["reason"]
                self.stats.stoppages[reason] = self.stats.stoppages.get(reason, 0) + 1
                _log.warning("stoppage: %s (%s)", reason, body["detail"])
            elif record_kind in ("recording_started", "recording_stopped", "resumed"):
                _log.info("%s", Event(record_kind, body))  # words, or JSON fields
        elif kind == "show":
            docked = self._docked and self.machine.state in (READY, FAULT)
            self._indicate(self.indicators.show, "docked" if docked else args[0])
            systemd.status(f"{self.machine.state}")
        elif kind == "beep":
            self.stats.beeps[args[0]] = self.stats.beeps.get(args[0], 0) + 1
            self._indicate(self.indicators.beep, args[0])
        elif kind == "start_recording":
            self.writer.begin(args[0])
        elif kind == "stop_recording":
            self.writer.end(args[0])
        elif kind == "announce":
            self._announce()
        elif kind == "photo":
            self._helper("photo", self._photo)
        elif kind == "restart_camera":
            self._helper("camera-restart", self._restart_camera)
        else:
            raise ValueError(f"unknown action {kind!r}")

    def _indicate(self, call, what: str) -> None:
        """An LED or buzzer that fails must not stop the recording: it is logged instead."""
        try:
            call(what)
        except Exception:
            _log.exception("indicators: %s failed; recording goes on", what)

    def _helper(self, name: str, target) -> None:
        """Run ``target`` in a thread, returning once it runs. What must happen at the
        instant of the event (the announcement's start) is done by the main loop before:
        a thread can start late, seconds of a fast twin's time on a loaded machine."""
        self._helpers = [t for t in self._helpers if t.is_alive()]
        running = threading.Event()

        def run() -> None:
            running.set()
            target()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._helpers.append(thread)
        thread.start()
        running.wait(1.0)

    # -- helper threads -------------------------------------------------------------------

    def _announce(self) -> None:
        """Start the Art. 6 sentence at this instant (the press); a helper thread waits
        for its end and journals that it was played (and which WAV)."""
        try:
            playback = self.speaker.start_wav(str(self.wav))
        except Exception as exc:  # a silent speaker must not stop the recording
            _log.error("announcement not played: %s", exc)
            return
        self._helper("announcement", lambda: self._announced(playback))

    def _announced(self, playback: Playback) -> None:
        try:
            playback.wait()
        except Exception as exc:
            _log.error("announcement not played to the end: %s", exc)
            return
        self.stats.announcements += 1
        self.journal.append(
            "announcement", {"text": cfg.ANNOUNCEMENT_TEXT, "sha256": self.wav_sha256}
        )

    def _photo(self) -> None:
        """Take a still while video runs, store it durably, sign it like a segment."""
        try:
            jpeg = self.camera.capture_jpeg()
        except Exception as exc:  # a camera that cannot take a still is reported, not fatal
            _log.warning("photo not taken: %s", exc)
            self.indicators.beep("fault")
            return
        self._photo_counter += 1
        day, name = segment_name(self.identity.device_id, self.clock.time_ns(), self._photo_counter)
        info = None
        try:
            writer = HashingWriter(self.root, f"media/{day}/{name}.jpg")
            try:
                writer.write(jpeg)
            finally:
                info = writer.close()  # what reached storage is signed, even if cut short
        except OSError as exc:  # storage full or failing: reported, recording goes on
            _log.error("photo not stored: %s", exc)
            self.indicators.beep("fault")
        if info is None:
            return
        self.journal.append("photo", info.body())
        self.stats.photos += 1
        self.indicators.beep("mark")

    def _restart_camera(self) -> None:
        """Try to bring a camera that stopped delivering frames back."""
        if not self._restarting.acquire(blocking=False):
            return  # the previous attempt is still going
        try:
            _log.warning("restarting the camera")
            self.camera.stop()
            self.camera.start(self.writer.output)
        except Exception as exc:  # keep retrying at camera_retry_s
            _log.error("camera restart failed: %s", exc)
        finally:
            self._restarting.release()
