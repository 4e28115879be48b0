"""``bodycam-recorder`` serving a dock: the real daemon (sim backend) on one end of a pty,
the dock's session on the other, as on a camera whose /dev/ttyGS0 appears in a dock."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from recorderkit import ROOT, Daemon, cable, short_wav

from dock.session import DockSession
from evidence.identity import DeviceIdentity
from evidence.journal import scan_journal
from evidence.record import Record
from simulator.dockbay import PtyEnd, ensure_dock

PY = sys.executable


def dock_now(store, dock_identity: DeviceIdentity, end: PtyEnd):
    return DockSession(store, dock_identity, "test-bay", timeout=10).run(end)


def journal(storage: Path) -> list[Record]:
    return [
        Record.from_bytes(line) for _, line in scan_journal(storage / "journal.jsonl").lines if line
    ]


def media(storage: Path) -> set[str]:
    return {
        p.relative_to(storage).as_posix() for p in (storage / "media").rglob("*") if p.is_file()
    }


def verify(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "evidence.verify_cli", str(path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Note: the sim backend's clock starts at real time on each run, so a first run at
# --speed > 1 would leave the second run's records dated before the first run's last ones.


@pytest.mark.slow
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-dock", "untrusted-dock"])
def test_recorder_daemon_serves_a_dock(
    tmp_path: Path, identity: DeviceIdentity, registry_file: Path, trusted: bool
) -> None:
    key = tmp_path / "key" / "device.key"
    storage = tmp_path / "storage"
    dock_identity, store = ensure_dock(
        tmp_path / "dock", tmp_path / "dock-key" / "dock.key", registry_file
    )
    config = tmp_path / "recorder.toml"
    # The camera learns its docks from the unit-signed registry (as provisioning installs it).
    trust = (
        f'registry = "{store.registry_path}"\nunit_keys = {sorted(store.unit_keys)}\n'
        if trusted
        else ""
    )
    config.write_text(
        f'[dock]\n{trust}poll_s = 0.2\n[announcement]\nwav = "{short_wav(tmp_path)}"\n'
    )
    try:
        # 1. A short recording, docked while it is recording: refused, recording goes on.
        end, path = cable(tmp_path)
        daemon = Daemon(
            tmp_path,
            key,
            "--config",
            str(config),
            "--dock-port",
            path,
            "--record",
            "--segment-max",
            "1",
        )  # real time: see the note
        try:
            daemon.wait_for("dock port")
            daemon.wait_for("segment media/")
            result = dock_now(store, dock_identity, end)
            assert result.outcome == "refused" and "recording" in result.reason
            daemon.wait_for("segment media/")  # still recording
            daemon.stop()
        finally:
            daemon.kill()
            end.close()
        assert "docked" not in [r.kind for r in journal(storage)]
        recorded = media(storage)
        assert recorded

        # 2. The camera stopped, put in the dock: offloaded, wiped only under trust.
        end, path = cable(tmp_path)
        daemon = Daemon(tmp_path, key, "--config", str(config), "--dock-port", path)
        try:
            daemon.wait_for("dock port")
            result = dock_now(store, dock_identity, end)
            assert result.outcome == "stored", result.reason
            daemon.wait_for("docking with")
            daemon.stop()
        finally:
            daemon.kill()
            end.close()
    finally:
        store.close()

    records = journal(storage)
    kinds = [r.kind for r in records]
    # Only a dock of the camera's registry, proving its key, sets the clock (issue 10).
    assert ("docked" in kinds and "clock_set" in kinds) == trusted
    for folder in (tmp_path / "dock", storage):  # against the unit-signed registry, named
        done = verify(folder, "--registry", str(tmp_path / "dock" / "registry.json"))
        assert done.returncode == 0, done.stdout + done.stderr
    stored = media(tmp_path / "dock" / "unit-1" / identity.device_id)
    assert stored == recorded
    if trusted:
        receipt = next(r for r in records if r.kind == "receipt")
        wiped = next(r for r in records if r.kind == "wiped")
        covered = {
            r.media[0] for r in records if r.media is not None and r.seq <= receipt.body["upto_seq"]
        }
        assert set(wiped.body["files"]) == covered == recorded
        assert media(storage) == recorded - covered
    else:
        assert "receipt" not in kinds and "wiped" not in kinds
        assert media(storage) == recorded  # an untrusted dock copies, never deletes


def test_docked_leds_and_refusal_while_recording(tmp_path: Path, identity: DeviceIdentity) -> None:
    """The main loop owns the LEDs: ``docked`` while a session runs; a dock is refused
    while recording, and a record press during a session still records."""
    from gpiozero.pins.mock import MockFactory

    from simulator.scenario import Scenario
    from simulator.shift import recorder_on, shift_config, sim_hardware

    wav = short_wav(tmp_path)
    config = shift_config(tmp_path, Scenario(config={"announcement": {"wav": str(wav)}}))
    factory = MockFactory()
    hw = sim_hardware(
        config, tmp_path, speed=1.0, device_id=identity.device_id, pin_factory=factory
    )
    recorder = recorder_on(hw, config, identity, pin_factory=factory)
    leds = hw["indicators"]
    loop = threading.Thread(target=recorder.run, daemon=True)
    recorder.start()
    loop.start()
    try:
        assert recorder.sync() and leds.state == "ready"
        assert recorder.dock_begin() == "" and leds.state == "docked"
        recorder.button("record", True)
        recorder.button("record", False)
        assert recorder.sync() and leds.state == "recording"  # evidence comes first
        recorder.dock_end()
        assert recorder.sync() and leds.state == "recording"
        refusal = recorder.dock_begin()
        assert "recording" in refusal and leds.state == "recording"
    finally:
        recorder.request_stop()
        loop.join(30)
        leds.close()
        factory.close()
    assert not loop.is_alive()
    assert "docked" not in [r.kind for r in journal(tmp_path / "device")]


def test_trusted_docks_come_from_the_unit_signed_registry(tmp_path: Path) -> None:
    from evidence.exc import ConfigError
    from evidence.registry import DockEntry
    from evidence.unitkey import UnitKey
    from firmware import config as cfg
    from simulator.unit import register, unit_key

    key = unit_key(tmp_path)
    registry = tmp_path / "registry.json"
    register(registry, key, docks=[DockEntry("dock-a", "ab" * 32), DockEntry("dock-b", "cd" * 32)])
    path = tmp_path / "r.toml"
    path.write_text(f'[dock]\nregistry = "{registry}"\nunit_keys = ["{key.fingerprint}"]\n')
    assert cfg.trusted_docks(cfg.load(path)) == {"dock-a": "ab" * 32, "dock-b": "cd" * 32}
    signed = register(registry, key)
    signed.revoke("dock-b", "2026-01-01T00:00:00.000000Z", "stolen")
    signed.save_signed(registry, key, "2026-12-01T00:00:00.000000Z")
    assert cfg.trusted_docks(cfg.load(path)) == {"dock-a": "ab" * 32}  # revoked: never again
    assert cfg.trusted_docks(cfg.load(path, {"dock.registry": ""})) == {}  # never wipe
    other = UnitKey.create(tmp_path / "other.key", "unit-x")
    path.write_text(f'[dock]\nregistry = "{registry}"\nunit_keys = ["{other.fingerprint}"]\n')
    with pytest.raises(ConfigError, match="not a trusted unit key"):
        cfg.trusted_docks(cfg.load(path))
    path.write_text(f'[dock]\nregistry = "{registry}"\n')
    with pytest.raises(ConfigError, match="no unit key is named"):
        cfg.trusted_docks(cfg.load(path))
    text = registry.read_text().replace('"public_key":"abab', '"public_key":"acab', 1)
    registry.write_text(text)  # another key for dock-a, the unit's signature unchanged
    path.write_text(f'[dock]\nregistry = "{registry}"\nunit_keys = ["{key.fingerprint}"]\n')
    with pytest.raises(ConfigError, match="does not verify"):
        cfg.trusted_docks(cfg.load(path))
    for bad, says in (
        ("unit_keys = [1]", r"r\.toml:2: dock\.unit_keys must be a list of strings"),
        ("poll_s = 0", r"r\.toml:2: dock\.poll_s must be at least 0\.05"),
    ):
        path.write_text(f"[dock]\n{bad}\n")
        with pytest.raises(ConfigError, match=says):
            cfg.load(path)
