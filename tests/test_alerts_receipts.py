"""End-to-end alert delivery: a camera resends each alert until a registered supervisor
console has *shown* it (a signed receipt), not merely until the broker has it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from alertkit import Shown
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from alerting.judge import AlertJudge, SeenState
from alerting.watch import BrokerSettings, Watcher
from evidence.clock import format_utc
from evidence.exc import RegistryError
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.registry import ConsoleEntry, DeviceEntry, Registry
from evidence.unitkey import UnitKey, show_fingerprint
from firmware.mqtt import AlertLink, MqttSettings
from wire.ack import Receipt, check_receipt, parse_ack_payload
from wire.topics import ack_topic

UNIT = "unit-1"
NOW = "2026-12-03T08:00:00.000000Z"


@dataclass
class Unit:
    """A unit as a head of unit sets it up: unit key, signed registry, a camera, a console."""

    dir: Path
    key: UnitKey
    registry: Path
    camera: DeviceIdentity
    console: DeviceIdentity
    console_key: Path

    @property
    def consoles(self) -> dict[str, str]:
        return {self.console.device_id: self.console.public_key_hex}

    def supervisor_config(self, broker, state: Path, name: str = "sgt-li") -> Path:
        """The config `bodycam-supervisor setup` would write, for this broker."""
        path = self.dir / f"supervisor-{name}.toml"
        path.write_text(
            f'registry = "{self.registry}"\n'
            f'unit_keys = ["{show_fingerprint(self.key.fingerprint)}"]\n'
            f'console_key = "{self.console_key}"\n'
            f'state = "{state}"\n'
            f'name = "{name}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ninsecure = true\n'
        )
        return path


def make_unit(tmp: Path, *, console_registered: bool = True) -> Unit:
    tmp.mkdir(parents=True, exist_ok=True)
    key = UnitKey.create(tmp / "unit.key", UNIT)
    camera = DeviceIdentity.create(tmp / "camera" / "device.key", "cam-0001")
    console_key = tmp / "console" / "console.key"
    console = DeviceIdentity.create(console_key, "console-sgt-li")
    registry = Registry()
    registry.add(DeviceEntry(camera.device_id, camera.public_key_hex, "A1024", UNIT))
    if console_registered:
        registry.add_console(ConsoleEntry(console.device_id, console.public_key_hex, UNIT))
    path = tmp / "registry.json"
    registry.save_signed(path, key, NOW)
    return Unit(tmp, key, path, camera, console, console_key)


def camera_settings(broker, **kw) -> MqttSettings:
    values = {
        "reconnect_max_s": 0.3,
        "status_min_interval_s": 0.0,
        "receipt_resend_s": 0.3,
        "receipt_resend_max_s": 1.0,
        **kw,
    }
    return MqttSettings(host=broker.host, port=broker.port, unit=UNIT, insecure=True, **values)


def start_watcher(broker, unit: Unit, tmp: Path, *, console: DeviceIdentity | None) -> tuple:
    shown = Shown()
    judge = AlertJudge(Registry.load(unit.registry), SeenState(tmp / "seen.json"))
    watcher = Watcher(
        BrokerSettings(host=broker.host, port=broker.port, insecure=True),
        judge,
        shown,
        client_id=f"sup-{os.getpid()}-{time.monotonic_ns()}",
        console=console,
    )
    watcher.start()
    assert watcher.subscribed.wait(10)
    return watcher, shown


def wait_until(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# -- the receipt itself ---------------------------------------------------------------


def test_receipt_round_trips_and_counts_only_for_a_registered_console(tmp_path):
    unit = make_unit(tmp_path)
    receipt = Receipt.sign(unit.console, "cam-0001", 7, "ab" * 32, NOW)
    parsed = parse_ack_payload(receipt.to_bytes())
    assert parsed == receipt
    assert check_receipt(parsed, "cam-0001", unit.consoles) is None
    # Another camera's receipt, an unregistered console, an altered seq: each refused.
    assert "names device" in check_receipt(parsed, "cam-0002", unit.consoles)
    stranger = DeviceIdentity.generate("console-x")
    other = Receipt.sign(stranger, "cam-0001", 7, "ab" * 32, NOW)
    assert "not in the trusted registry" in check_receipt(other, "cam-0001", unit.consoles)
    forged = Receipt(unit.console.device_id, "cam-0001", 8, receipt.hash, NOW, receipt.sig)
    assert "does not verify" in check_receipt(forged, "cam-0001", unit.consoles)


@given(st.binary(max_size=400))
def test_receipt_parser_refuses_garbage_with_value_error(data):
    try:
        receipt = Receipt.from_bytes(b'{"kind":"alert_receipt",' + data)
    except ValueError:
        return
    assert Receipt.from_bytes(receipt.to_bytes()) == receipt


def test_registry_consoles_are_signed_and_old_registries_still_load(tmp_path):
    unit = make_unit(tmp_path)
    loaded = Registry.load(unit.registry)
    assert loaded.console_keys() == unit.consoles
    assert loaded.fingerprint == unit.key.fingerprint
    # Altering a console key breaks the unit's signature.
    doc = json.loads(unit.registry.read_text())
    doc["consoles"]["console-sgt-li"]["public_key"] = "00" * 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    with pytest.raises(RegistryError, match="does not verify"):
        Registry.load(bad)
    # A registry with no console has no "consoles" field at all (older readers accept it).
    plain = make_unit(tmp_path / "plain", console_registered=False)
    assert "consoles" not in json.loads(plain.registry.read_text())
    assert Registry.load(plain.registry).console_keys() == {}


# -- against a real mosquitto -----------------------------------------------------------


def test_alert_is_done_only_when_a_registered_console_has_shown_it(tmp_path, broker):
    unit = make_unit(tmp_path / "unit")
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera)
    link = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
    # A console without a key shows the alert but cannot receipt it: the camera keeps it.
    keyless, shown = start_watcher(broker, unit, tmp_path / "keyless", console=None)
    link.start()
    try:
        assert link.wait_connected(10)
        alert = journal.append("stoppage", {"reason": "weather", "detail": "rain"})
        shown.wait_for(1)
        assert wait_until(lambda: link.session.resent >= 2)  # resent, with backoff
        assert link.outbox.count() == 1 and link.outbox.acked_seq < alert.seq
        assert len(shown.verdicts) == 1  # the resends were duplicates, not shown again
        keyless.stop()
        # The registered console shows it and receipts it: done, and the cursor says so.
        watcher, shown2 = start_watcher(broker, unit, tmp_path / "console", console=unit.console)
        try:
            [v] = shown2.wait_for(1)
            assert (v.seq, v.genuine) == (alert.seq, True)
            assert link.wait_idle(10)
            assert link.outbox.acked_seq == alert.seq and link.session.receipts == 1
            resent = link.session.resent
            time.sleep(1.5)  # longer than the longest resend wait
            assert link.session.resent == resent  # nothing more goes out
        finally:
            watcher.stop()
    finally:
        link.stop()
    assert json.loads((journal.path.with_name("alerts.cursor")).read_text())["acked_seq"] == (
        alert.seq
    )


def test_a_forged_or_misaddressed_receipt_changes_nothing(tmp_path, broker):
    unit = make_unit(tmp_path / "unit")
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera)
    link = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
    link.start()
    hostile = mqtt.Client(CallbackAPIVersion.VERSION2)
    hostile.connect(broker.host, broker.port)
    hostile.loop_start()
    try:
        assert link.wait_connected(10)
        alert = journal.append("stoppage", {"reason": "camera", "detail": "no frames"})
        assert wait_until(lambda: link.session.published >= 1)
        topic = ack_topic(UNIT, "cam-0001")
        stranger = DeviceIdentity.generate("console-sgt-li")  # the right name, not the key
        wrong_hash = Receipt.sign(unit.console, "cam-0001", alert.seq, "00" * 32, NOW)
        for payload in (
            Receipt.sign(stranger, "cam-0001", alert.seq, alert.hash, NOW).to_bytes(),
            wrong_hash.to_bytes(),
            b'{"kind":"alert_receipt","v":1}',
            b"\xff" * 900,
        ):
            hostile.publish(topic, payload, qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert link.outbox.count() == 1 and link.session.receipts == 0
        assert link.outbox.acked_seq < alert.seq
        # The next honest receipt is honoured.
        honest = Receipt.sign(unit.console, "cam-0001", alert.seq, alert.hash, format_utc(0))
        hostile.publish(topic, honest.to_bytes(), qos=1).wait_for_publish(5)
        assert link.wait_idle(10) and link.session.receipts == 1
    finally:
        hostile.disconnect()
        hostile.loop_stop()
        link.stop()


def test_unreceipted_alerts_survive_a_camera_reboot_and_are_shown_once(tmp_path, broker):
    unit = make_unit(tmp_path / "unit")
    journal_path = tmp_path / "dev" / "journal.jsonl"
    journal = Journal(journal_path, unit.camera)
    link = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
    link.start()
    assert link.wait_connected(10)
    alerts = [journal.append("stoppage", {"reason": "weather", "detail": str(i)}) for i in range(3)]
    assert wait_until(lambda: link.session.published >= 3)
    link.stop()  # the camera goes down: the broker has them, no console has shown them
    journal.close()
    watcher, shown = start_watcher(broker, unit, tmp_path / "console", console=unit.console)
    try:
        # The broker had no subscriber then; after the reboot the outbox on disk resends.
        journal = Journal(journal_path, unit.camera)
        again = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
        assert again.outbox.count() == 3
        again.start()
        try:
            assert again.wait_idle(15)
            time.sleep(0.3)
            assert [v.seq for v in shown.verdicts] == [a.seq for a in alerts]
            assert all(v.genuine for v in shown.verdicts)
        finally:
            again.stop()
    finally:
        watcher.stop()
