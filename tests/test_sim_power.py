"""Battery, temperature, storage, microphone and speaker twins, and scheduled faults."""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.clock import parse_utc
from simulator.audio import SimMicrophone, SimSpeaker
from simulator.camera import SimCamera
from simulator.clock import NS, SimClock
from simulator.faults import KINDS, Fault, Faults, parse_duration, parse_fault
from simulator.power import SimPower

START = parse_utc("2026-11-27T06:00:00.000000Z")


def test_battery_drains_with_simulated_time_and_can_be_set() -> None:
    clock = SimClock(START)
    power = SimPower(clock, battery_percent=90, drain_percent_per_hour=10)
    assert power.battery_percent() == pytest.approx(90)
    clock.advance(3 * 3600 * NS)
    assert power.battery_percent() == pytest.approx(60)
    assert power.minutes_left() == pytest.approx(360)
    power.set_battery(15)
    clock.advance(1800 * NS)
    assert power.battery_percent() == pytest.approx(10)
    power.set_drain(0)
    clock.advance(10 * 3600 * NS)
    assert power.battery_percent() == pytest.approx(10)
    assert power.minutes_left() is None
    power.set_drain(100)
    clock.advance(3600 * NS)
    assert power.battery_percent() == 0.0  # never below empty
    with pytest.raises(ValueError):
        power.set_battery(101)


def test_temperature_and_free_storage(tmp_path: Path) -> None:
    power = SimPower(SimClock(START), temperature_c=40, storage_reserve=1 << 20)
    assert power.temperature_c() == 40
    power.set_temperature(71.5)
    assert power.temperature_c() == 71.5
    st_ = os.statvfs(tmp_path)
    real = st_.f_bavail * st_.f_frsize - (1 << 20)
    assert abs(power.free_bytes(tmp_path) - real) < 64 << 20  # others may write meanwhile
    power.set_free_bytes(5_000_000)
    assert power.free_bytes(tmp_path) == 5_000_000
    power.set_storage_full(True)
    assert power.free_bytes(tmp_path) == 0 and power.storage_full
    power.set_storage_full(False)
    power.set_free_bytes(None)
    assert power.free_bytes(tmp_path) > 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h0m5s", 3605),
        ("2.5h", 9000),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "spec", ["camera", "camera@", "lens@2h", "camera@2x", "camera@2h+", "camera@2h+0", "@5"]
)
def test_bad_fault_specs_are_refused_in_one_line(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fault(spec)
    assert "\n" not in str(info.value)


@given(
    st.sampled_from(KINDS),
    st.integers(0, 48 * 3600),
    st.one_of(st.none(), st.integers(1, 48 * 3600)),
)
def test_fault_specs_round_trip(kind: str, start: int, duration: int | None) -> None:
    fault = Fault(kind, float(start), None if duration is None else float(duration))
    assert parse_fault(str(fault)) == fault


@given(st.text(max_size=20))
def test_fault_parser_never_crashes(text: str) -> None:
    try:
        fault = parse_fault(text)
    except ValueError:
        return
    assert fault.kind in KINDS and fault.start_s >= 0


def test_scheduled_faults_start_and_end_on_the_simulated_clock(tmp_path: Path) -> None:
    clock = SimClock(START)
    power = SimPower(clock, battery_percent=80, drain_percent_per_hour=0, temperature_c=50)
    mic = SimMicrophone()
    faults = Faults(clock, power=power, microphone=mic)
    for spec in (
        "storage_full@1h+30m",
        "battery_critical@2h",
        "overheat@3h+1h",
        "microphone@10m+5m",
    ):
        faults.schedule(parse_fault(spec))
    clock.advance(11 * 60 * NS)
    assert not mic.healthy() and faults.active == {"microphone"}
    clock.advance(3600 * NS)
    assert mic.healthy() and faults.active == {"storage_full"}
    assert power.free_bytes(tmp_path) == 0
    clock.advance(3600 * NS)
    assert power.free_bytes(tmp_path) > 0
    assert power.battery_percent() == pytest.approx(3.0)
    clock.advance(3600 * NS)
    assert power.temperature_c() == 85.0
    clock.advance(3600 * NS)
    assert power.temperature_c() == 50.0
    faults.end("battery_critical")
    assert power.battery_percent() == pytest.approx(80)
    kinds = [(kind, what) for _, kind, what in faults.log]
    assert kinds[:2] == [("microphone", "start"), ("microphone", "end")]
    assert [t for t, _, _ in faults.log] == sorted(t for t, _, _ in faults.log)
    with pytest.raises(ValueError, match="needs a simulated camera"):
        faults.start("camera")


class Counter:
    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.enough = threading.Event()

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if not audio:
            self.stamps.append(timestamp)


def test_a_scheduled_camera_fault_leaves_a_gap_in_the_video() -> None:
    clock = SimClock(START)
    camera = SimCamera(clock, fps=10)
    faults = Faults(clock, camera=camera)
    faults.schedule(parse_fault("camera@60s+30s"))
    out = Counter()
    camera.start(out)
    assert camera.wait_frames(1200)  # 120 s of video were needed, 90 s are delivered
    camera.stop()
    gaps = [b - a for a, b in zip(out.stamps, out.stamps[1:], strict=False)]
    assert max(gaps) == pytest.approx(30_000_000, abs=200_000)
    assert clock.elapsed_s() >= 150
    assert faults.active == set()


def _wav(path: Path, seconds: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))


def test_speaker_keeps_what_it_played_and_takes_its_time(tmp_path: Path) -> None:
    clock = SimClock(START)
    wav_path = tmp_path / "announcement.wav"
    _wav(wav_path, 4.5)
    speaker = SimSpeaker(tmp_path / "played", clock)
    speaker.play_wav(wav_path)
    speaker.play_wav(wav_path)
    assert clock.elapsed_s() == pytest.approx(9.0)
    assert [p[0] for p in speaker.played] == [START, START + int(4.5 * NS)]
    for _, source, copy in speaker.played:
        assert copy.read_bytes() == source.read_bytes()
    assert len(list((tmp_path / "played").iterdir())) == 2
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError):
        speaker.play_wav(tmp_path / "bad.wav")
