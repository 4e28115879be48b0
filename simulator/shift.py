"""A whole simulated shift: the recorder on the hardware twin, driven by a scenario.

Wiring (in-process, threads): a :class:`~simulator.clock.SimClock` (as fast as possible,
or paced with ``speed``), the :class:`~simulator.camera.SimCamera` (real H.264 + AAC; its
thread drives time), :class:`~simulator.power.SimPower`, the microphone and speaker twins,
and gpiozero's ``MockFactory`` for buttons, LEDs and buzzer. The recorder's main loop runs
in a thread; scenario events are clock timers that press buttons through the GPIO twin
(:class:`simulator.board.Board`, driving the mock pins electrically, as a finger would) or
inject faults (:class:`simulator.faults.Faults`) at their simulated instant, and hold time
still until the recorder has handled them (see :class:`LockstepPacer`).

Output folder (docs/architecture.md): ``DIR/device/`` (the camera's storage), ``DIR/device-key/
device.key``, ``DIR/registry.json``, ``DIR/summary.json``; ``DIR/speaker/`` holds what the
speaker played. Each new folder is a new camera with its own id (``cam-`` and 6 hex
digits, unless the scenario names one). Running a shift again on the same folder continues
the same device (its key is reused and the recorder recovers whatever a crash left
unsigned first).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemonkit.config import load_config
from daemonkit.logs import Event as LogEvent
from evidence.clock import format_utc, parse_utc
from evidence.identity import DeviceIdentity
from evidence.journal import scan_journal
from evidence.procedures import load_procedures
from evidence.record import Record
from evidence.registry import DeviceEntry
from evidence.storage import atomic_write_bytes

from .progress import hms
from .scenario import Event, Scenario, parse_start
from .unit import register, unit_key

if TYPE_CHECKING:
    from firmware.recorder import Recorder

_log = logging.getLogger(__name__)

NS = 1_000_000_000
BUTTON_NETS = {"record": "BTN_RECORD", "mark": "BTN_MARK", "function": "BTN_FUNCTION"}


def sim_hardware(
    config: dict[str, Any],
    out: Path,
    *,
    speed: float | None,
    device_id: str = "",
    officer: str = "",
    battery_percent: float = 100.0,
    drain_percent_per_hour: float = 11.0,
    pin_factory: Any = None,
    keyframe_interval: int | None = None,
    start_utc_ns: int | None = None,
    room_gain_db: float | None = None,
    noise_db: float | None = None,
) -> dict[str, Any]:
    """The hardware twin for one recorder: what ``firmware.pi.make_backend`` is on a camera.
    The microphone hears the speaker ``room_gain_db`` dB down over a ``noise_db`` dBFS
    floor (defaults: :mod:`simulator.audio`)."""
    from gpiozero import Device

    from firmware.controls import GpioIndicators

    from .audio import NOISE_DB, ROOM_GAIN_DB, SimMicrophone, SimSpeaker
    from .camera import SimCamera
    from .clock import SimClock
    from .power import SimPower

    cam = config["camera"]
    clock = SimClock(start_utc_ns, speed=speed)
    speaker = SimSpeaker(out / "speaker", clock=clock)
    microphone = SimMicrophone(
        speaker,
        room_gain_db=ROOM_GAIN_DB if room_gain_db is None else room_gain_db,
        noise_db=NOISE_DB if noise_db is None else noise_db,
    )
    camera = SimCamera(
        clock,
        width=cam["width"],
        height=cam["height"],
        fps=cam["fps"],
        keyframe_interval=keyframe_interval or max(1, round(cam["keyframe_period_s"] * cam["fps"])),
        audio=cam["audio"],
        audio_sample_rate=cam["audio_sample_rate"],
        audio_channels=cam["audio_channels"],
        device_id=device_id,
        officer_id=officer,
        microphone=microphone,
    )
    power = SimPower(
        clock, battery_percent=battery_percent, drain_percent_per_hour=drain_percent_per_hour
    )
    factory = pin_factory if pin_factory is not None else Device.pin_factory
    if factory is None:
        Device.ensure_pin_factory()
        factory = Device.pin_factory
    return {
        "clock": clock,
        "camera": camera,
        "power": power,
        "microphone": microphone,
        "speaker": speaker,
        "indicators": SeenAndHeard(GpioIndicators(pin_factory=factory)),
        "pin_factory": factory,
    }


def new_device_id() -> str:
    """A fresh simulated camera's id, ``cam-`` and 6 random hex digits: two shift folders
    are two cameras, so a supervisor watching both never mistakes one for the other
    (the same id with another key would read "signature does not verify")."""
    return f"cam-{secrets.token_hex(3)}"


class SeenAndHeard:
    """The camera's LEDs and buzzer, logging at DEBUG (``-v``) what the officer sees and
    hears: each change of the LEDs and each beep, in words (or as JSON fields). The
    recorder calls it from its main loop; everything else goes to the gpiozero devices."""

    HOW = {True: "on", False: "off", "blink": "blinking"}

    def __init__(self, indicators: Any) -> None:
        self.indicators = indicators
        self._shown = ""

    def show(self, state: str) -> None:
        from firmware.controls import LED_STATES

        self.indicators.show(state)
        if state != self._shown and state in LED_STATES:
            self._shown = state
            leds = dict(zip(("red", "green", "amber"), LED_STATES[state], strict=True))
            _log.debug(
                "%s",
                LogEvent(
                    "indicators",
                    {"state": state, "leds": {k: self.HOW[v] for k, v in leds.items()}},
                ),
            )

    def beep(self, pattern: str) -> None:
        from firmware.controls import BEEPS

        self.indicators.beep(pattern)
        on, _off, count = BEEPS.get(pattern, (0, 0, 1))
        _log.debug("%s", LogEvent("buzzer", {"pattern": pattern, "count": count, "on_s": on}))

    def close(self) -> None:
        self.indicators.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.indicators, name)


def hardware_backend(config: dict[str, Any], options: Any) -> Any:
    """The ``sim`` entry point of ``bodycam.hardware`` (what ``bodycam-recorder --camera
    sim`` runs on): the twin of :func:`sim_hardware`, its RTC going on after the last
    record as a real RTC would, even when an earlier run was faster than real time."""
    from firmware.hardware import HardwareParts

    storage = Path(config["device"]["storage"])
    parts = sim_hardware(
        config,
        storage.parent,
        speed=options.speed,
        device_id=options.device_id,
        officer=options.officer_id,
        start_utc_ns=resume_utc_ns(storage / "journal.jsonl"),
    )
    return HardwareParts(**parts)


def prepare_device(out: Path, scenario: Scenario) -> tuple[DeviceIdentity, Path]:
    """Reuse ``DIR/device-key/device.key`` or provision a new device (the scenario's
    ``device``, else :func:`new_device_id`); register it."""
    key = out / "device-key" / "device.key"
    shift = scenario.shift
    if key.exists():
        identity = DeviceIdentity.load(key)
    else:
        identity = DeviceIdentity.create(key, shift.get("device") or new_device_id())
    registry_path = out / "registry.json"
    register(
        registry_path,
        unit_key(out, shift.get("unit", "unit-1")),
        devices=[
            DeviceEntry(
                identity.device_id,
                identity.public_key_hex,
                shift.get("officer", "A1024"),
                shift.get("unit", "unit-1"),
            )
        ],
    )
    return identity, registry_path


def resume_utc_ns(journal_path: Path, not_before: int | None = None) -> int:
    """Where the simulated RTC stands when the device starts again: now (or the
    scenario's ``start``), or just after the journal's last record if an earlier (faster
    than real time) shift ran past it."""
    return resume_point(journal_path, not_before)[0]


def resume_point(journal_path: Path, not_before: int | None = None) -> tuple[int, int | None]:
    """``(utc_ns, mono_ns)`` just after the journal's last record (UTC at least
    ``not_before``, default now), for a clock that goes on in the same boot (the dock
    phase after a shift); mono is None for an empty journal."""
    now = time.time_ns() if not_before is None else not_before
    if not journal_path.exists():
        return now, None
    for _, line in reversed(scan_journal(journal_path).lines):
        try:
            record = Record.from_bytes(line)
            return max(now, parse_utc(record.utc) + NS), record.mono_ns + NS
        except ValueError:
            continue
    return now, None


def shift_config(out: Path, scenario: Scenario) -> dict[str, Any]:
    """recorder.toml, then the simulator's choices, then the scenario's [config]."""
    from firmware import config as cfg

    shift = scenario.shift
    overrides = {
        "device.storage": str(out / "device"),
        "device.key": str(out / "device-key/device.key"),
        "camera.width": shift.get("width", 160),
        "camera.height": shift.get("height", 120),
        "camera.fps": shift.get("fps", 10),
        "camera.bitrate": 200_000,
        "controls.bounce_s": 0.0,  # real-time debounce would swallow fast simulated presses
        "recording.queue_put_timeout_s": 600.0,  # back-pressure, never a dropped frame
        "recording.flush_interval_s": 5.0,
    }
    for table, values in scenario.config.items():
        if not isinstance(values, dict):
            raise ValueError(f"scenario [config.{table}] must be a table")
        for key, value in values.items():
            overrides[f"{table}.{key}"] = value
    config = load_config(cfg.defaults(), None, overrides)
    cfg.validate(config)
    return config


class LockstepPacer:
    """The recorder's main loop in lock-step with an as-fast-as-possible SimClock.

    A free-running camera moves simulated time on while the main loop waits for the GIL;
    a frozen camera spins through minutes in a few milliseconds. So each wait of the main
    loop becomes a clock timer whose callback (in the thread advancing time) wakes the
    loop and holds time still until the loop is idle again: health polls, hold deadlines
    and reminders happen at their simulated instant."""

    def __init__(self, clock: Any, timeout: float = 5.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self._idle = threading.Event()
        self._token: object | None = None
        self._closed = False

    def wait(self, wake: threading.Event, seconds: float) -> None:
        if seconds <= 0:
            return
        token = object()
        self._token = token
        me = threading.get_ident()

        def due() -> None:  # the thread advancing simulated time
            if self._token is not token or self._closed:
                return
            self._idle.clear()
            wake.set()
            if threading.get_ident() != me:
                if not self._idle.wait(self.timeout):
                    _log.warning("recorder main loop busy for %.1f s", self.timeout)

        self.clock.at(self.clock.monotonic_ns() + int(seconds * NS), due)
        self._idle.set()
        wake.wait()
        self._idle.clear()

    def close(self) -> None:
        self._closed = True
        self._idle.set()


class ShiftDriver:
    """Plays scenario events on the simulated clock against the hardware twin: buttons
    through the GPIO twin (:class:`simulator.board.Board`), faults through
    :class:`simulator.faults.Faults`."""

    def __init__(
        self,
        hw: dict[str, Any],
        config: dict[str, Any],
        t0: int,
        recorder: Any,
        board: Any = None,
        faults: Any = None,
    ) -> None:
        from .board import Board
        from .faults import Faults

        self.hw = hw
        self.recorder = recorder
        self.cut: DiskAtCut | None = None  # a power cut the shift's loop has to carry out
        self.errors: list[str] = []  # what went wrong in events or the recorder's main loop
        self.clock = hw["clock"]
        self.config = config
        self.t0 = t0
        self.board = board if board is not None else Board(self.clock, hw["pin_factory"])
        self.faults = (
            faults
            if faults is not None
            else Faults(
                self.clock,
                camera=hw["camera"],
                power=hw["power"],
                microphone=hw["microphone"],
                speaker=hw["speaker"],
            )
        )

    def press(self, button: str, seconds: float) -> None:
        """Press now, release ``seconds`` later (both at their simulated instants)."""
        self.board.press(BUTTON_NETS[button])
        self.recorder.sync()
        self.clock.at(
            self.clock.monotonic_ns() + int(max(seconds, 0.05) * NS), lambda: self._release(button)
        )

    def choose(self, procedure: str, mark_hold_s: float) -> None:
        """Choose ``procedure`` as an officer does: the mark button pressed once per place
        in the list (from none), half a second apart; none is a hold."""
        if not procedure:
            self.press("mark", mark_hold_s + 0.5)
            return
        presses = list(load_procedures()).index(procedure) + 1
        now = self.clock.monotonic_ns()
        self.press("mark", mark_hold_s + 0.5)  # from whatever was chosen, back to none
        for i in range(1, presses + 1):
            self.clock.at(
                now + int((mark_hold_s + 1.0 + 0.5 * i) * NS), lambda: self.press("mark", 0.2)
            )

    def _release(self, button: str) -> None:
        self.board.release(BUTTON_NETS[button])
        self.recorder.sync()

    def schedule(self, event: Event, at_ns: int) -> None:
        """Play ``event`` when simulated time reaches ``at_ns``, holding time still until
        the recorder has handled it."""

        def fire() -> None:
            what = event.fault or event.button
            _log.info(
                "scenario at %s: %s%s",
                hms((at_ns - self.t0) / NS),
                event.do,
                f" {what}" * bool(what),
            )
            try:
                self.play(event)
            except Exception as exc:  # the shift goes on; run_shift reports it at the end
                _log.exception("scenario event %s failed", event.do)
                self.errors.append(f"scenario at {hms((at_ns - self.t0) / NS)}: {event.do}: {exc}")
            self.recorder.sync()

        self.clock.at(at_ns, fire)

    def play(self, event: Event) -> None:
        c = self.config["controls"]
        do = event.do
        if do == "start":
            self.press("record", 0.2)
        elif do == "stop":
            self.press("record", c["stop_hold_s"] + 0.5)
        elif do == "mark":
            self.press("mark", 0.2)
        elif do == "choose":
            self.choose(event.procedure, c["mark_hold_s"])
        elif do == "photo":
            self.press("function", 0.2)
        elif do == "weather":
            self.press("function", c["weather_hold_s"] + 0.5)
        elif do == "press":
            self.press(event.button, event.seconds)
        elif do == "battery":
            self.hw["power"].set_battery(event.percent)
        elif do == "fault":
            self.faults.start(event.fault)
        elif do == "clear":
            self.faults.end(event.fault)
        elif do == "power_cut":
            # The disk as it is at this instant, and no more frames: time stands still
            # but for sleepers. run_shift's loop then stops the dead recorder's threads
            # and boots a new one on this disk (a clock callback cannot do it: it runs in
            # one of those threads).
            self.cut = DiskAtCut(self.recorder.root, event.seconds or 60.0)
            self.hw["camera"].stop()
        else:
            raise ValueError(f"unknown scenario action {do!r}")


class DiskAtCut:
    """A device folder as a power cut leaves it: what was on disk at that instant.

    Closed media are never written again, so only their names are kept; every other file
    (the journal, its reserve, the open segment) is kept byte for byte. :meth:`restore`
    puts the folder back to that state after the dead camera's threads have been stopped
    (what they wrote after the cut is removed), so the next boot finds what a real power
    cut leaves: a journal that may end mid-line, an unsigned open segment."""

    def __init__(self, root: Path, off_s: float) -> None:
        self.root = root
        self.off_s = off_s
        journal = root / "journal.jsonl"
        closed = set()
        for _, line in scan_journal(journal).lines if journal.exists() else []:
            try:
                media = Record.from_bytes(line).media
            except ValueError:
                continue
            if media is not None:
                closed.add(root / media[0])
        self.files: dict[Path, bytes | None] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.files[path] = None if path in closed else path.read_bytes()

    def restore(self) -> None:
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            if path not in self.files:
                path.unlink()
        for path, data in self.files.items():
            if data is not None:
                atomic_write_bytes(path, data)


def recorder_on(
    hw: dict[str, Any], config: dict[str, Any], identity: DeviceIdentity, **kw: Any
) -> Recorder:
    """The recorder wired to the twin's parts (``sim_hardware``); ``kw`` goes to
    :class:`~firmware.recorder.Recorder` (pin_factory, pacer, sign, buttons...)."""
    from firmware.recorder import Recorder

    return Recorder(
        config,
        identity=identity,
        clock=hw["clock"],
        camera=hw["camera"],
        indicators=hw["indicators"],
        power=hw["power"],
        speaker=hw["speaker"],
        microphone=hw["microphone"],
        **kw,
    )


def main_loop(recorder: Any, errors: list[str]) -> threading.Thread:
    """The recorder's main loop in a thread; if it dies of an exception (on the device,
    systemd would restart the daemon), the shift says so instead of ending as if well."""

    def run() -> None:
        try:
            recorder.run()
        except Exception as exc:
            _log.exception("the recorder's main loop died")
            errors.append(f"the recorder's main loop died: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="recorder-main", daemon=True)
    thread.start()
    return thread


def power_cycle(driver: ShiftDriver, loop: threading.Thread, link: Any, make, mqtt: Any):
    """Carry out the driver's power cut: stop the dead camera's threads, put its disk back
    as it was at the cut, let the power stay off, and boot a new recorder on that disk.
    Returns the new (recorder, main loop thread, alert link)."""
    cut, driver.cut = driver.cut, None
    assert cut is not None
    _log.warning("power cut: the camera is off for %s", hms(cut.off_s))
    if link is not None:
        link.stop(offline=False)  # the broker's will says offline, as after a real cut
    driver.recorder.request_stop()
    loop.join(120)
    cut.restore()
    clock = driver.clock
    clock.sleep_until(clock.monotonic_ns() + int(cut.off_s * NS))  # nobody drives time
    recorder = make()
    driver.recorder = recorder
    recorder.start()
    if mqtt is not None:
        from firmware.mqtt import link_for_recorder

        link = link_for_recorder(recorder, mqtt)
        link.start()
    loop = main_loop(recorder, driver.errors)
    frames = driver.hw["camera"].frames
    driver.hw["camera"].wait_frames(frames + 1, timeout=30)  # it drives time again
    _log.warning("power back: the camera booted again")
    return recorder, loop, link


def run_shift(
    out: Path,
    scenario: Scenario,
    *,
    duration_s: float,
    speed: float | None,
    seed: int | None = None,
    sign: bool = True,
    mqtt: Any = None,
    docks_after: bool = False,
    progress: Callable[[float], None] | None = None,
    network: bool = False,
) -> dict[str, Any]:
    """Run one shift into ``out``; returns the summary (also written to summary.json
    by the command). ``mqtt`` (a ``firmware.mqtt.MqttSettings``) runs the camera's alert
    link to that broker during the shift (docs/alerts.md); with ``docks_after`` its end
    does not say ``shift_ended``: the dock step's link says it after the dock's receipt.
    ``progress`` is called with the simulated seconds so far, once per simulated second,
    in the calling thread. With ``network`` the camera docks each closed segment over
    loopback TLS into ``out/dock`` while it records (:class:`simulator.dockbay.NetworkDock`);
    the summary's ``network`` says what it carried and how soon.

    Ctrl-C (KeyboardInterrupt) ends the shift early the way its end does (the recorder
    closes and signs its last segment); the summary then says ``"interrupted": true`` and
    counts the simulated time that passed."""
    from gpiozero.pins.mock import MockFactory

    from .board import Board

    out.mkdir(parents=True, exist_ok=True)
    identity, registry_path = prepare_device(out, scenario)
    net = None
    if network:
        from .dockbay import NetworkDock

        net = NetworkDock(out, registry_path)
        dock = {**scenario.config.get("dock", {}), **net.camera_settings()}
        scenario = Scenario(
            scenario.shift, {**scenario.config, "dock": dock}, scenario.events, scenario.name
        )
    config = shift_config(out, scenario)
    factory = MockFactory()
    board = Board(None, factory)  # before any gpiozero device, so it sees every change
    shift = scenario.shift
    hw = sim_hardware(
        config,
        out,
        speed=speed,
        device_id=identity.device_id,
        officer=shift.get("officer", "A1024"),
        battery_percent=float(shift.get("battery_percent", 100.0)),
        drain_percent_per_hour=float(shift.get("drain_percent_per_hour", 11.0)),
        pin_factory=factory,
        start_utc_ns=resume_utc_ns(
            out / "device" / "journal.jsonl",
            parse_start(shift["start"]) if "start" in shift else None,
        ),
        room_gain_db=shift.get("room_gain_db"),
        noise_db=shift.get("noise_db"),
    )
    clock = hw["clock"]
    board.clock = clock
    pacer = LockstepPacer(clock) if speed is None else None
    recorder = recorder_on(hw, config, identity, pin_factory=factory, sign=sign, pacer=pacer)
    rng = random.Random(seed)
    wall0 = time.monotonic()
    journal_path = out / "device" / "journal.jsonl"
    lines_before = len(scan_journal(journal_path).lines) if journal_path.exists() else 0
    t0 = clock.monotonic_ns()  # time stands still until the camera starts driving it
    driver = ShiftDriver(hw, config, t0, recorder, board=board)
    for event in scenario.events:
        jitter = rng.uniform(-2.0, 2.0) if seed is not None else 0.0
        at = max(0.5, event.at + jitter)  # the buttons exist once the recorder started
        if at < duration_s:
            driver.schedule(event, t0 + int(at * NS))
    recorder.start()
    if net is not None:
        net.start(recorder, clock)
    link = None
    if mqtt is not None:
        from firmware.mqtt import link_for_recorder

        link = link_for_recorder(recorder, mqtt)
        link.start()
    loop = main_loop(recorder, driver.errors)
    interrupted = False
    try:
        hw["camera"].wait_frames(1, timeout=30)  # the camera drives time from now on
        # One simulated second at a time: while no camera drives the clock (a restart),
        # a sleeper jumps straight to its deadline and timers would fire late.
        end = t0 + int(duration_s * NS)
        while (now := clock.monotonic_ns()) < end:
            clock.sleep_until(min(end, now + NS))
            if driver.cut is not None:
                recorder, loop, link = power_cycle(
                    driver,
                    loop,
                    link,
                    lambda: recorder_on(
                        hw,
                        config,
                        identity,
                        pin_factory=factory,
                        sign=sign,
                        pacer=LockstepPacer(clock) if speed is None else None,
                    ),
                    mqtt,
                )
            if progress is not None:
                progress((clock.monotonic_ns() - t0) / NS)
    except KeyboardInterrupt:  # Ctrl-C: end the shift here, as its end would
        interrupted = True
        _log.warning("interrupted: stopping the recorder (closing and signing its last segment)")
    finally:
        recorder.request_stop()
        loop.join(120)
        if net is not None:
            net.close()
        if link is not None:  # let the last alerts reach a reachable broker, say offline
            if link.wait_connected(0):
                link.wait_idle(10)
            link.stop(offline=interrupted or not docks_after)
        hw["indicators"].close()
        board.close()
        factory.close()
    wall = time.monotonic() - wall0
    simulated = min(duration_s, (clock.monotonic_ns() - t0) / NS) if interrupted else duration_s
    summary = summarize(out, recorder, hw, lines_before, simulated, wall, scenario)
    summary["interrupted"] = interrupted
    if net is not None:
        summary["network"] = net.summary(journal_path)
    summary["planned_s"] = round(duration_s, 3)
    summary["amber_led_on"] = sum(1 for _, level in board.history("LED_AMBER") if level > 0)
    summary["faults"] = [[format_utc(t), kind, what] for t, kind, what in driver.faults.log]
    summary["errors"] = list(driver.errors)
    return summary


def summarize(
    out: Path,
    recorder: Any,
    hw: dict[str, Any],
    first_seq: int,
    duration_s: float,
    wall_s: float,
    scenario: Scenario,
) -> dict[str, Any]:
    """What a person checks after a shift, counted from the records this run wrote."""
    lines = scan_journal(recorder.storage.journal_path).lines
    records = [Record.from_bytes(line) for _, line in lines]
    run = [r for r in records if r.seq >= first_seq]
    kinds: dict[str, int] = {}
    stoppages: dict[str, int] = {}
    recorded_us = 0
    for r in run:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
        if r.kind == "stoppage":
            stoppages[r.body["reason"]] = stoppages.get(r.body["reason"], 0) + 1
        if r.kind == "segment":
            recorded_us += (parse_utc(r.body["end_utc"]) - parse_utc(r.body["start_utc"])) // 1000
    head = records[-1] if records else None
    camera = hw["camera"]
    return {
        "device": recorder.identity.device_id,
        "scenario": scenario.name,
        "simulated_s": round(duration_s, 3),
        "wall_s": round(wall_s, 3),
        "speed": round(duration_s / wall_s, 1) if wall_s > 0 else None,
        "segments": kinds.get("segment", 0),
        "recorded_s": round(recorded_us / 1e6, 1),
        "photos": kinds.get("photo", 0),
        "markers": kinds.get("marker", 0),
        "announcements": kinds.get("announcement", 0),
        "recordings": kinds.get("recording_started", 0),
        "stoppages": stoppages,
        "resumed": kinds.get("resumed", 0),
        "battery_low": kinds.get("battery_low", 0),
        "recovered": recorder.stats.recovered,
        "records": kinds,
        "frames": camera.frames,
        "audio_frames": camera.audio_frames,
        "dropped_frames": recorder.writer.output.dropped,
        "writer_cpu_s": round(recorder.writer.cpu_s, 3),
        "head": {"seq": head.seq, "hash": head.hash} if head else None,
        "device_dir": str(out / "device"),
    }


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    import json

    path = out / "summary.json"
    atomic_write_bytes(path, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    return path
