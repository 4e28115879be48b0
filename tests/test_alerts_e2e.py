"""End to end: a simulated shift with a weather stoppage and a camera fault, through a real
mosquitto, to `bodycam-supervisor watch --json` running as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
def test_shift_stoppages_reach_the_supervisor_verified_and_stand_in_the_journal(
        tmp_path, broker):
    out = tmp_path / "shift"
    # Provision the camera and the unit's registry before the shift, as a unit would.
    camera = DeviceIdentity.create(out / "device-key" / "device.key", "cam-e2e")
    registry = Registry()
    registry.add(DeviceEntry(camera.device_id, camera.public_key_hex, "A1024", "unit-1"))
    registry.save(out / "registry.json")
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    flags = ["--host", broker.host, "--port", str(broker.port),
             "--registry", str(out / "registry.json"), "--state", str(tmp_path / "seen.json")]
    # The supervisor's session exists before the shift (a watch ran before): nothing the
    # camera sends can slip past while the live watch below is still subscribing.
    subprocess.run([tool("bodycam-supervisor"), "watch", "--timeout", "0.3", *flags],
                   check=True, timeout=30)
    watch = subprocess.Popen([tool("bodycam-supervisor"), "watch", "--json", "--count", "4",
                              "--timeout", "60", *flags], stdout=subprocess.PIPE, text=True)
    try:
        shift = subprocess.run(
            [tool("bodycam-sim"), "shift", "--out", str(out), "--scenario",
             str(tmp_path / "scenario.toml"), "--mqtt", f"{broker.host}:{broker.port}", "-q"],
            capture_output=True, text=True, timeout=120)
        assert shift.returncode == 0, shift.stderr
        lines, _ = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 0
    shown = [json.loads(line) for line in lines.splitlines()]
    assert [(a["kind"], a["reason"], a["genuine"]) for a in shown] == [
        ("stoppage", "weather", True), ("resumed", "weather", True),
        ("stoppage", "camera", True), ("resumed", "camera", True)]
    assert {a["device"] for a in shown} == {"cam-e2e"} and {a["officer"] for a in shown} == {
        "A1024"}
    # The very records shown are in the camera's journal, signed and chained.
    journal = {r.seq: r for r in (Record.from_bytes(line) for _, line in
                                  scan_journal(out / "device" / "journal.jsonl").lines)}
    for alert in shown:
        assert journal[alert["seq"]].hash == alert["hash"]
        assert journal[alert["seq"]].kind == alert["kind"]
    # And the camera's signed status names the journal's head.
    status = subprocess.run([tool("bodycam-supervisor"), "status", "--json", *flags],
                            capture_output=True, text=True, timeout=30)
    row = json.loads(status.stdout)
    head = max(journal)
    assert row["problem"] == "" and row["online"] is False
    assert row["head"] == {"seq": head, "hash": journal[head].hash}
