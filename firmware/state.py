"""The recording state machine: events in, actions out. Pure: no threads, files or clocks.

States: ``ready``, ``recording``, ``stopping`` (the writer is closing and signing the last
segment), ``fault`` (a stoppage that halts recording is active). The service
(:mod:`firmware.recorder`) feeds it button edges stamped with the injected clock, writer
notifications, health samples and ticks, and carries out the :class:`Action` s it returns
in order. Holds are measured on the stamps, never with real-time timers, so a simulated
clock running hundreds of times faster than real time sees the same holds as a person.

Buttons (names of ``hw.pinmap``): ``record`` starts on a press (or a hold of
``start_hold_s`` if configured) and stops only on a hold of ``stop_hold_s`` that began while
recording, so a stop is never accidental; ``mark`` chooses the act's procedure while ready
(a short press: the next one; a hold: none) and marks its next key moment while recording
(a hold: "other"); ``function`` takes a
photo on a short press and toggles the officer-declared ``weather`` stoppage on a hold.
A fixed camera's working hours (:meth:`Machine.on_schedule`) start and stop recordings by
themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evidence.dockjournal import bounded
from evidence.procedures import OTHER, Procedure

NS = 1_000_000_000

READY, RECORDING, STOPPING, FAULT = "ready", "recording", "stopping", "fault"
STOPPAGE_REASONS = (
    "weather",
    "camera",
    "storage_full",
    "storage_stalled",  # the card took no write for writer_stall_s
    "writer_fault",  # the writer thread died of a bug (it is restarted)
    "battery_critical",
    "overheat",
    "microphone",
)
"""Every stoppage reason a camera journals (and alerts): the one list, used by the
recorder, the simulator's faults and the tests."""
BUTTONS = ("record", "mark", "function")


@dataclass(frozen=True)
class Action:
    """One thing for the service to do. ``kind`` is one of:

    ``journal`` (args: kind, body), ``show`` (state), ``beep`` (pattern),
    ``start_recording`` (pre_event_s), ``stop_recording`` (by), ``announce``,
    ``photo``, ``restart_camera``.
    """

    kind: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The part of the configuration the state machine decides with (seconds, percent)."""

    pre_event_s: int = 30
    start_hold_s: float = 0.0
    stop_hold_s: float = 3.0
    weather_hold_s: float = 2.0
    mark_hold_s: float = 1.5
    reminder_s: float = 120.0
    frame_watchdog_s: float = 3.0
    camera_retry_s: float = 10.0
    writer_stall_s: float = 5.0
    min_free_bytes: int = 64 << 20
    battery_low_percent: float = 15.0
    battery_warn_minutes: float = 10.0
    battery_critical_percent: float = 3.0
    battery_resume_percent: float = 8.0
    drain_percent_per_hour: float = 12.0
    overheat_c: float = 80.0
    overheat_resume_c: float = 75.0
    microphone_stops_recording: bool = False


@dataclass(frozen=True)
class Health:
    """One sample of what the power and storage sensors and the frame watchdog say."""

    battery_percent: float
    temperature_c: float
    free_bytes: int
    microphone_ok: bool
    frame_age_s: float
    writer_stalled_s: float = 0.0  # real seconds the writer has been stuck on one item
    journal_ok: bool = True  # the journal took every record the recorder gave it


@dataclass
class _Press:
    t0: int
    state_at_press: str
    fired: bool = False


@dataclass
class Machine:
    """The recorder's decisions. Call the ``on_*`` methods; each returns actions in order."""

    settings: Settings = field(default_factory=Settings)
    state: str = READY
    active: dict[str, str] = field(default_factory=dict)  # stoppage reason -> detail
    resume_after: bool = False  # recording continues once every halting stoppage clears
    stop_by: str | None = None
    # The procedures the officer chooses from (evidence/procedures.toml, in its order).
    procedures: Sequence[Procedure] = ()
    procedure: Procedure | None = None  # chosen for the current or next act
    marked: list[str] = field(default_factory=list)  # moments marked in the current act
    # A fixed camera's working hours: the window open now ("08:30-12:00") or None, and
    # whether the recording (or the one a stoppage interrupted) is the schedule's.
    window: str | None = None
    scheduled: bool = False
    _presses: dict[str, _Press] = field(default_factory=dict)
    _next_reminder: int | None = None
    _next_camera_retry: int | None = None
    _battery_warned: bool = False
    _battery_history: list[tuple[int, float]] = field(default_factory=list)

    # -- queries -------------------------------------------------------------------

    def halting(self, reason: str) -> bool:
        return reason != "microphone" or self.settings.microphone_stops_recording

    @property
    def halted(self) -> bool:
        return any(self.halting(r) for r in self.active)

    def indicator_state(self) -> str:
        if self.state == FAULT:
            return "stoppage" if set(self.active) == {"weather"} else "fault"
        if self.active and self.state in (READY, RECORDING):
            return "stoppage"  # a stoppage that does not halt (microphone): amber shows it
        return self.state

    def next_deadline(self, now: int) -> int | None:
        """The earliest instant at which :meth:`on_tick` has something to do, if any."""
        candidates = []
        for name, press in self._presses.items():
            if not press.fired:
                hold = self._hold_for(name, press)
                if hold is not None:
                    candidates.append(press.t0 + int(hold * NS))
        if self._next_reminder is not None:
            candidates.append(self._next_reminder)
        if self._next_camera_retry is not None:
            candidates.append(self._next_camera_retry)
        return min(candidates) if candidates else None

    # -- inputs --------------------------------------------------------------------

    def on_button(self, name: str, pressed: bool, now: int) -> list[Action]:
        """A button edge, stamped with the injected monotonic clock (ns)."""
        if name not in BUTTONS:
            raise ValueError(f"unknown button {name!r}")
        out: list[Action] = []
        if pressed:
            press = _Press(now, self.state)
            self._presses[name] = press
            if name == "record" and self.settings.start_hold_s <= 0:
                out += self._record_start_press(press)
            return out
        press = self._presses.pop(name, None)
        if press is None or press.fired:
            return out
        hold = self._hold_for(name, press)
        if hold is not None and now - press.t0 >= int(hold * NS):
            return self._held(name, press)
        if name == "function":
            out.append(Action("photo"))
        elif name == "mark":
            out += self._mark(other=False)
        return out

    def on_tick(self, now: int) -> list[Action]:
        """Time has reached ``now``: fire holds still pressed, reminders, camera retries."""
        out: list[Action] = []
        for name, press in list(self._presses.items()):
            hold = self._hold_for(name, press)
            if not press.fired and hold is not None and now - press.t0 >= int(hold * NS):
                out += self._held(name, press)
        if self.state == RECORDING and self._next_reminder is not None:
            if now >= self._next_reminder:
                out.append(Action("beep", ("reminder",)))
                self._next_reminder = now + int(self.settings.reminder_s * NS)
        if "camera" in self.active and self._next_camera_retry is not None:
            if now >= self._next_camera_retry:
                out.append(Action("restart_camera"))
                self._next_camera_retry = now + int(self.settings.camera_retry_s * NS)
        return out

    def on_schedule(self, window: str | None, now: int) -> list[Action]:
        """A fixed camera's working hours: ``window`` opened, or (None) the open one
        closed. A window records from its opening to its close; a stoppage inside it
        resumes when it clears, but not after the close; a recording the button started
        before the window opened goes on as the window's."""
        if window == self.window:
            return []
        self.window = window
        if window is not None:
            self.scheduled = True
            if self.state == READY:
                return self._start(now, announce=False)
            if self.state == FAULT:
                self.resume_after = True  # starts as soon as the stoppage clears
            return []
        if not self.scheduled:
            return []
        if self.state == RECORDING:
            return self._stop("schedule")
        self.scheduled = False
        self.resume_after = False  # a stoppage that outlasts the window: nothing to resume
        return []

    def on_writer_stopped(self, now: int) -> list[Action]:
        """The writer closed and signed the last segment of a recording."""
        if self.state != STOPPING:
            return []
        by = self.stop_by or "button"
        self.stop_by = None
        out = [Action("journal", ("recording_stopped", {"by": by}))]
        if by != "fault":  # the act is over: the next one is chosen afresh
            self.procedure, self.marked = None, []
            self.scheduled = False
        if self.halted:
            self.state = FAULT
            out.append(Action("show", (self.indicator_state(),)))
            return out
        self.state = READY
        out.append(Action("show", (self.indicator_state(),)))
        if self.resume_after:  # a stoppage cleared while the writer was still closing
            self.resume_after = False
            out += self._start(now, announce=False)
        return out

    def on_fault(self, reason: str, detail: str, now: int) -> list[Action]:
        """A stoppage begins (sensor threshold, writer error, declared weather)."""
        if reason not in STOPPAGE_REASONS:
            raise ValueError(f"unknown stoppage reason {reason!r}")
        detail = bounded(detail)  # 512 chars: the alert is this record, it must fit a packet
        if reason in self.active:
            return []
        self.active[reason] = detail
        out = [
            Action("journal", ("stoppage", {"reason": reason, "detail": detail})),
            Action("beep", ("fault",)),
        ]
        if reason == "camera":
            self._next_camera_retry = now + int(self.settings.camera_retry_s * NS)
        if self.halting(reason):
            if self.state == RECORDING:
                self.resume_after = True
                out += self._stop("fault")
            elif self.state == READY:
                self.state = FAULT
            elif self.state == STOPPING and self.stop_by == "fault":
                self.resume_after = True
        out.append(Action("show", (self.indicator_state(),)))
        return out

    def on_clear(self, reason: str, now: int) -> list[Action]:
        """The cause of a stoppage went away."""
        if reason not in self.active:
            return []
        del self.active[reason]
        if reason == "camera":
            self._next_camera_retry = None
        out = [Action("journal", ("resumed", {"reason": reason}))]
        if self.state == FAULT and not self.halted:
            self.state = READY
            if self.resume_after:
                self.resume_after = False
                out += self._start(now, announce=False)
        out.append(Action("show", (self.indicator_state(),)))
        return out

    def on_health(self, h: Health, now: int) -> list[Action]:
        """A sensor sample: start or clear the threshold stoppages, warn of a low battery."""
        s = self.settings
        out: list[Action] = []
        checks = (
            (
                "storage_full",
                h.free_bytes < s.min_free_bytes,
                h.free_bytes >= 2 * s.min_free_bytes and h.journal_ok,
                f"free space {h.free_bytes >> 20} MiB below {s.min_free_bytes >> 20} MiB",
            ),
            (
                "battery_critical",
                h.battery_percent <= s.battery_critical_percent,
                h.battery_percent >= s.battery_resume_percent,
                f"battery at {h.battery_percent:.0f} %",
            ),
            (
                "overheat",
                h.temperature_c >= s.overheat_c,
                h.temperature_c <= s.overheat_resume_c,
                f"temperature {h.temperature_c:.1f} C",
            ),
            (
                "storage_stalled",
                h.writer_stalled_s >= s.writer_stall_s,
                h.writer_stalled_s < s.writer_stall_s,
                f"the card made no progress for {h.writer_stalled_s:.1f} s",
            ),
            ("microphone", not h.microphone_ok, h.microphone_ok, "microphone delivers no signal"),
            (
                "camera",
                h.frame_age_s >= s.frame_watchdog_s,
                h.frame_age_s < s.frame_watchdog_s,
                f"no frame from the camera for {h.frame_age_s:.1f} s",
            ),
        )
        for reason, bad, good, detail in checks:
            if reason not in self.active and bad:
                out += self.on_fault(reason, detail, now)
            elif reason in self.active and good:
                out += self.on_clear(reason, now)
        out += self._battery(h.battery_percent, now)
        return out

    def acknowledge(self, alert_seq: int, by: str) -> list[Action]:
        """A supervisor acknowledged an alert: confirm to the officer, journal who did."""
        return [
            Action("journal", ("alert_ack", {"alert_seq": int(alert_seq), "by": str(by)})),
            Action("beep", ("ack",)),
        ]

    def shutdown(self) -> list[Action]:
        """The daemon is stopping: close the recording cleanly."""
        if self.state == RECORDING:
            return self._stop("shutdown")
        return []

    # -- internals -----------------------------------------------------------------

    def _mark(self, other: bool) -> list[Action]:
        """The mark button: while ready, a short press chooses the next procedure (after
        the last, none) and a hold clears the choice; while recording, a short press marks
        the chosen procedure's next key moment and a hold marks "other"."""
        if self.state == READY:
            return self._choose(None if other else self._following_procedure())
        if self.state != RECORDING:
            return [Action("journal", ("marker", {"note": "mark"})), Action("beep", ("mark",))]
        moment = (
            None if other or self.procedure is None else self.procedure.next_moment(self.marked)
        )
        body: dict[str, Any] = {
            "note": "mark",
            "procedure": self.procedure.id if self.procedure else None,
            "moment": moment.id if moment else OTHER,
        }
        if moment is not None:
            self.marked.append(moment.id)
            body["index"] = self.procedure.moments.index(moment) + 1  # type: ignore[union-attr]
        beep = f"moment-{body['index']}" if moment else "mark"
        return [Action("journal", ("marker", body)), Action("beep", (beep,))]

    def _following_procedure(self) -> Procedure | None:
        if not self.procedures:
            return None
        if self.procedure is None:
            return self.procedures[0]
        at = next((i for i, p in enumerate(self.procedures) if p.id == self.procedure.id), -1)
        return self.procedures[at + 1] if at + 1 < len(self.procedures) else None

    def _choose(self, procedure: Procedure | None) -> list[Action]:
        self.procedure, self.marked = procedure, []
        number = 0 if procedure is None else self.procedures.index(procedure) + 1
        body = {"procedure": procedure.id if procedure else None, "number": number}
        return [Action("journal", ("procedure", body)), Action("beep", (f"procedure-{number}",))]

    def _hold_for(self, name: str, press: _Press) -> float | None:
        s = self.settings
        if name == "record":
            if press.state_at_press == RECORDING or (
                press.state_at_press == FAULT and self.resume_after
            ):
                return s.stop_hold_s
            if press.state_at_press == READY and s.start_hold_s > 0:
                return s.start_hold_s
            return None
        if name == "function":
            return s.weather_hold_s
        if name == "mark":
            return s.mark_hold_s
        return None

    def _held(self, name: str, press: _Press) -> list[Action]:
        press.fired = True
        if name == "mark":
            return self._mark(other=True)
        if name == "function":
            if "weather" in self.active:
                return self.on_clear("weather", press.t0)
            return self.on_fault("weather", "declared by the officer", press.t0)
        # record
        if press.state_at_press == READY:  # start_hold_s > 0
            return self._start(press.t0, announce=True) if self.state == READY else []
        if self.state == RECORDING:
            return self._stop("button")
        if self.resume_after:  # officer ends a recording interrupted by a stoppage
            self.resume_after = False
            return [Action("beep", ("stop",))]
        return []

    def _record_start_press(self, press: _Press) -> list[Action]:
        press.fired = press.state_at_press != RECORDING and not (
            press.state_at_press == FAULT and self.resume_after
        )
        if self.state == READY:
            return self._start(press.t0, announce=True)
        if self.state == FAULT:
            return [Action("beep", ("fault",))]
        return []

    def _start(self, now: int, announce: bool) -> list[Action]:
        self.state = RECORDING
        self._next_reminder = now + int(self.settings.reminder_s * NS)
        if announce:  # a new act (a resume after a stoppage goes on with the same one)
            self.marked = []
        started = {
            "pre_event_s": self.settings.pre_event_s,
            "procedure": self.procedure.id if self.procedure else None,
        }
        if self.window is not None:  # inside working hours, a recording is the window's
            self.scheduled = True
            started["schedule"] = self.window
        out = [
            Action("start_recording", (self.settings.pre_event_s,)),
            Action("journal", ("recording_started", started)),
            Action("show", (self.indicator_state(),)),
            Action("beep", ("start",)),
        ]
        if announce:
            out.append(Action("announce"))
        return out

    def _stop(self, by: str) -> list[Action]:
        self.state = STOPPING
        self.stop_by = by
        self._next_reminder = None
        return [
            Action("stop_recording", (by,)),
            Action("show", (self.indicator_state(),)),
            Action("beep", ("stop",)),
        ]

    def _battery(self, percent: float, now: int) -> list[Action]:
        s = self.settings
        hist = self._battery_history
        if hist and percent > hist[-1][1] + 1.0:  # charging: start over
            hist.clear()
            if percent > s.battery_low_percent + 5:
                self._battery_warned = False
        hist.append((now, percent))
        while len(hist) > 2 and now - hist[1][0] >= 30 * 60 * NS:
            hist.pop(0)
        minutes = self.minutes_left(percent, now)
        if self._battery_warned or percent <= s.battery_critical_percent:
            return []
        if percent <= s.battery_low_percent or minutes <= s.battery_warn_minutes:
            self._battery_warned = True
            return [
                Action(
                    "journal",
                    ("battery_low", {"percent": int(percent), "minutes_left": int(minutes)}),
                ),
                Action("beep", ("fault",)),
            ]
        return []

    def minutes_left(self, percent: float, now: int) -> float:
        """Minutes until the critical level: the observed drain over up to 30 min, or the
        configured nominal drain until five minutes have been observed."""
        s = self.settings
        rate = s.drain_percent_per_hour / 60.0
        hist = self._battery_history
        if hist and now - hist[0][0] >= 5 * 60 * NS and hist[0][1] > percent:
            rate = (hist[0][1] - percent) / ((now - hist[0][0]) / NS / 60.0)
        return max(0.0, (percent - s.battery_critical_percent) / rate) if rate > 0 else 1e9
