"""The recorder on the hardware twin, in-process: buttons, LEDs, faults, photos, acks."""

from __future__ import annotations

import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from evidence.clock import parse_utc
from evidence.journal import scan_journal
from evidence.media import hash_file
from evidence.record import Record
from firmware import config as cfg
from firmware.recorder import Recorder
from hw.pinmap import GPIO
from simulator.scenario import Event, Scenario
from simulator.shift import (
    NS,
    LockstepPacer,
    ShiftDriver,
    recorder_on,
    shift_config,
    sim_hardware,
)


@dataclass
class Rig:
    recorder: Recorder
    hw: dict[str, Any]
    driver: ShiftDriver
    factory: MockFactory
    t0: int
    root: Path
    loop: threading.Thread | None = None
    gate: threading.Event | None = None

    def start(self) -> None:
        """Start the recorder once the test has scheduled its events: simulated time
        stands still until the camera drives it, so every event fires at its instant."""
        if self.loop is None:
            self.recorder.start()
            self.loop = threading.Thread(target=self.recorder.run, daemon=True)
            self.loop.start()
            assert self.hw["camera"].wait_frames(1, timeout=30)  # now the camera drives time

    def at(self, when: float, do: str, **kw: Any) -> None:
        self.driver.schedule(Event(when, do, **kw), self.t0 + int(when * NS))

    def run_to(self, seconds: float) -> None:
        """Let simulated time run to ``seconds`` and hold it there (the thread that drives
        time waits at that instant) until the next ``run_to``: each step is deterministic."""
        self.start()
        clock, end = self.hw["clock"], self.t0 + int(seconds * NS)
        gate, me = threading.Event(), threading.get_ident()

        def hold() -> None:
            if threading.get_ident() != me:
                gate.wait(60)

        clock.at(end, hold)
        previous, self.gate = self.gate, gate
        if previous is not None:
            previous.set()
        while (now := clock.monotonic_ns()) < end:
            clock.sleep_until(min(end, now + NS))
        assert self.recorder.sync()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()

    def wait_record(self, kind: str, timeout: float = 10.0) -> Record:
        """The first record of ``kind``, waiting (real time) for the writer thread, which
        works at its own pace, to have it journaled."""
        arrived = threading.Event()
        self.recorder.journal.add_listener(lambda r: arrived.set() if r.kind == kind else None)
        found = [r for r in self.records() if r.kind == kind]
        if not found:
            assert arrived.wait(timeout), f"no {kind} record within {timeout} s"
            found = [r for r in self.records() if r.kind == kind]
        return found[0]

    def records(self) -> list[Record]:
        lines = scan_journal(self.root / "journal.jsonl").lines
        return [Record.from_bytes(line) for _, line in lines]

    def kinds(self) -> list[str]:
        return [r.kind for r in self.records()]

    def led(self, net: str) -> bool:
        return bool(self.factory.pin(GPIO[net]).state)


@pytest.fixture
def rig(tmp_path: Path, identity):
    overlay = {"recording": {"segment_max_s": 10}, "health": {"poll_s": 1.0}}
    config = shift_config(tmp_path, Scenario(config=overlay))
    factory = MockFactory()
    hw = sim_hardware(
        config, tmp_path, speed=None, device_id=identity.device_id, pin_factory=factory
    )
    clock = hw["clock"]
    recorder = recorder_on(hw, config, identity, pin_factory=factory, pacer=LockstepPacer(clock))
    t0 = clock.monotonic_ns()
    rig = Rig(recorder, hw, ShiftDriver(hw, config, t0, recorder), factory, t0, tmp_path / "device")
    yield rig
    rig.start()
    rig.release()
    recorder.request_stop()
    rig.loop.join(30)
    assert not rig.loop.is_alive()
    hw["indicators"].close()
    factory.close()


def segments_intact(rig: Rig) -> list[Record]:
    segs = [r for r in rig.records() if r.kind == "segment"]
    for r in segs:
        assert hash_file(rig.root / r.body["file"]) == (r.body["size"], r.body["sha256"])
    return segs


def test_storage_full_stops_cleanly_shows_amber_and_resumes(rig: Rig) -> None:
    rig.at(2, "start")
    rig.at(30, "fault", fault="storage_full")
    rig.at(50, "clear", fault="storage_full")
    rig.run_to(40)
    records = rig.records()
    stop = next(r for r in records if r.kind == "stoppage")
    assert stop.body["reason"] == "storage_full"
    stopped = rig.wait_record("recording_stopped")
    assert stopped.seq > stop.seq and stopped.body == {"by": "fault"}
    assert rig.recorder.sync()
    assert rig.led("LED_AMBER") and not rig.led("LED_RED")
    before = segments_intact(rig)
    assert len(before) >= 3 and all(not r.body["recovered"] for r in before)
    rig.run_to(60)
    kinds = rig.kinds()
    assert kinds.count("resumed") == 1 and kinds.count("recording_started") == 2
    assert rig.led("LED_RED") and not rig.led("LED_AMBER")


def test_camera_failure_is_detected_by_the_frame_watchdog(rig: Rig) -> None:
    rig.at(2, "start")
    rig.at(20, "fault", fault="camera")
    rig.run_to(30)
    records = rig.records()
    stop = next(r for r in records if r.kind == "stoppage")
    assert stop.body["reason"] == "camera"
    seconds = (stop.mono_ns - rig.t0) / NS
    # The watchdog counts 3 s from the last frame, which came up to a frame period (0.1 s at
    # 10 fps) before the fault at 20 s; the health poll adds up to a second.
    assert 22.8 <= seconds <= 26
    assert rig.wait_record("recording_stopped").body == {"by": "fault"}
    assert rig.recorder.sync()
    assert rig.led("LED_AMBER")
    last = segments_intact(rig)[-1]
    assert last.body["frames"] > 0
    rig.at(35, "clear", fault="camera")
    # The restart runs in a helper thread; while it stops and starts the twin's camera no
    # camera drives time, so on a loaded machine the clock may jump a few seconds ahead
    # of it (the device's clock is real time). Step on until it is back, within a minute.
    for seconds in range(45, 100, 5):
        rig.run_to(seconds)
        if "resumed" in rig.kinds():
            break
    kinds = rig.kinds()
    assert "resumed" in kinds and kinds.count("recording_started") == 2


def test_buttons_holds_marks_photos_and_announcement(rig: Rig) -> None:
    rig.at(2, "start")
    rig.at(5, "press", button="record", seconds=1.0)  # too short to stop
    rig.at(8, "mark")
    rig.at(9, "photo")
    rig.at(20, "stop")
    rig.run_to(30)
    stopped = rig.wait_record("recording_stopped")
    assert rig.recorder.sync()  # the LEDs change right after that record
    kinds = rig.kinds()
    assert kinds.count("recording_started") == 1 and kinds.count("recording_stopped") == 1
    assert stopped.body == {"by": "button"}
    # The stop takes effect at the instant the hold reaches 3 s: the last frame is there.
    last = [r for r in rig.records() if r.kind == "segment"][-1]
    offset = rig.hw["clock"].utc_offset_ns()
    end = (parse_utc(last.body["end_utc"]) - offset - rig.t0) / NS
    assert end == pytest.approx(23.0, abs=0.15)
    assert "marker" in kinds
    photo = next(r for r in rig.records() if r.kind == "photo")
    data = (rig.root / photo.body["file"]).read_bytes()
    assert (
        data[:2] == b"\xff\xd8"
        and hash_file(rig.root / photo.body["file"])[1] == photo.body["sha256"]
    )
    ann = next(r for r in rig.records() if r.kind == "announcement")
    assert ann.body["text"] == cfg.ANNOUNCEMENT_TEXT
    assert ann.body["sha256"] == hash_file(cfg.ASSET_WAV)[1]
    played = rig.hw["speaker"].played
    assert len(played) == 1 and played[0][2].read_bytes() == cfg.ASSET_WAV.read_bytes()
    assert rig.led("LED_GREEN") and not rig.led("LED_RED")
    assert rig.recorder.stats.beeps["start"] == 1 and rig.recorder.stats.beeps["stop"] == 1


def test_reminder_beeps_every_two_minutes(rig: Rig) -> None:
    rig.at(1, "start")
    rig.run_to(1 + 2 * 120 + 5)
    assert rig.recorder.stats.beeps.get("reminder") == 2


def test_acknowledgement_hook_journals_and_beeps(rig: Rig) -> None:
    rig.run_to(1)
    rig.recorder.acknowledge(7, "supervisor-A")
    assert rig.recorder.sync()
    ack = next(r for r in rig.records() if r.kind == "alert_ack")
    assert ack.body == {"alert_seq": 7, "by": "supervisor-A"}
    assert rig.recorder.stats.beeps["ack"] == 1


def test_battery_low_leaves_at_least_five_minutes_of_recording(rig: Rig) -> None:
    power = rig.hw["power"]
    power.set_battery(20)
    power.set_drain(60)  # percent per hour: 15 % in 5 min, 3 % in 17 min
    rig.at(1, "start")
    rig.run_to(19 * 60)
    records = rig.records()
    low = next(r for r in records if r.kind == "battery_low")
    crit = next(r for r in records if r.kind == "stoppage")
    assert crit.body["reason"] == "battery_critical"
    assert (crit.mono_ns - low.mono_ns) / NS >= 5 * 60
    assert low.body["minutes_left"] >= 5
    between = [r for r in records if low.seq < r.seq < crit.seq and r.kind == "segment"]
    assert len(between) >= 25  # recording went on after the warning


def test_journal_listeners_see_stoppages(rig: Rig) -> None:
    """The alert outbox follows the journal through Journal.add_listener."""
    seen: list[str] = []
    rig.recorder.open()
    rig.recorder.journal.add_listener(lambda r: seen.append(r.kind))
    rig.at(1, "weather")
    rig.run_to(10)
    assert "stoppage" in seen
    assert rig.factory.pin(GPIO["LED_AMBER"]).function == "output"


def test_announcement_asset_is_16k_mono() -> None:
    with wave.open(str(cfg.ASSET_WAV)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() / w.getframerate() > 5


def test_a_photo_cut_short_by_storage_is_signed_as_stored_and_recording_goes_on(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage that fills up in the middle of a photo (injected at the file write): what
    reached storage is signed, the officer hears the fault, recording is not disturbed."""
    import errno

    from evidence.media import HashingWriter

    class FillingWriter(HashingWriter):
        def write(self, data: bytes | memoryview) -> int:
            super().write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("firmware.recorder.HashingWriter", FillingWriter)
    indicators, patterns = rig.hw["indicators"], []
    buzz = indicators.beep
    monkeypatch.setattr(indicators, "beep", lambda p: (patterns.append(p), buzz(p)))
    rig.at(2, "start")
    rig.at(5, "photo")
    rig.run_to(12)
    photo = rig.wait_record("photo")
    assert photo.body["size"] == 100
    assert hash_file(rig.root / photo.body["file"]) == (100, photo.body["sha256"])
    assert patterns.count("fault") == 1
    assert rig.led("LED_RED")  # still recording


def test_an_indicator_that_raises_does_not_end_the_recording(rig: Rig, caplog) -> None:
    """gpiozero once raised in the main loop from an LED call (a race with the beeper
    thread), and the recording ended with it. An indicator failure is logged instead."""

    def broken(_what: str) -> None:
        raise RuntimeError("cannot join thread before it is started")

    rig.recorder.indicators.show = broken
    rig.recorder.indicators.beep = broken
    rig.at(2, "start")
    rig.at(20, "stop")
    rig.run_to(30)
    assert rig.wait_record("recording_stopped").body == {"by": "button"}
    assert rig.loop.is_alive() and len(segments_intact(rig)) >= 2
    assert "recording goes on" in caplog.text
