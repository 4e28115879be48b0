"""The camera's alert outbox and MQTT link, against a real mosquitto."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from alertkit import Shown
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from alerting.judge import AlertJudge, SeenState
from alerting.watch import BrokerSettings, Watcher, send_ack
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.registry import DeviceEntry, Registry
from firmware.alerts import AlertCursor, Outbox
from firmware.mqtt import AlertLink, MqttSettings
from wire.ack import Ack
from wire.message import Message

UNIT = "unit-1"


@pytest.fixture
def watch(broker, registry_file, tmp_path):
    seen = Shown()
    judge = AlertJudge(Registry.load(registry_file), SeenState(tmp_path / "seen.json"))
    watcher = Watcher(
        BrokerSettings(host=broker.host, port=broker.port, insecure=True),
        judge,
        seen,
        client_id=f"sup-{os.getpid()}-{time.monotonic_ns()}",
    )
    watcher.start()
    assert watcher.subscribed.wait(10)
    yield watcher, seen
    watcher.stop()


def settings(broker, **kw) -> MqttSettings:
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        unit=UNIT,
        reconnect_max_s=0.3,
        status_min_interval_s=0.0,
        insecure=True,
        **kw,
    )


def stoppage(journal: Journal, reason: str, detail: str = ""):
    return journal.append("stoppage", {"reason": reason, "detail": detail})


# -- the outbox, without a broker -------------------------------------------------------


def test_outbox_queues_alerts_after_the_cursor_in_journal_order(tmp_path, identity):
    journal = Journal(tmp_path / "dev" / "journal.jsonl", identity)
    journal.append("boot", {"firmware": "t", "boot_id": "0" * 32, "reason": "start"})
    a = stoppage(journal, "weather", "rain")
    journal.append("marker", {"note": "x"})
    b = journal.append("resumed", {"reason": "weather"})
    cursor = AlertCursor(tmp_path / "dev" / "alerts.cursor")
    box = Outbox(cursor)
    journal.add_listener(box.offer)
    c = journal.append("battery_low", {"percent": 15, "minutes_left": 20})
    assert box.load_journal(journal.path) == 2  # a, b from disk; c came by listener
    assert [r.seq for r in box.pending(-1, 10)] == [a.seq, b.seq, c.seq]
    box.acknowledge(b.seq)
    assert box.save_cursor()
    assert [r.seq for r in box.pending(-1, 10)] == [c.seq]
    # A reboot: a new outbox over the same journal resumes after the durable cursor.
    again = Outbox(AlertCursor(cursor.path))
    again.load_journal(journal.path)
    assert again.acked_seq == b.seq
    assert [r.seq for r in again.pending(-1, 10)] == [c.seq]


def test_unreadable_cursor_resends_rather_than_loses(tmp_path):
    path = tmp_path / "alerts.cursor"
    path.write_text("{not json")
    assert AlertCursor(path).load() == -1


@given(st.binary(max_size=200))
def test_ack_parser_rejects_garbage_with_value_error(data):
    try:
        ack = Ack.from_bytes(data)
    except ValueError:
        return
    assert Ack.from_bytes(ack.to_bytes()) == ack


@given(st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=64).filter(str.isprintable))
def test_ack_round_trips(seq, by):
    assert Ack.from_bytes(Ack(seq, by).to_bytes()) == Ack(seq, by)


@given(
    st.binary(max_size=300)
    | st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["v", "kind", "device", "utc", "body", "sig", "x"]),
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=8)
            | st.dictionaries(st.text(max_size=6), st.integers(), max_size=4),
        ),
    )
)
def test_status_parser_rejects_garbage_with_record_error(data):
    from evidence.exc import RecordError

    try:
        Message.from_bytes(data)
    except RecordError:
        pass


def test_status_message_round_trips_and_binds_every_field(identity):
    from evidence.exc import SignatureError
    from wire.message import sign_status

    m = sign_status(
        identity,
        utc="2026-11-27T05:00:00.000000Z",
        online=True,
        state="recording",
        head=(7, "ab" * 32),
        battery=55,
    )
    again = Message.from_bytes(m.to_bytes())
    again.verify(identity.public_key_hex)
    assert again == m and again.head == (7, "ab" * 32)
    for field, value in (("utc", "2026-11-27T05:00:01.000000Z"), ("device", "cam-other")):
        changed = Message.from_dict({**m.to_dict(), field: value})
        with pytest.raises(SignatureError):
            changed.verify(identity.public_key_hex)
    lied = Message.from_dict({**m.to_dict(), "body": {**m.body, "online": False}})
    with pytest.raises(SignatureError):
        lied.verify(identity.public_key_hex)


# -- through a real broker ----------------------------------------------------------------


def test_alerts_reach_the_supervisor_verified_and_status_carries_the_head(
    tmp_path, identity, broker, watch
):
    watcher, seen = watch
    journal = Journal(tmp_path / "dev" / "journal.jsonl", identity)
    with AlertLink(journal, settings(broker), status_source=lambda: ("recording", 87)) as link:
        assert link.wait_connected(10)
        stoppage(journal, "weather", "heavy rain")
        journal.append("resumed", {"reason": "weather"})
        shown = seen.wait_for(2)
        assert link.wait_idle(10)
    assert [(v.verdict, v.kind, v.body.get("reason")) for v in shown] == [
        ("verified", "stoppage", "weather"),
        ("verified", "resumed", "weather"),
    ]
    assert shown[0].officer == "A1024"
    # The retained status (offline after a clean stop) is signed and names the head.
    status = retained(broker, f"bodycam/{UNIT}/{identity.device_id}/status")
    status.verify(identity.public_key_hex)
    assert status.online is False
    assert status.head == journal.head
    assert (
        json.loads((tmp_path / "dev" / "alerts.cursor").read_text())["acked_seq"] == journal.head[0]
    )


def retained(broker, topic: str, timeout: float = 5) -> Message:
    got = threading.Event()
    box = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: (box.append(m.payload), got.set())
    client.connect(broker.host, broker.port)
    client.subscribe(topic, 1)
    client.loop_start()
    try:
        assert got.wait(timeout), f"no retained message on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return Message.from_bytes(box[-1])


@pytest.fixture
def persistent_broker(broker, tmp_path):
    """The test broker with persistence on, as in production (broker/mosquitto.conf): the
    supervisor's session and its queued alerts survive a broker restart."""
    broker.config.write_text(
        broker.config.read_text().replace(
            "persistence false",
            f"persistence true\npersistence_location {tmp_path}/\n"
            # Run as ourselves: mosquitto started as root would switch to its own user, which
            # cannot write into the 0700 test folder, and the saved sessions would be lost.
            f"user {getpass.getuser()}",
        )
    )
    broker.stop()
    broker.start()
    return broker


def test_broker_outage_and_camera_reboot_lose_nothing_and_repeat_nothing(
    tmp_path, identity, persistent_broker, registry_file
):
    broker = persistent_broker
    seen = Shown()
    judge = AlertJudge(Registry.load(registry_file), SeenState(tmp_path / "seen.json"))
    watcher = Watcher(
        BrokerSettings(host=broker.host, port=broker.port, insecure=True),
        judge,
        seen,
        client_id="sup-outage",
    )
    watcher.start()
    assert watcher.subscribed.wait(10)
    path = tmp_path / "dev" / "journal.jsonl"
    journal = Journal(path, identity)
    link = AlertLink(journal, settings(broker))
    link.start()
    try:
        assert link.wait_connected(10)
        expected = [stoppage(journal, "weather", "before the outage").seq]
        seen.wait_for(1)
        broker.stop()  # the network goes away mid-shift
        for reason in ("camera", "storage_full", "battery_critical", "overheat"):
            expected.append(stoppage(journal, reason, "during the outage").seq)
            journal.append("marker", {"note": "recording goes on"})
        expected.append(journal.append("battery_low", {"percent": 9, "minutes_left": 12}).seq)
        broker.start()
        seen.wait_for(len(expected), timeout=20)
        assert link.wait_idle(10)
        # Reboot: power is cut right after a fault is journalled, before it is sent.
        link.stop()
        journal.append("marker", {"note": "power cut"})
        journal.close()
        # As if the cut came before the cursor's last save: the camera will resend alerts
        # the supervisor has shown already, and the supervisor must not show them twice.
        AlertCursor(path.with_name("alerts.cursor")).save(expected[0])
        journal = Journal(path, identity)
        expected.append(stoppage(journal, "microphone", "just before the cut").seq)
        link = AlertLink(journal, settings(broker))
        link.start()
        assert link.wait_idle(10)
        shown = seen.wait_for(len(expected), timeout=20)
        deadline = time.monotonic() + 5
        while watcher.counts.get("duplicate", 0) < len(expected) - 2:
            assert time.monotonic() < deadline, watcher.counts
            time.sleep(0.02)
    finally:
        link.stop()
        watcher.stop()
    assert [v.seq for v in seen.verdicts] == expected, "lost, reordered or shown twice"
    assert all(v.genuine for v in shown)
    # Resent after the stale cursor (and any QoS 1 redelivery): received, not shown.
    assert watcher.counts["duplicate"] >= len(expected) - 2


def test_crashed_camera_leaves_a_signed_offline_will(tmp_path, identity, broker):
    key = tmp_path / "key" / "device.key"
    script = f"""
import sys, threading
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from firmware.mqtt import AlertLink, MqttSettings
j = Journal({str(tmp_path / "dev" / "journal.jsonl")!r}, DeviceIdentity.load({str(key)!r}))
j.append("marker", {{"note": "alive"}})
link = AlertLink(j, MqttSettings(host={broker.host!r}, port={broker.port}, unit={UNIT!r},
                 status_min_interval_s=0.0, insecure=True))
link.start()
assert link.wait_connected(10) and link.wait_idle(10)
print("up", flush=True)
threading.Event().wait()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        topic = f"bodycam/{UNIT}/{identity.device_id}/status"
        assert retained(broker, topic).online is True
        os.kill(proc.pid, signal.SIGKILL)  # a power cut, as the broker sees it
        proc.wait(10)
        deadline = time.monotonic() + 10
        while (status := retained(broker, topic)).online and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
    status.verify(identity.public_key_hex)
    assert status.online is False and status.head is not None


def test_supervisor_ack_reaches_the_camera_once(tmp_path, identity, broker):
    journal = Journal(tmp_path / "dev" / "journal.jsonl", identity)
    acks = []
    got = threading.Event()

    def on_ack(seq, by):
        acks.append((seq, by))
        journal.append("alert_ack", {"alert_seq": seq, "by": by})  # as the recorder does
        got.set()

    marker = journal.append("marker", {"note": "not an alert"})
    alert = stoppage(journal, "camera", "no frames for 5 s")
    with AlertLink(journal, settings(broker), on_ack=on_ack) as link:
        assert link.wait_idle(10)
        sup = BrokerSettings(host=broker.host, port=broker.port, insecure=True)
        send_ack(sup, UNIT, identity.device_id, marker.seq, "sgt-li")  # ignored: no alert
        send_ack(sup, UNIT, identity.device_id, alert.seq, "sgt-li")
        assert got.wait(10)
        got.clear()
        send_ack(sup, UNIT, identity.device_id, alert.seq, "sgt-li")  # a second press
        assert not got.wait(0.5)
    assert acks == [(alert.seq, "sgt-li")]
    assert [r.kind for r in journal.records()][-1] == "alert_ack"


def test_a_new_identity_cannot_be_mistaken_for_the_registered_one(tmp_path, broker, watch):
    """A camera with an unregistered key publishing on a registered device's topic."""
    watcher, seen = watch
    impostor = DeviceIdentity.create(tmp_path / "other" / "device.key", "cam-test")
    journal = Journal(tmp_path / "imp" / "journal.jsonl", impostor)
    with AlertLink(journal, settings(broker)) as link:
        stoppage(journal, "weather", "fake")
        assert link.wait_idle(10)
        shown = seen.wait_for(1)
    assert shown[0].verdict == "forged" and not shown[0].genuine
    assert Path(tmp_path / "imp" / "alerts.cursor").exists()


def test_recorder_daemon_takes_the_broker_from_its_config(tmp_path, broker):
    """bodycam-recorder with an [mqtt] table: signed status online while it runs, offline
    with the journal's head after SIGTERM. No broker address in the repository's config."""
    key = tmp_path / "key" / "device.key"
    camera = DeviceIdentity.create(key, "cam-daemon")
    password = tmp_path / "broker.passwd"
    password.write_text("not-checked-by-the-test-broker\n")
    password.chmod(0o600)
    # A stoppage journalled before a power cut, not yet sent: the daemon sends it from disk.
    with Journal(tmp_path / "storage" / "journal.jsonl", camera) as before:
        alert = stoppage(before, "overheat", "journalled before the power cut")
    config = tmp_path / "recorder.toml"
    config.write_text(
        f"[camera]\nwidth = 160\nheight = 120\nfps = 10\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'unit = "{UNIT}"\npassword_file = "{password}"\ninsecure = true\n'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware",
            "--camera",
            "sim",
            "--config",
            str(config),
            "--storage",
            str(tmp_path / "storage"),
            "--key",
            str(key),
        ],
        env=dict(os.environ, GPIOZERO_PIN_FACTORY="mock"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    topic = f"bodycam/{UNIT}/cam-daemon/status"
    try:
        status = retained(broker, topic, timeout=60)
        assert status.online is True and status.body["state"] == "ready"
        # The supervisor acknowledges it; the camera buzzes and journals who did.
        from supervisor.__main__ import main as supervisor

        registry = tmp_path / "registry.json"
        reg = Registry()
        reg.add(DeviceEntry("cam-daemon", camera.public_key_hex, "A7", UNIT))
        reg.save(registry)
        assert (
            supervisor(
                [
                    "ack",
                    "cam-daemon",
                    str(alert.seq),
                    "--by",
                    "sgt-li",
                    "--host",
                    broker.host,
                    "--port",
                    str(broker.port),
                    "--insecure",
                    "--registry",
                    str(registry),
                    "--state",
                    str(tmp_path / "seen.json"),
                    "--force",  # no watch ran here to have shown it
                ]
            )
            == 0
        )
        deadline = time.monotonic() + 30
        while not any(r.kind == "alert_ack" for r in journal_records(tmp_path)):
            assert time.monotonic() < deadline, "the camera never journalled the ack"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status = retained(broker, topic)
    status.verify(camera.public_key_hex)
    records = journal_records(tmp_path)
    assert status.online is False and status.head == (records[-1].seq, records[-1].hash)
    acks = [r.body for r in records if r.kind == "alert_ack"]
    assert acks == [{"alert_seq": alert.seq, "by": "sgt-li"}]
    assert (
        json.loads((tmp_path / "storage" / "alerts.cursor").read_text())["acked_seq"] >= alert.seq
    )


def journal_records(tmp_path):
    from evidence.journal import scan_journal
    from evidence.record import Record

    path = tmp_path / "storage" / "journal.jsonl"
    return [Record.from_bytes(line) for _, line in scan_journal(path).lines]
