"""The simulator's network docking (``bodycam-sim shift --network``, ``[shift] network``):
the recorder on the twin docks each closed segment over loopback TLS into ``DIR/dock``
while it records; the cable (``--dock``) then carries only what the network did not."""

from __future__ import annotations

import subprocess
import sys

import pytest
from netkit import records

from evidence.exc import ConfigError
from simulator.scenario import Event, Scenario, load_scenario
from simulator.shift import run_shift

pytestmark = pytest.mark.slow


def verify(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "evidence.verify_cli",
            "--trust",
            str(out / "trust.toml"),
            str(out / "dock"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_network_shift_stores_as_it_records_and_the_cable_finishes(tmp_path):
    from simulator.__main__ import _dock

    scenario = Scenario(  # one recording across the run, in 20-second segments
        shift={"device": "cam-wifi"},
        config={"recording": {"segment_max_s": 20, "pre_event_s": 0}},
        events=[Event(5.0, "start"), Event(140.0, "stop")],
    )
    # Paced (10x): each segment closes 2 real seconds after the last, and a session takes
    # a fraction of that; as fast as possible, sessions would carry several at once.
    summary = run_shift(tmp_path, scenario, duration_s=150, speed=10.0, network=True)
    net = summary["network"]
    segments = [r for r in records(tmp_path / "device" / "journal.jsonl") if r.kind == "segment"]
    assert summary["segments"] == len(segments) >= 5
    assert net["segments_stored"] + net["segments_left_for_the_cable"] == len(segments)
    assert net["segments_stored"] >= len(segments) // 2, net  # the last ones may be left
    assert net["close_to_stored_s"]["p99"] < 60, net
    assert net["failed_tries"] == 0 and net["refused_connections"] == 0
    done = verify(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = [r.kind for r in records(tmp_path / "device" / "journal.jsonl")]
    assert "receipt" in kinds and "wiped" in kinds
    assert "clock_set" not in kinds, "the dock's clock is the camera's own: never stepped"

    result = _dock(tmp_path)  # the cable, after the shift
    assert result["outcome"] == "stored", result
    assert result["media"] == net["segments_left_for_the_cable"]
    done = verify(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    store = tmp_path / "dock" / "unit-1" / "cam-wifi" / "media"
    assert len(list(store.rglob("*.ts"))) == len(segments)
    assert not list((tmp_path / "device" / "media").rglob("*.ts")), "all wiped under receipts"


def test_the_scenario_key_network_is_a_boolean(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[shift]\nnetwork = true\n")
    assert load_scenario(path).shift["network"] is True
    path.write_text('[shift]\nnetwork = "yes"\n')
    with pytest.raises(ConfigError, match="shift.network has the wrong type"):
        load_scenario(path)
    path.write_text("[shift]\nfps = true\n")  # other keys still refuse a boolean
    with pytest.raises(ConfigError, match="shift.fps has the wrong type"):
        load_scenario(path)
