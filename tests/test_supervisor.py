"""The supervisor console: verification verdicts, the lines it prints, and its commands."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from alerting.judge import AlertJudge, SeenState
from evidence.canonical import canonical_bytes
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.record import sign_record
from evidence.registry import DeviceEntry, DockEntry, Registry
from evidence.unitkey import UnitKey
from firmware.mqtt import AlertLink, MqttSettings
from supervisor.__main__ import main
from supervisor.console import format_json, format_line
from wire.message import sign_status

UNIT = "unit-1"
TOPIC = f"bodycam/{UNIT}/cam-test/alert"


@pytest.fixture
def journal(tmp_path, identity):
    j = Journal(tmp_path / "dev" / "journal.jsonl", identity)
    yield j
    j.close()


@pytest.fixture
def judge(registry_file, tmp_path):
    return AlertJudge(Registry.load(registry_file), SeenState(tmp_path / "seen.json"))


def test_genuine_alert_is_verified_and_shown_once(judge, journal):
    rec = journal.append("stoppage", {"reason": "weather", "detail": "rain on the lens"})
    first = judge.alert(TOPIC, rec.to_bytes())
    assert first.genuine and first.officer == "A1024" and first.body["reason"] == "weather"
    again = judge.alert(TOPIC, rec.to_bytes())  # QoS 1 redelivery
    assert again.verdict == "duplicate" and not again.shown


def test_forgeries_are_flagged_never_genuine(judge, journal, tmp_path):
    rec = journal.append("stoppage", {"reason": "camera", "detail": "no frames"})
    # Wrong key: same device id, a key the registry does not know.
    other = DeviceIdentity.generate("cam-test")
    wrong_key = sign_record(
        other,
        seq=rec.seq + 1,
        prev=rec.hash,
        utc=rec.utc,
        mono_ns=rec.mono_ns,
        kind="stoppage",
        body=rec.body,
    )
    v = judge.alert(TOPIC, wrong_key.to_bytes())
    assert v.verdict == "forged" and "signature" in v.problem
    # Altered payload: the reason changed after signing.
    altered = rec.to_dict()
    altered["body"] = {"reason": "weather", "detail": "no frames"}
    v = judge.alert(TOPIC, canonical_bytes(altered))
    assert v.verdict == "forged" and not v.genuine
    # Another timestamp on a real record: the signature no longer covers it.
    restamped = {**rec.to_dict(), "utc": "2030-01-01T00:00:00.000000Z"}
    assert judge.alert(TOPIC, canonical_bytes(restamped)).verdict == "forged"
    # Right signature, wrong topic: one device cannot speak for another.
    assert judge.alert("bodycam/unit-1/cam-other/alert", rec.to_bytes()).verdict == "forged"
    assert judge.alert("bodycam/unit-9/cam-test/alert", rec.to_bytes()).verdict == "forged"
    # Garbage and unregistered devices.
    assert judge.alert(TOPIC, b"{not json").verdict == "invalid"
    stranger = sign_record(
        DeviceIdentity.generate("cam-x"),
        seq=0,
        prev="0" * 64,
        utc=rec.utc,
        mono_ns=1,
        kind="stoppage",
        body=rec.body,
    )
    assert (
        judge.alert("bodycam/unit-1/cam-x/alert", stranger.to_bytes()).verdict == "unknown-device"
    )
    # None of this moved the judge: the genuine alert is still new.
    assert judge.alert(TOPIC, rec.to_bytes()).genuine


def test_replayed_old_alert_is_flagged(judge, journal):
    old = journal.append("stoppage", {"reason": "overheat", "detail": "81 C"})
    judge.alert(TOPIC, old.to_bytes())
    new = journal.append("resumed", {"reason": "overheat"})
    assert judge.alert(TOPIC, new.to_bytes()).genuine
    # The old stoppage replayed after the resumption: genuine bytes, but not genuine news.
    # Across a restart of the watch too (the seen-state is on disk).
    judge.state.save()
    later = AlertJudge(judge.registry, SeenState(judge.state.path))
    assert later.alert(TOPIC, new.to_bytes()).verdict == "duplicate"
    replay = later.alert(TOPIC, old.to_bytes())
    # It is within the remembered window, so it is a duplicate of what was shown...
    assert replay.verdict == "duplicate"
    # ...while a record of the journal that was never an alert before is out of order.
    older = journal.records()[0]
    other = sign_record(
        journal.identity,
        seq=older.seq,
        prev=older.prev,
        utc=older.utc,
        mono_ns=older.mono_ns,
        kind="stoppage",
        body={"reason": "weather", "detail": "re-signed"},
    )
    v = later.alert(TOPIC, other.to_bytes())
    assert v.verdict == "replay" and "already shown" in v.problem


def test_replay_of_an_alert_older_than_the_window(judge, journal):
    first = journal.append("stoppage", {"reason": "microphone", "detail": "silent"})
    for _ in range(3):
        journal.append("marker", {"note": "x"})
    newer = journal.append("battery_low", {"percent": 10, "minutes_left": 15})
    judge.alert(TOPIC, newer.to_bytes())
    v = judge.alert(TOPIC, first.to_bytes())  # never shown, and older than what was
    assert v.verdict == "replay" and "not newer" in v.problem


def test_lines_say_who_what_when_and_flag_forgeries(judge, journal):
    rec = journal.append("stoppage", {"reason": "weather", "detail": "heavy rain"})
    v = judge.alert(TOPIC, rec.to_bytes())
    now = time.time_ns() + 65 * 10**9
    line = format_line(v, now)
    assert "cam-test" in line and "A1024" in line and "STOPPAGE weather: heavy rain" in line
    assert "1m05s ago" in line and "verified" in line and not line.startswith("!!")
    bad = {**rec.to_dict(), "body": {"reason": "weather", "detail": "light rain"}}
    forged = judge.alert(TOPIC, canonical_bytes(bad))
    assert format_line(forged, now).startswith("!! ") and "NOT GENUINE" in format_line(forged, now)
    data = json.loads(format_json(v, now))
    assert data["genuine"] is True and data["reason"] == "weather" and data["seq"] == rec.seq


def test_watch_status_and_ack_commands_against_a_real_broker(
    tmp_path, identity, registry_file, broker, journal, capsys
):
    flags = [
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--insecure",
        "--registry",
        str(registry_file),
        "--state",
        str(tmp_path / "seen.json"),
    ]
    acks = []
    acked = threading.Event()
    link = AlertLink(
        journal,
        MqttSettings(
            host=broker.host,
            port=broker.port,
            unit=UNIT,
            status_min_interval_s=0.0,
            insecure=True,
        ),
        on_ack=lambda seq, by: (acks.append((seq, by)), acked.set()),
        status_source=lambda: ("recording", 64),
    )
    # A first watch makes the supervisor's persistent session; what is published while no
    # watch runs is delivered to the next one.
    assert main(["watch", "--timeout", "0.3", *flags]) == 0
    link.start()
    try:
        assert link.wait_connected(10)
        stop = journal.append("stoppage", {"reason": "storage_full", "detail": "0 MB free"})
        assert link.wait_idle(10)
        # A forged alert from someone holding the topic but not the key.
        forged = {
            **stop.to_dict(),
            "seq": stop.seq + 1,
            "body": {"reason": "weather", "detail": "fake"},
        }
        pub = mqtt.Client(CallbackAPIVersion.VERSION2)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish(TOPIC, canonical_bytes(forged), qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        capsys.readouterr()
        assert main(["watch", "--json", "--count", "2", "--timeout", "10", *flags]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [(x["seq"], x["genuine"], x["verdict"]) for x in lines] == [
            (stop.seq, True, "verified"),
            (stop.seq + 1, False, "forged"),
        ]
        assert lines[0]["officer"] == "A1024" and lines[0]["reason"] == "storage_full"
        # A restarted watch does not show them again.
        assert main(["watch", "--json", "--timeout", "0.5", *flags]) == 0
        assert capsys.readouterr().out == ""

        assert main(["status", "--json", *flags]) == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert rows == [
            {
                **rows[0],
                "device": "cam-test",
                "online": True,
                "state": "recording",
                "battery": 64,
                "head": {"seq": journal.head[0], "hash": journal.head[1]},
                "problem": "",
            }
        ]
        assert main(["status", *flags]) == 0
        table = capsys.readouterr().out
        assert "cam-test" in table and "online" in table and "verified" in table

        assert main(["ack", "cam-test", str(stop.seq), "--by", "sgt-li", *flags]) == 0
        assert acked.wait(10)
        assert acks == [(stop.seq, "sgt-li")]
    finally:
        link.stop()


def test_user_mistakes_are_one_line_errors(tmp_path, registry_file, capsys):
    assert main(["watch", "--registry", str(tmp_path / "none.json")]) == 2
    assert main(["ack", "cam-nope", "3", "--registry", str(registry_file)]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'red'\n")
    assert main(["status", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("bodycam-supervisor: error: ") for e in err)
    assert "Traceback" not in "".join(err)


def test_status_message_checks(judge, identity):
    good = sign_status(
        identity,
        utc="2026-11-27T05:00:00.000000Z",
        online=True,
        state="ready",
        head=None,
        battery=90,
    )
    msg, problem = judge.status("bodycam/unit-1/cam-test/status", good.to_bytes())
    assert problem == "" and msg.online
    other = sign_status(
        DeviceIdentity.generate("cam-test"),
        utc=good.utc,
        online=False,
        state="ready",
        head=None,
        battery=90,
    )
    assert "signature" in judge.status("bodycam/unit-1/cam-test/status", other.to_bytes())[1]


def test_a_reprovisioned_device_starts_afresh(judge, journal, tmp_path):
    for _ in range(3):
        journal.append("marker", {"note": "x"})
    rec = journal.append("stoppage", {"reason": "weather", "detail": "rain"})
    assert judge.alert(TOPIC, rec.to_bytes()).genuine
    new = DeviceIdentity.create(tmp_path / "new" / "device.key", "cam-test")
    judge.registry.add(DeviceEntry("cam-test", new.public_key_hex, "A1024", "unit-1"), replace=True)
    fresh = Journal(tmp_path / "new" / "journal.jsonl", new)
    first = fresh.append("stoppage", {"reason": "camera", "detail": "new camera"})
    assert judge.alert(TOPIC, first.to_bytes()).genuine  # seq 0, but a new journal
    assert judge.alert(TOPIC, rec.to_bytes()).verdict == "forged"  # the old key is gone


@settings(max_examples=200, deadline=None)
@given(
    topic=st.sampled_from(
        [
            TOPIC,
            "bodycam/unit-1/cam-test/status",
            "bodycam/x",
            "a/b/c/d",
            "bodycam/unit-1/cam-other/alert",
        ]
    )
    | st.text(max_size=40),
    payload=st.binary(max_size=400),
)
def test_judge_never_crashes_and_never_calls_garbage_genuine(topic, payload):
    identity = DeviceIdentity.generate("cam-test")
    registry = Registry()
    registry.add(DeviceEntry("cam-test", identity.public_key_hex, "A1024", "unit-1"))
    judge = AlertJudge(registry, SeenState())
    verdict = judge.alert(topic, payload)
    assert not verdict.genuine and format_line(verdict, time.time_ns())
    judge.status(topic, payload)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_to_a_genuine_alert_is_caught(data):
    identity = DeviceIdentity.generate("cam-test")
    registry = Registry()
    registry.add(DeviceEntry("cam-test", identity.public_key_hex, "A1024", "unit-1"))
    record = sign_record(
        identity,
        seq=5,
        prev="ab" * 32,
        utc="2026-11-27T05:00:00.000000Z",
        mono_ns=123,
        kind="stoppage",
        body={"reason": "weather", "detail": "heavy rain"},
    )
    payload = bytearray(record.to_bytes())
    at = data.draw(st.integers(0, len(payload) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != payload[at]))
    payload[at] = value
    verdict = AlertJudge(registry, SeenState()).alert(TOPIC, bytes(payload))
    assert not verdict.genuine, (at, value)


def test_dock_alerts_are_verified_against_the_docks_registry_entry(judge, tmp_path):
    from wire.message import sign_message

    dock = DeviceIdentity.generate("dock-1")
    body = {
        "level": "violation",
        "device": "cam-test",
        "officer": "A1024",
        "since_utc": "2026-11-26T05:00:00.000000Z",
        "head": {"seq": 9, "hash": "ab" * 32},
        "stored_seq": 3,
        "text": "cam-test has held undocked recordings for 24 h",
    }
    msg = sign_message(dock, kind="dock_alert", utc=format_utc(time.time_ns()), body=body)
    topic = "bodycam/unit-1/dock/dock-1/alert"
    assert judge.alert(topic, msg.to_bytes()).verdict == "unknown-device"
    judge.registry.add_dock(DockEntry("dock-1", dock.public_key_hex, "unit-1"))
    v = judge.alert(topic, msg.to_bytes())
    assert v.genuine and v.body["device"] == "cam-test"
    line = format_line(v, time.time_ns())
    assert "DOCK VIOLATION: cam-test has held" in line and "dock-1 (dock" in line
    assert judge.alert(topic, msg.to_bytes()).verdict == "duplicate"
    altered = {**msg.to_dict(), "body": {**body, "level": "warning"}}
    assert judge.alert(topic, canonical_bytes(altered)).verdict == "forged"
    assert judge.alert("bodycam/unit-1/dock/dock-2/alert", msg.to_bytes()).verdict == "forged"
    # A dock alert is not a status, and a camera's alert topic does not take one.
    assert judge.status("bodycam/unit-1/dock-1/status", msg.to_bytes())[1]
    assert not judge.alert("bodycam/unit-1/dock-1/alert", msg.to_bytes()).genuine


def test_watch_shows_dock_alerts_from_a_real_broker(tmp_path, registry_file, broker, capsys):
    from wire.message import sign_message

    dock = DeviceIdentity.generate("dock-1")
    registry = Registry.load(registry_file)
    registry.add_dock(DockEntry("dock-1", dock.public_key_hex, "unit-1"))
    unit_key = UnitKey.create(tmp_path / "unit.key", "unit-1")
    registry.save_signed(registry_file, unit_key, format_utc(time.time_ns()))
    flags = [
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--insecure",
        "--registry",
        str(registry_file),
        "--state",
        str(tmp_path / "seen.json"),
    ]
    assert main(["watch", "--timeout", "0.3", *flags]) == 0  # make the session
    body = {
        "level": "warning",
        "device": "cam-test",
        "officer": "A1024",
        "since_utc": "2026-11-26T09:00:00.000000Z",
        "head": None,
        "stored_seq": -1,
        "text": "cam-test has held undocked recordings for 20 h",
    }
    msg = sign_message(dock, kind="dock_alert", utc=format_utc(time.time_ns()), body=body)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    pub.publish("bodycam/unit-1/dock/dock-1/alert", msg.to_bytes(), qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    capsys.readouterr()
    assert main(["watch", "--count", "1", "--timeout", "10", *flags]) == 0
    out = capsys.readouterr().out
    assert "DOCK WARNING: cam-test has held undocked recordings for 20 h" in out
    assert "[verified]" in out and not out.startswith("!!")


def test_a_dock_flag_alert_as_the_dock_sends_it_is_shown_genuine(judge):
    """What a docking found wrong (an altered segment, a cut tail) reaches the supervisor
    verified, in the very payload dock.alerts publishes."""
    from dock.alerts import dock_alert

    dock = DeviceIdentity.generate("dock-1")
    judge.registry.add_dock(DockEntry("dock-1", dock.public_key_hex, "unit-1"))
    body = {
        "level": "flag",
        "kind": "media_changed",
        "device": "cam-test",
        "officer": "A1024",
        "flagged_utc": "2026-11-27T05:00:00.000000Z",
        "text": "media/20261127/a.ts: size or SHA-256 differs from its signed record",
    }
    payload = dock_alert(dock, format_utc(time.time_ns()), body)
    v = judge.alert("bodycam/unit-1/dock/dock-1/alert", payload)
    assert v.genuine, v.verdict
    assert "DOCK FLAG: media/20261127/a.ts" in format_line(v, time.time_ns())
