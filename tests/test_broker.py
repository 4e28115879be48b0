"""The production broker config (broker/), run for real with certificates made at test time."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker, ProductionBroker
from paho.mqtt.enums import CallbackAPIVersion

from alerting.judge import AlertJudge, SeenState
from alerting.watch import BrokerSettings, Watcher
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.registry import DeviceEntry, Registry
from firmware.mqtt import AlertLink, MqttSettings

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "scripts" / "issue-broker-credential"
UNIT = "unit-1"


def issue(user: str, d: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ISSUE),
            user,
            "--passwd",
            str(d / "passwd"),
            "--out",
            str(d / f"{user}.pw"),
            *extra,
        ],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    d = tmp_path_factory.mktemp("broker")
    b = ProductionBroker(d)
    for cam in ("cam-a", "cam-b"):
        b.issue(cam, "camera", UNIT)
    for sup in ("sup-1", "sup-2"):
        b.issue(sup, "supervisor")
    b.start()
    yield b, d
    b.stop()


def tls_client(
    d: Path, user: str | None, password: str | None = None, *, v5: bool = False
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{user}-{v5}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    client.tls_set(ca_certs=str(d / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if user:
        client.username_pw_set(
            user, password if password is not None else (d / f"{user}.pw").read_text().strip()
        )
    return client


def connect_result(client: mqtt.Client, broker: Broker) -> str:
    done = threading.Event()
    result = []

    def on_connect(c, u, flags, rc, props):
        result.append(str(rc))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda c, u, f, rc, p: (result.append(str(rc)), done.set())
    try:
        client.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError) as exc:
        return f"error: {exc}"
    client.loop_start()
    done.wait(10)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else "no answer"


def test_only_known_users_with_tls_get_in(prod):
    broker, d = prod
    assert connect_result(tls_client(d, "cam-a"), broker) == "Success"
    assert connect_result(tls_client(d, None), broker) == "Not authorized"
    assert connect_result(tls_client(d, "cam-a", "wrong-password"), broker) == "Not authorized"
    plain = mqtt.Client(CallbackAPIVersion.VERSION2)  # no TLS: the handshake never completes
    plain.username_pw_set("cam-a", (d / "cam-a.pw").read_text().strip())
    assert connect_result(plain, broker) != "Success"


def supervisor_settings(broker: Broker, d: Path, user: str) -> BrokerSettings:
    return BrokerSettings(
        host=broker.host,
        port=broker.port,
        ca_file=str(d / "ca.crt"),
        username=user,
        password_file=str(d / f"{user}.pw"),
    )


def camera_settings(broker: Broker, d: Path, user: str, **kw) -> MqttSettings:
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        unit=UNIT,
        ca_file=str(d / "ca.crt"),
        password_file=str(d / f"{user}.pw"),
        **kw,
    )


def test_device_a_cannot_publish_as_device_b(prod, tmp_path):
    broker, d = prod
    a = DeviceIdentity.create(tmp_path / "a" / "device.key", "cam-a")
    b = DeviceIdentity.create(tmp_path / "b" / "device.key", "cam-b")
    registry = Registry()
    for ident in (a, b):
        registry.add(DeviceEntry(ident.device_id, ident.public_key_hex, "A1", UNIT))
    seen = []
    arrived = threading.Event()
    watcher = Watcher(
        supervisor_settings(broker, d, "sup-1"),
        AlertJudge(registry, SeenState()),
        lambda v: (seen.append(v), arrived.set()),
        client_id="sup-acl",
    )
    watcher.start()
    assert watcher.subscribed.wait(10)
    try:
        # cam-a tries to speak for cam-b: a perfectly signed cam-b record, even.
        other = Journal(tmp_path / "b" / "dev" / "journal.jsonl", b)
        forged_as_b = other.append("stoppage", {"reason": "weather", "detail": "not me"})
        refused = threading.Event()
        codes = []
        rogue = tls_client(d, "cam-a", v5=True)
        rogue.on_publish = lambda c, u, mid, rc, p: (codes.append(str(rc)), refused.set())
        rogue.connect(broker.host, broker.port)
        rogue.loop_start()
        rogue.publish(f"bodycam/{UNIT}/cam-b/alert", forged_as_b.to_bytes(), qos=1)
        assert refused.wait(10)
        rogue.disconnect()
        rogue.loop_stop()
        assert codes == ["Not authorized"]
        # Then cam-a as the camera runs it (TLS, its own password file), on its own topic:
        # it must arrive; the forbidden one, sent first, never does. (One connection at a
        # time: the broker makes the user name the client id.)
        journal = Journal(tmp_path / "a" / "dev" / "journal.jsonl", a)
        link = AlertLink(journal, camera_settings(broker, d, "cam-a", status_min_interval_s=0.0))
        link.start()
        try:
            assert link.wait_connected(10)
            own = journal.append("stoppage", {"reason": "camera", "detail": "no frames"})
            assert arrived.wait(10) and link.wait_idle(10)
        finally:
            link.stop()
    finally:
        watcher.stop()
    assert [(v.device, v.seq, v.verdict) for v in seen] == [("cam-a", own.seq, "verified")]


def test_issue_credential_refuses_duplicates_and_dry_run_writes_nothing(tmp_path):
    cam = ("--role", "camera", "--unit", UNIT)
    assert issue("cam-z", tmp_path, *cam, "--dry-run").returncode == 0
    assert not (tmp_path / "passwd").exists() and not (tmp_path / "cam-z.pw").exists()
    assert not (tmp_path / "acl").exists()
    assert issue("cam-z", tmp_path, *cam).returncode == 0
    assert (tmp_path / "cam-z.pw").stat().st_mode & 0o777 == 0o600
    again = issue("cam-z", tmp_path, *cam)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already has a credential" in again.stderr
    assert issue("../etc", tmp_path, *cam).returncode == 2
    assert issue("cam-z", tmp_path, *cam, "--replace").returncode == 0
    assert (tmp_path / "passwd").read_text().count("cam-z:$7$") == 1
    acl = (tmp_path / "acl").read_text()
    assert acl.count("user cam-z\n") == 1
    assert f"topic write bodycam/{UNIT}/cam-z/alert" in acl
    # Each class needs what it needs: a camera its unit, the others none.
    no_unit = issue("cam-y", tmp_path, "--role", "camera")
    assert no_unit.returncode == 2 and "--unit" in no_unit.stderr
    assert issue("dock-1", tmp_path, "--role", "dock", "--unit", UNIT).returncode == 2
    assert issue("cam-y", tmp_path).returncode == 2  # --role is required: no default class
    # A supervisor's ".cmd" twin is taken with it, so no camera can be issued under it.
    assert issue("sup", tmp_path, "--role", "supervisor").returncode == 0
    clash = issue("sup.cmd", tmp_path, *cam)
    assert clash.returncode == 2 and "already has a credential" in clash.stderr
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["cam-z", "sup", "sup.cmd"]


def test_alerts_queue_for_an_absent_supervisor_beyond_mosquittos_default_limit(prod, tmp_path):
    """mosquitto's default max_queued_messages (1000) silently drops QoS 1 messages for a
    subscriber that is away; the shipped config raises it, so none is lost."""
    broker, d = prod
    cam = DeviceIdentity.create(tmp_path / "c" / "device.key", "cam-b")
    registry = Registry()
    registry.add(DeviceEntry("cam-b", cam.public_key_hex, "A1", UNIT))
    sup = supervisor_settings(broker, d, "sup-2")
    seen = []
    all_there = threading.Event()
    n = 1500

    def emit(v):
        seen.append(v)
        if len(seen) == n:
            all_there.set()

    judge = AlertJudge(registry, SeenState())
    away = Watcher(sup, judge, emit, client_id="sup-away")
    away.start()
    assert away.subscribed.wait(10)
    away.stop()  # the supervisor's console is closed
    journal = Journal(tmp_path / "c" / "dev" / "journal.jsonl", cam)
    link = AlertLink(journal, camera_settings(broker, d, "cam-b", status_min_interval_s=60.0))
    link.start()
    try:
        for i in range(n):
            journal.append("battery_low", {"percent": 14, "minutes_left": i})
        assert link.wait_idle(60)  # all accepted by the broker
    finally:
        link.stop()
    back = Watcher(sup, judge, emit, client_id="sup-away")
    back.start()
    try:
        assert all_there.wait(60), f"{len(seen)} of {n} arrived"
    finally:
        back.stop()
    assert [v.body["minutes_left"] for v in seen] == list(range(n))
    assert all(v.genuine for v in seen)
