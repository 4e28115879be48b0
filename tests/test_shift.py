"""``bodycam-sim shift`` and ``bodycam-recorder`` as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.identity import DeviceIdentity
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.registry import DeviceEntry, Registry
from simulator.__main__ import main as sim_main
from simulator.scenario import default_scenario, load_scenario, parse_duration

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_shift_then_verify_and_ffprobe_every_segment(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    done = run("-m", "simulator", "shift", "--out", str(out), "--duration", "20m", "-q")
    assert done.returncode == 0, done.stderr
    assert "segments" in done.stdout and "stoppages:" in done.stdout
    for path in (
        "device/journal.jsonl",
        "device/identity.json",
        "device-key/device.key",
        "registry.json",
        "summary.json",
    ):
        assert (out / path).exists(), path
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segments"] >= 6 and summary["photos"] == 2 and summary["markers"] == 6
    assert set(summary["stoppages"]) == {
        "weather",
        "camera",
        "microphone",
        "storage_full",
        "overheat",
    }
    assert summary["dropped_frames"] == 0
    # The amber LED showed the stoppages: five, or four when a loaded machine stretched the
    # camera's restart into the next stoppage (the LED then stays lit through both).
    assert summary["amber_led_on"] >= 4
    assert [f[1:] for f in summary["faults"]][:2] == [["camera", "start"], ["camera", "end"]]
    verify = run(
        "-m", "evidence.verify_cli", str(out / "device"), "--registry", str(out / "registry.json")
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = [
        Record.from_bytes(line) for _, line in scan_journal(out / "device/journal.jsonl").lines
    ]
    segments = [r for r in records if r.kind == "segment"]
    assert len(segments) == summary["segments"]
    for r in segments:
        probe = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type",
                "-of",
                "json",
                str(out / "device" / r.body["file"]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        types = sorted(s["codec_type"] for s in json.loads(probe.stdout)["streams"])
        assert types == ["audio", "video"], r.body["file"]
    assert (out / "speaker").is_dir() and any((out / "speaker").iterdir())


def test_shift_rejects_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[event]]\nat = "1m"\ndo = "dance"\n')
    assert sim_main(["shift", "--out", str(tmp_path / "o"), "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bodycam-sim: error:") and "dance" in err and err.count("\n") == 1
    assert sim_main(["shift", "--out", str(tmp_path / "o"), "--duration", "forever"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert (
        sim_main(
            ["shift", "--out", str(tmp_path / "o"), "--scenario", str(tmp_path / "missing.toml")]
        )
        == 2
    )
    assert "no such scenario" in capsys.readouterr().err


def test_parse_duration() -> None:
    assert parse_duration("8h") == 28800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == 45 and parse_duration(90) == 90
    assert parse_duration("2.5m") == 150
    for bad in ("", "h", "-5", "3d", True, "nan", "inf", float("inf")):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_default_scenario_covers_every_fault_within_the_shift() -> None:
    sc = default_scenario(8 * 3600)
    assert all(0 < e.at < 8 * 3600 for e in sc.events)
    faults = {e.fault for e in sc.events if e.do == "fault"}
    assert faults == {"camera", "microphone", "storage_full", "overheat"}
    assert sum(e.do == "weather" for e in sc.events) == 2
    starts = [e.at for e in sc.events if e.do == "start"]
    stops = [e.at for e in sc.events if e.do == "stop"]
    assert len(starts) == len(stops) == 6 and all(a < b for a, b in zip(starts, stops, strict=True))


def test_scenario_file_config_overlay(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[shift]\nduration = "2h"\n[config.recording]\nsegment_max_s = 30\n'
        '[[event]]\nat = "1h"\ndo = "fault"\nfault = "camera"\n'
    )
    sc = load_scenario(path)
    assert sc.shift["duration"] == "2h" and sc.config["recording"]["segment_max_s"] == 30
    assert sc.events[0].at == 3600 and sc.events[0].fault == "camera"


def test_recorder_help_and_backend_errors(tmp_path: Path, identity: DeviceIdentity) -> None:
    done = run("-m", "firmware", "--help")
    assert done.returncode == 0 and "BODYCAM_CAMERA" in done.stdout
    key = tmp_path / "key" / "device.key"
    env = {**os.environ, "BODYCAM_CAMERA": "nope", "GPIOZERO_PIN_FACTORY": "mock"}
    done = run("-m", "firmware", "--key", str(key), "--storage", str(tmp_path / "s"), env=env)
    assert done.returncode == 2 and "BODYCAM_CAMERA" in done.stderr
    assert "Traceback" not in done.stderr
    env["BODYCAM_CAMERA"] = "pi"  # no picamera2 here: say so, never fall back to the sim
    done = run("-m", "firmware", "--key", str(key), "--storage", str(tmp_path / "s"), env=env)
    assert done.returncode == 2 and "picamera2" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    done = run("-m", "firmware", "--key", str(tmp_path / "none"), env=env)
    assert done.returncode == 2 and "no device key" in done.stderr


@pytest.mark.slow
def test_recorder_daemon_sim_backend_stops_cleanly_on_sigterm(
    tmp_path: Path, identity: DeviceIdentity
) -> None:
    import socket

    storage = tmp_path / "storage"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's end of sd_notify
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    env = {
        **os.environ,
        "BODYCAM_CAMERA": "sim",
        "GPIOZERO_PIN_FACTORY": "mock",
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
    }
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "firmware",
            "--key",
            str(tmp_path / "key" / "device.key"),
            "--storage",
            str(storage),
            "--speed",
            "4",
            "--record",
            "--segment-max",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = signed_segments(proc, 1)  # the daemon logs each signed segment at INFO
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 0, "".join(seen)[-2000:]
        messages = []
        notify.settimeout(0.5)
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
    stopping = next(i for i, m in enumerate(messages) if m.startswith("STOPPING=1"))
    assert ready < messages.index("WATCHDOG=1") < stopping
    records = [Record.from_bytes(line) for _, line in scan_journal(storage / "journal.jsonl").lines]
    kinds = [r.kind for r in records]
    assert kinds[0] == "boot" and "segment" in kinds
    assert records[-1].kind in ("recording_stopped", "announcement")
    assert {"by": "shutdown"} in [r.body for r in records if r.kind == "recording_stopped"]
    from evidence.clock import parse_utc

    for r in records:  # each closed segment is signed within a second of its end
        if r.kind == "segment":  # (end_utc includes the last frame's 40 ms duration)
            # How soon is scripts/bench-recorder's to measure; at 4x on a loaded machine a
            # second of real delay is four of simulated time.
            assert -40 * 10**6 <= parse_utc(r.utc) - parse_utc(r.body["end_utc"]) < 30 * 10**9


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("simulator.dockbay") is None,
    reason="the dock part is not in this tree",
)
def test_shift_then_dock_then_verify_the_store(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    done = run("-m", "simulator", "shift", "--out", str(out), "--duration", "10m", "--dock", "-q")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dock"]["outcome"] == "stored"
    # The store by the unit key's fingerprint; the camera's card by the registry given.
    for args in (
        [str(out / "dock"), "--trust", str(out / "trust.toml")],
        [str(out / "device"), "--registry", str(out / "registry.json")],
    ):
        verify = run("-m", "evidence.verify_cli", *args)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_paced_shift_runs_at_its_speed(tmp_path: Path) -> None:
    """--speed N: simulated time runs N times faster than real time, events included."""
    import time as _time

    out = tmp_path / "paced"
    start = _time.monotonic()
    # 40x, not more: a camera that cannot keep up with a paced clock looks hung to the
    # frame watchdog, and a loaded machine encodes 160x120 at about 1000 frames/s.
    assert sim_main(["shift", "--out", str(out), "--speed", "40", "--duration", "4m", "-q"]) == 0
    wall = _time.monotonic() - start
    assert 5.5 <= wall < 40.0  # 240 s at 40x: 6 s, plus start-up
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recordings"] >= 6 and summary["segments"] >= 6
    verify = run(
        "-m", "evidence.verify_cli", str(out / "device"), "--registry", str(out / "registry.json")
    )
    assert verify.returncode == 0, verify.stdout


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_parse_duration_round_trips(h: int, m: int, s: int) -> None:
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")
    assert parse_duration(text) == h * 3600 + m * 60 + s


@given(st.text(max_size=12))
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert 0 <= value < float("inf")


def signed_segments(proc: subprocess.Popen, count: int, timeout: float = 120) -> list[str]:
    """Wait until the daemon has logged ``count`` signed segments; the lines so far (read
    in a thread that goes on draining stderr, so a test ends even if they never come)."""
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            seen.append(line)
            if sum("segment media/" in x for x in seen) >= count:
                done.set()
        done.set()  # the daemon exited

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    signed = sum("segment media/" in x for x in seen)
    assert signed >= count, f"{signed} of {count} segments signed: {''.join(seen)[-2000:]}"
    return seen


def test_recorder_restarted_after_a_fast_run_keeps_time_going_forward(
    tmp_path: Path, identity: DeviceIdentity
) -> None:
    """A sim run faster than real time ends in the future; the next run's simulated RTC
    must go on from there, as a real RTC would, or the journal's time would go backwards."""
    storage = tmp_path / "storage"
    env = {**os.environ, "BODYCAM_CAMERA": "sim", "GPIOZERO_PIN_FACTORY": "mock"}
    for _ in range(2):
        proc = subprocess.Popen(
            [
                PY,
                "-m",
                "firmware",
                "--key",
                str(tmp_path / "key" / "device.key"),
                "--storage",
                str(storage),
                "--speed",
                "20",  # 200 outran a loaded machine: the frame watchdog took the lagging
                "--record",  # camera for a dead one, again and again, and no segment closed
                "--segment-max",
                "20",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            signed_segments(proc, 2)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)  # the reader thread drains stderr
            assert proc.returncode == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    registry = Registry()
    key = DeviceIdentity.load(tmp_path / "key" / "device.key")
    registry.add(DeviceEntry(key.device_id, key.public_key_hex))
    registry.save(tmp_path / "registry.json")
    verify = subprocess.run(
        [
            PY,
            "-m",
            "evidence.verify_cli",
            str(storage),
            "--registry",
            str(tmp_path / "registry.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_dead_main_loop_or_a_failed_event_is_an_error_of_the_shift() -> None:
    """The shift must not end as if well when the recorder's main loop died (on the
    device systemd restarts it) or a scenario event could not be played."""
    from simulator.clock import SimClock
    from simulator.scenario import Event
    from simulator.shift import ShiftDriver, main_loop

    class Dying:
        def run(self) -> None:
            raise RuntimeError("cannot join thread before it is started")

        def sync(self) -> bool:
            return True

    errors: list[str] = []
    main_loop(Dying(), errors).join(10)
    assert errors == [
        "the recorder's main loop died: RuntimeError: cannot join thread before it is started"
    ]
    clock = SimClock()
    hw = {"clock": clock, "camera": None, "power": None, "microphone": None, "speaker": None}
    hw["pin_factory"] = None
    driver = ShiftDriver(hw, {"controls": {}}, clock.monotonic_ns(), Dying(), board=object())
    driver.schedule(Event(1.0, "battery", percent=50.0), clock.monotonic_ns() + 10**9)
    clock.advance(2 * 10**9)  # the battery event finds no power twin: it fails
    assert len(driver.errors) == 1 and driver.errors[0].startswith("scenario at 0:00:01: battery:")
