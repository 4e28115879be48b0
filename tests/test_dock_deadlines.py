"""The 24-hour rule: pure decisions, the report, and alerts over a real mosquitto."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from dockkit import NS, START, dock_once, make_camera, make_dock
from paho.mqtt.enums import CallbackAPIVersion

from dock import deadlines
from dock.__main__ import main as dock_main
from dock.alerts import DeadlineWatcher, MqttConfig
from evidence.canonical import canonical_bytes
from evidence.clock import format_utc
from evidence.identity import verify_signature
from wire.message import sign_status

H = 3600 * NS


def row(closed_h, stored_h=None, officer="A1"):
    return {
        "device": "cam",
        "officer": officer,
        "seq": 1,
        "file": "media/x.ts",
        "closed_utc": format_utc(START + closed_h * H),
        "stored_utc": None if stored_h is None else format_utc(START + stored_h * H),
    }


def test_each_recording_is_judged_against_24_hours():
    now = START + 100 * H
    assert deadlines.judge_media(row(0, 23), now).status == "on_time"
    assert deadlines.judge_media(row(0, 24), now).status == "on_time"
    assert deadlines.judge_media(row(0, 25), now).status == "late"
    assert deadlines.judge_media(row(90), now).status == "missing"
    assert deadlines.judge_media(row(70), now).status == "overdue"


def test_pending_starts_at_the_first_undocked_status_and_alerts_at_20_and_24_hours():
    since = deadlines.next_pending_since(None, 5, 7, "T1")
    assert since == "T1"
    prev = {"seq": 7, "pending_since": since}
    assert deadlines.next_pending_since(prev, 5, 9, "T2") == "T1"  # kept, not moved later
    assert deadlines.next_pending_since(prev, 9, 9, "T3") is None  # docked since
    assert deadlines.next_pending_since({"seq": 9, "pending_since": None}, 9, 11, "T4") == "T4"
    p = deadlines.Pending("cam", format_utc(START), 7, "0" * 64, 5)
    assert deadlines.alert_level(p, START + 19 * H) is None
    assert deadlines.alert_level(p, START + 20 * H) == "warning"
    assert deadlines.alert_level(p, START + 24 * H) == "violation"


def test_report_lists_late_and_missing_per_officer():
    rows = [row(0, 1), row(0, 30), dict(row(0), officer="B2")]
    data = deadlines.report(rows, [], {}, START + 50 * H)
    a1, b2 = data["officers"]["A1"], data["officers"]["B2"]
    assert (a1["on_time"], a1["late"]) == (1, 1)
    assert b2["overdue"] == 1 and b2["problems"][0]["hours"] == 50.0


def publish_status(broker, camera, utc_ns, unit="unit-1"):
    msg = sign_status(
        camera.identity,
        utc=format_utc(utc_ns),
        online=True,
        state="recording",
        head=camera.journal.head,
        battery=80,
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(
        f"bodycam/{unit}/{camera.identity.device_id}/status", msg.to_bytes(), qos=1, retain=True
    ).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_an_undocked_camera_raises_a_warning_then_a_violation(tmp_path, broker, capsys):
    camera, registry = make_camera(tmp_path)
    camera.record(1, 1000)
    dock_identity, store = make_dock(tmp_path, registry, clock=camera.clock)
    assert dock_once(store, dock_identity, camera)[0].outcome == "stored"
    camera.clock.advance(3600 * NS)
    camera.record(1, 1000, seed=2)  # recorded again, not docked
    publish_status(broker, camera, camera.clock.time_ns())
    received = []
    got = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: (received.append((m.topic, m.payload)), got.set())
    sub.connect(broker.host, broker.port)
    sub.subscribe("bodycam/+/dock/+/alert", qos=1)
    sub.loop_start()
    watcher = DeadlineWatcher(
        store,
        dock_identity,
        MqttConfig(host=broker.host, port=broker.port, check_s=3600, insecure=True),
        clock=camera.clock,
    )
    watcher.start()
    try:
        assert watcher.heard.wait(10)
        since = store.index.query("SELECT pending_since FROM status_heads")[0]["pending_since"]
        camera.clock.advance(19 * H)
        assert watcher.check() == []
        camera.clock.advance(1 * H)
        watcher.check_now()
        assert got.wait(10)
        topic, payload = received[0]
        assert topic == f"bodycam/unit-1/dock/{dock_identity.device_id}/alert"
        alert = json.loads(payload)
        assert alert["body"]["level"] == "warning" and alert["body"]["officer"] == "A1024"
        assert alert["body"]["since_utc"] == since
        sig = bytes.fromhex(alert.pop("sig"))
        verify_signature(dock_identity.public_key_hex, canonical_bytes(alert), sig)
        assert watcher.check() == []  # sent once
        camera.clock.advance(4 * H)
        assert [a["level"] for a in watcher.check()] == ["violation"]
        # The report says the same: this device has been undocked for 24 hours.
        code = dock_main(
            [
                "--store",
                str(tmp_path / "dock"),
                "report",
                "deadlines",
                "--json",
                "--now",
                format_utc(camera.clock.time_ns()),
            ]
        )
        assert code == 1  # it lists a problem
        undocked = json.loads(capsys.readouterr().out)["officers"]["A1024"]["undocked"]
        assert [(u["device"], u["level"]) for u in undocked] == [("cam-001", "violation")]
        # Docking ends the pending period: no more alerts.
        assert dock_once(store, dock_identity, camera)[0].outcome == "stored"
        camera.clock.advance(30 * H)
        assert watcher.check() == []
        # A camera the dock does not know is refused, and the supervisor is told, once.
        stranger, _ = make_camera(tmp_path / "stranger", "cam-999")
        assert dock_once(store, dock_identity, stranger)[0].outcome == "refused"
        flags = watcher.check()
        assert [(f["kind"], f["device"]) for f in flags] == [("unregistered", "cam-999")]
        assert "not in this dock's registry" in flags[0]["text"]
        assert watcher.check() == []
    finally:
        watcher.stop()
        sub.loop_stop()
        sub.disconnect()
