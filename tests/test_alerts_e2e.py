"""End to end: a simulated shift with a weather stoppage and a camera fault, through a real
mosquitto, to `bodycam-supervisor watch --json` running as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_alerts import persistent_broker  # noqa: F401 - a fixture, shared

from evidence.identity import DeviceIdentity
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.registry import DeviceEntry, Registry

SCENARIO = """
[shift]
duration = "150s"
officer = "A1024"
unit = "unit-1"

[[event]]
at = "5s"
do = "start"
[[event]]
at = "20s"
do = "weather"        # the officer declares a weather stoppage (hold the function button)
[[event]]
at = "45s"
do = "weather"        # and ends it
[[event]]
at = "70s"
do = "fault"
fault = "camera"      # the camera stops delivering frames
[[event]]
at = "95s"
do = "clear"
fault = "camera"
[[event]]
at = "130s"
do = "stop"
"""


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.mark.slow
def test_shift_stoppages_reach_the_supervisor_verified_and_stand_in_the_journal(tmp_path, broker):
    out, flags = provision(tmp_path, broker, SCENARIO)
    watch = subprocess.Popen(
        [tool("bodycam-supervisor"), "watch", "--json", "--count", "2", "--timeout", "60", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        shift = subprocess.run(
            [
                tool("bodycam-sim"),
                "shift",
                "--out",
                str(out),
                "--scenario",
                str(tmp_path / "scenario.toml"),
                "--mqtt",
                f"{broker.host}:{broker.port}",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shift.returncode == 0, shift.stderr
        lines, _ = watch.communicate(timeout=60)  # the first alerts, live
    finally:
        watch.kill()
    assert watch.returncode == 0
    # The rest (the shift is over, the link has said offline): a watch started now gets
    # what its persistent session queued, and nothing it has shown already.
    rest = subprocess.run(
        [tool("bodycam-supervisor"), "watch", "--json", "--timeout", "2", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    shown = [json.loads(line) for line in (lines + rest.stdout).splitlines()]
    journal = journal_of(out)
    # Exactly the journal's alerts, in order, once each, all verified: whatever else the
    # simulated world raised, the weather stoppage and the camera fault are among them.
    assert [(a["seq"], a["hash"]) for a in shown] == alerts_in(journal)
    assert all(a["genuine"] and a["verdict"] == "verified" for a in shown)
    kinds = [(a["kind"], a["reason"]) for a in shown]
    for wanted in EXPECTED:
        assert wanted in kinds, kinds
    assert {a["device"] for a in shown} == {"cam-e2e"} and {a["officer"] for a in shown} == {
        "A1024"
    }
    # And the camera's signed status names the journal's head.
    status = subprocess.run(
        [tool("bodycam-supervisor"), "status", "--json", *flags],
        capture_output=True,
        text=True,
        timeout=30,
    )
    row = json.loads(status.stdout)
    head = max(journal)
    assert row["problem"] == "" and row["online"] is False
    assert row["head"] == {"seq": head, "hash": journal[head].hash}


SHORT = """
[shift]
duration = "60s"
officer = "A1024"
unit = "unit-1"

[[event]]
at = "2s"
do = "start"
[[event]]
at = "8s"
do = "weather"
[[event]]
at = "16s"
do = "weather"
[[event]]
at = "26s"
do = "fault"
fault = "camera"
[[event]]
at = "40s"
do = "clear"
fault = "camera"
[[event]]
at = "50s"
do = "stop"
"""
# The mid-shift broker outage is shown at the journal level in tests/test_alerts.py
# (test_broker_outage_and_camera_reboot_lose_nothing_and_repeat_nothing); here a whole
# shift runs without network and the camera restarts, through the simulator.
# What must reach the supervisor; the resumptions go too when the simulated world
# produces them, and the tests compare what is shown with the journal's alerts as they are.
EXPECTED = [("stoppage", "weather"), ("stoppage", "camera")]


def provision(tmp_path: Path, broker, scenario: str) -> tuple[Path, list[str]]:
    """Provision the camera and the unit's registry before the shift, as a unit would, and
    create the supervisor's session (a watch ran before): nothing the camera sends can slip
    past while a live watch is still subscribing."""
    out = tmp_path / "shift"
    camera = DeviceIdentity.create(out / "device-key" / "device.key", "cam-e2e")
    registry = Registry()
    registry.add(DeviceEntry(camera.device_id, camera.public_key_hex, "A1024", "unit-1"))
    registry.save(out / "registry.json")
    (tmp_path / "scenario.toml").write_text(scenario)
    flags = [
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--insecure",
        "--registry",
        str(out / "registry.json"),
        "--state",
        str(tmp_path / "seen.json"),
    ]
    subprocess.run(
        [tool("bodycam-supervisor"), "watch", "--timeout", "0.3", *flags], check=True, timeout=30
    )
    return out, flags


def shift_cmd(tmp_path: Path, out: Path, broker, *extra: str) -> list[str]:
    return [
        tool("bodycam-sim"),
        "shift",
        "--out",
        str(out),
        "--scenario",
        str(tmp_path / "scenario.toml"),
        "--mqtt",
        f"{broker.host}:{broker.port}",
        "-q",
        *extra,
    ]


def journal_of(out: Path) -> dict[int, Record]:
    return {
        r.seq: r
        for r in (
            Record.from_bytes(line)
            for _, line in scan_journal(out / "device" / "journal.jsonl").lines
        )
    }


@pytest.mark.slow
@pytest.mark.usefixtures("persistent_broker")  # the same broker, persistence on
def test_alerts_of_a_shift_without_network_arrive_after_the_camera_restarts(tmp_path, broker):
    out, flags = provision(tmp_path, broker, SHORT)
    broker.stop()
    first = subprocess.run(
        shift_cmd(tmp_path, out, broker), capture_output=True, text=True, timeout=120
    )  # a whole shift offline
    assert first.returncode == 0, first.stderr
    offline = alerts_in(journal_of(out))
    assert offline, "the offline shift raised no alerts"
    broker.start()
    second = subprocess.run(
        shift_cmd(tmp_path, out, broker), capture_output=True, text=True, timeout=120
    )  # the camera starts again
    assert second.returncode == 0, second.stderr
    everything = alerts_in(journal_of(out))
    assert everything[: len(offline)] == offline and len(everything) > len(offline)
    watch = subprocess.run(
        [
            tool("bodycam-supervisor"),
            "watch",
            "--json",
            "--count",
            str(len(everything)),
            "--timeout",
            "30",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watch.returncode == 0, watch.stderr
    shown = [json.loads(line) for line in watch.stdout.splitlines()]
    # The first shift's alerts first, then the second's: in journal order, once, verified.
    assert [(a["seq"], a["hash"]) for a in shown] == everything
    assert all(a["genuine"] for a in shown)
    kinds = [(a["kind"], a["reason"]) for a in shown[: len(offline)]]
    for wanted in EXPECTED:
        assert wanted in kinds, kinds
    # Nothing is shown twice when the watch runs again.
    again = subprocess.run(
        [tool("bodycam-supervisor"), "watch", "--json", "--timeout", "1", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.stdout == ""


def alerts_in(journal: dict[int, Record]) -> list[tuple[int, str]]:
    return [
        (r.seq, r.hash)
        for _, r in sorted(journal.items())
        if r.kind in ("stoppage", "resumed", "battery_low")
    ]
