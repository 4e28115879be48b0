"""An insider on the broker network, played against mosquitto running the production config
from broker/ (TLS with a CA and a server certificate made here with openssl, the password
file and the ACL written by scripts/issue-broker-credential), with hostile paho clients.

Each attack asserts the refusal and its reason, that nothing the supervisor holds changed
(no alert shown as verified, no session lost), and that the next honest client is served.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from alertkit import Shown
from conftest import ProductionBroker
from dockkit import NS, dock_once, make_camera, make_dock, store_trust
from paho.mqtt.enums import CallbackAPIVersion

from alerting.judge import AlertJudge, SeenState
from alerting.watch import BrokerSettings, Watcher, collect_status, send_ack
from dock.alerts import MAX_ALERT_BYTES, DeadlineWatcher, MqttConfig, dock_alert
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.registry import DeviceEntry, Registry
from firmware.mqtt import AlertLink, MqttSettings
from wire.message import sign_message, sign_status

UNIT = "unit-1"
H = 3600 * NS
WAIT = 30  # seconds: an upper bound for events (a loaded machine), never a sleep


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> ProductionBroker:
    b = ProductionBroker(tmp_path_factory.mktemp("prod-broker"))
    for cam, unit in (("cam-a", UNIT), ("cam-b", UNIT), ("cam-c", "unit-2"), ("cam-001", UNIT)):
        b.issue(cam, "camera", unit)
    for dock in ("dock-1", "dock-sim"):
        b.issue(dock, "dock")
    for sup in ("sup-1", "sup-kick", "sup-e2e", "sup-fresh", "sup-flags", "sup-forge", "sup-cli"):
        b.issue(sup, "supervisor")
    # A password line without an ACL block, as a hand edit of the passwd file would leave.
    with open(b.workdir / "passwd", "a") as f:
        f.write(f"ghost:{b._issue.hash_password('ghost-password')}\n")
    (b.workdir / "ghost.pw").write_text("ghost-password\n")
    b.start()
    yield b
    b.stop()


class Probe:
    """A hand-written MQTT 5 client logged in as ``user`` over TLS: says what the broker
    answered to each CONNECT, PUBLISH (QoS 1) and SUBSCRIBE, by reason code name."""

    def __init__(self, broker: ProductionBroker, user: str, *, client_id: str = "") -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{user}",
            protocol=mqtt.MQTTv5,
        )
        self.client.tls_set(ca_certs=str(broker.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.username_pw_set(user, broker.password(user))
        self._answers: dict[int, queue.Queue] = {}
        self._connack: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self._connack.put(str(rc))
        self.client.on_publish = lambda c, u, mid, rc, p: self._answer(mid, str(rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._answer(mid, str(rcs[0]))
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))

    def _answer(self, mid: int, rc: str) -> None:
        self._answers.setdefault(mid, queue.Queue()).put(rc)

    def _wait(self, mid: int) -> str:
        return self._answers.setdefault(mid, queue.Queue()).get(timeout=WAIT)

    def connect(self) -> str:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        return self._connack.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes = b"probe", *, retain: bool = False) -> str:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._wait(info.mid)

    def subscribe(self, topic: str) -> str:
        _, mid = self.client.subscribe(topic, qos=1)
        return self._wait(mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def allowed(rc: str) -> bool:
    # "No matching subscribers" is a success: the broker took it, nobody was listening.
    return rc in ("Success", "No matching subscribers", "Granted QoS 1")


# --- 3. each role's grants are exactly what it needs ------------------------------------

WRITES = {
    "cam-a": {
        f"bodycam/{UNIT}/cam-a/alert": True,
        f"bodycam/{UNIT}/cam-a/status": True,
        f"bodycam/{UNIT}/cam-b/alert": False,  # another camera
        f"bodycam/{UNIT}/cam-b/status": False,
        "bodycam/unit-2/cam-a/alert": False,  # another unit
        f"bodycam/{UNIT}/dock/cam-a/alert": False,  # a forged dock alert
        f"bodycam/{UNIT}/dock/dock-1/alert": False,
        f"bodycam/{UNIT}/cam-a/ack": False,  # acking itself
        f"bodycam/{UNIT}/cam-b/ack": False,
        "other/topic": False,
    },
    "dock-1": {
        f"bodycam/{UNIT}/dock/dock-1/alert": True,
        "bodycam/unit-2/dock/dock-1/alert": True,  # it alerts under each camera's unit
        f"bodycam/{UNIT}/dock/dock-1/status": True,  # its signed journal head
        f"bodycam/{UNIT}/dock/dock-2/alert": False,  # another dock
        f"bodycam/{UNIT}/dock-1/alert": False,  # a camera-style alert under its name
        f"bodycam/{UNIT}/cam-a/alert": False,
        f"bodycam/{UNIT}/cam-a/status": False,  # a camera's head: its tail evidence
        f"bodycam/{UNIT}/cam-a/ack": False,
    },
    "sup-1": {
        f"bodycam/{UNIT}/cam-a/ack": True,  # acks and console receipts
        f"bodycam/{UNIT}/cam-a/alert": False,
        f"bodycam/{UNIT}/cam-a/status": False,
        f"bodycam/{UNIT}/dock/dock-1/alert": False,
    },
    "sup-1.cmd": {  # `bodycam-supervisor status` and `ack`
        f"bodycam/{UNIT}/cam-a/ack": True,
        f"bodycam/{UNIT}/cam-a/alert": False,
    },
}

# Retained messages, each put there by the one user allowed to write it.
SEEDS = {
    f"bodycam/{UNIT}/cam-a/status": "cam-a",
    f"bodycam/{UNIT}/cam-b/status": "cam-b",
    "bodycam/unit-2/cam-c/status": "cam-c",
    f"bodycam/{UNIT}/cam-b/alert": "cam-b",
    f"bodycam/{UNIT}/dock/dock-1/alert": "dock-1",
    f"bodycam/{UNIT}/dock/dock-1/status": "dock-1",
    f"bodycam/{UNIT}/cam-a/ack": "sup-1",
    f"bodycam/{UNIT}/cam-b/ack": "sup-1",
}
STATUSES = {
    f"bodycam/{UNIT}/cam-a/status",
    f"bodycam/{UNIT}/cam-b/status",
    "bodycam/unit-2/cam-c/status",
}
READS = {
    "cam-a": {f"bodycam/{UNIT}/cam-a/ack"},  # its own acks; no one's status, no alert
    "dock-1": STATUSES,  # the 20 h / 24 h alerts and cut tails need these, nothing else
    "sup-1": STATUSES
    | {
        f"bodycam/{UNIT}/cam-b/alert",
        f"bodycam/{UNIT}/dock/dock-1/alert",
        f"bodycam/{UNIT}/dock/dock-1/status",
    },
    "sup-1.cmd": STATUSES,
}
# After subscribing, a fresh message from a legitimate writer to a topic the user may read:
# it comes after every retained message the broker sent for the subscriptions.
MARKERS = {
    "cam-a": ("sup-1", f"bodycam/{UNIT}/cam-a/ack"),
    "dock-1": ("cam-b", f"bodycam/{UNIT}/cam-b/status"),
    "sup-1": ("cam-b", f"bodycam/{UNIT}/cam-b/status"),
    "sup-1.cmd": ("cam-b", f"bodycam/{UNIT}/cam-b/status"),
}


def put(prod: ProductionBroker, user: str, topic: str, payload: bytes, retain: bool) -> None:
    writer = Probe(prod, user, client_id=user)
    assert writer.connect() == "Success"
    try:
        assert allowed(writer.publish(topic, payload, retain=retain)), (user, topic)
    finally:
        writer.close()


@pytest.fixture
def seeded(prod):
    for topic, owner in SEEDS.items():
        put(prod, owner, topic, b"seed", retain=True)
    yield
    for topic, owner in SEEDS.items():  # an empty retained message clears it
        put(prod, owner, topic, b"", retain=True)


@pytest.mark.parametrize("user", sorted(WRITES))
def test_each_role_writes_exactly_what_it_needs(prod, user):
    probe = Probe(prod, user)
    assert probe.connect() == "Success"
    try:
        got = {t: allowed(probe.publish(t)) for t in WRITES[user]}
        # A refusal names its reason, and the connection survives it: the next honest
        # publish is taken.
        assert probe.publish(f"bodycam/{UNIT}/nobody/alert") == "Not authorized"
        assert allowed(probe.publish(next(t for t, ok in WRITES[user].items() if ok)))
    finally:
        probe.close()
    assert got == WRITES[user]


@pytest.mark.parametrize("user", sorted(READS))
def test_each_role_reads_exactly_what_it_needs(prod, seeded, user):
    """mosquitto grants any SUBSCRIBE and filters each message by the ACL, so what a role
    can read is what reaches it: every retained message there is, under ``#`` and
    ``$SYS/#``, up to a fresh marker from a legitimate writer."""
    probe = Probe(prod, user)
    assert probe.connect() == "Success"
    try:
        probe.subscribe("#")
        probe.subscribe("$SYS/#")
        writer, marker = MARKERS[user]
        put(prod, writer, marker, b"marker", retain=False)
        got = set()
        while (item := probe.messages.get(timeout=WAIT)) != (marker, b"marker"):
            got.add(item[0])
    finally:
        probe.close()
    assert got == READS[user]


def test_a_user_without_grants_and_a_stranger_get_nothing(prod, seeded):
    """A password without an ACL block (a hand-edited passwd line) may do nothing at all;
    without a password nothing gets in."""
    ghost = Probe(prod, "ghost")
    assert ghost.connect() == "Success"
    try:
        ghost.subscribe("#")  # the retained seeds would be sent now, before the PUBACKs
        ghost.subscribe("$SYS/#")
        assert ghost.publish("bodycam/unit-1/ghost/alert") == "Not authorized"
        assert ghost.publish("bodycam/unit-1/dock/ghost/alert") == "Not authorized"
        assert ghost.messages.empty()
    finally:
        ghost.close()
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    anonymous.tls_set(ca_certs=str(prod.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    got: queue.Queue = queue.Queue()
    anonymous.on_connect = lambda c, u, f, rc, p: got.put(str(rc))
    anonymous.connect(prod.host, prod.port)
    anonymous.loop_start()
    try:
        assert got.get(timeout=WAIT) in ("Not authorized", "Bad user name or password")
    finally:
        anonymous.loop_stop()


# --- 4. TLS required: no password in clear text ----------------------------------------


def test_the_recorder_and_the_dock_refuse_plain_tcp_in_one_line_before_starting(tmp_path):
    """A config with a broker host and no ca_file (the shipped defaults plus a host) is
    refused by each daemon before it writes anything or opens a bay: exit 2, one line."""
    line = (
        "mqtt.ca_file is empty; TLS is required (set ca_file to the broker's CA, "
        "or insecure = true for a plain-TCP test broker)"
    )
    key = tmp_path / "key" / "device.key"
    DeviceIdentity.create(key, "cam-plain")
    recorder_toml = tmp_path / "recorder.toml"
    recorder_toml.write_text('[mqtt]\nhost = "broker.example.org"\nunit = "unit-1"\n')
    storage = tmp_path / "storage"
    recorder = subprocess.run(
        [sys.executable, "-m", "firmware", "--camera", "sim", "--config", str(recorder_toml),
         "--storage", str(storage), "--key", str(key)],
        env=dict(os.environ, GPIOZERO_PIN_FACTORY="mock"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert recorder.returncode == 2
    assert recorder.stderr.splitlines() == [
        f"bodycam-recorder: error: broker broker.example.org: {line}"
    ]
    assert not storage.exists()  # no journal opened, no boot record written
    _, registry_path = make_camera(tmp_path, "cam-001")
    make_dock(tmp_path, registry_path)[1].close()
    dock_toml = tmp_path / "dock.toml"
    dock_toml.write_text('[mqtt]\nhost = "broker.example.org"\n')
    trust = [a for fp in sorted(store_trust(tmp_path)) for a in ("--unit-key", fp)]
    dock = subprocess.run(
        [sys.executable, "-m", "dock", "--config", str(dock_toml), "--store",
         str(tmp_path / "dock"), "--key", str(tmp_path / "dock-key" / "dock.key"), *trust,
         "serve"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dock.returncode == 2
    assert dock.stderr.splitlines()[-1] == f"bodycam-dock: error: broker broker.example.org: {line}"
    assert "serving" not in dock.stderr


# --- 1. cameras cannot forge dock alerts ------------------------------------------------


def supervisor(prod: ProductionBroker, user: str) -> BrokerSettings:
    return BrokerSettings(
        host=prod.host,
        port=prod.port,
        ca_file=str(prod.ca_file),
        username=user,
        password_file=str(prod.workdir / f"{user}.pw"),
    )


def test_a_camera_cannot_forge_a_dock_alert(prod, tmp_path):
    camera, registry_path = make_camera(tmp_path, "cam-001")
    dock_identity, store = make_dock(tmp_path, registry_path)
    registry = store.registry()  # signed by the unit key: cam-001 and the dock dock-sim
    shown = Shown()
    watch = Watcher(supervisor(prod, "sup-forge"), AlertJudge(registry, SeenState()), shown)
    watch.start()
    assert watch.subscribed.wait(WAIT)
    try:
        body = {"level": "violation", "device": "cam-b", "officer": "A1", "text": "forged"}
        own_key = dock_alert(camera.identity, format_utc(time.time_ns()), body)
        # Layer 1, the broker: a camera's credential cannot publish on any dock topic.
        probe = Probe(prod, "cam-001")
        assert probe.connect() == "Success"
        assert probe.publish(f"bodycam/{UNIT}/dock/cam-001/alert", own_key) == "Not authorized"
        assert probe.publish(f"bodycam/{UNIT}/dock/dock-sim/alert", own_key) == "Not authorized"
        probe.close()
        # Layer 2, the supervisor: an insider with the dock's broker password but not its
        # key publishes on the dock's topic. Under a camera's key it is not a dock alert.
        forged = sign_message(
            DeviceIdentity("dock-sim", camera.identity._signing_key),  # the camera's key
            kind="dock_alert",
            utc=format_utc(time.time_ns()),
            body=body,
        ).to_bytes()
        insider = Probe(prod, "dock-sim")
        assert insider.connect() == "Success"
        assert allowed(insider.publish(f"bodycam/{UNIT}/dock/dock-sim/alert", forged))
        # The next honest dock alert is shown verified.
        honest = dock_alert(dock_identity, format_utc(time.time_ns()), {**body, "text": "real"})
        assert allowed(insider.publish(f"bodycam/{UNIT}/dock/dock-sim/alert", honest))
        insider.close()
        first, second = shown.wait_for(2, WAIT)
    finally:
        watch.stop()
        store.close()
    assert (first.verdict, first.problem) == (
        "forged",
        "signature does not verify under the dock's key",
    )
    assert second.genuine and second.body["text"] == "real"
    assert len(shown.verdicts) == 2  # the camera's own-key publishes never arrived


def test_the_judge_takes_dock_alerts_only_under_dock_keys(tmp_path):
    """Without the broker's ACL (a test broker, a misconfigured one), the supervisor still
    refuses: a camera's valid key never makes a dock alert, and a dock whose key was
    revoked in the signed registry is refused too."""
    camera, registry_path = make_camera(tmp_path, "cam-001")
    dock_identity, store = make_dock(tmp_path, registry_path)
    registry = store.registry()
    store.close()
    judge = AlertJudge(registry, SeenState())
    now = format_utc(time.time_ns())
    body = {"level": "violation", "device": "cam-001", "text": "x"}
    own = dock_alert(camera.identity, now, body)
    v = judge.alert(f"bodycam/{UNIT}/dock/cam-001/alert", own)
    assert (v.verdict, v.problem) == (
        "forged",
        "'cam-001' is a camera, not a dock: dock alerts count only under dock keys",
    )
    assert judge.alert(
        f"bodycam/{UNIT}/dock/dock-sim/alert", dock_alert(dock_identity, now, body)
    ).genuine
    # Camera alerts are checked under device keys only: the dock's key signs none.
    entry = registry.dock("dock-sim")
    revoked = Registry(
        {e.device_id: e for e in registry},
        {
            "dock-sim": entry.__class__(
                **{
                    **entry.__dict__,
                    "revoked_utc": "2026-01-01T00:00:00.000000Z",
                    "revoked_reason": "disk stolen",
                }
            )
        },
    )
    v = AlertJudge(revoked, SeenState()).alert(
        f"bodycam/{UNIT}/dock/dock-sim/alert", dock_alert(dock_identity, now, {**body, "text": "y"})
    )
    assert v.verdict == "revoked-key" and "disk stolen" in v.problem


# --- 2. a camera cannot take a supervisor's client id -----------------------------------


def test_a_camera_cannot_take_a_supervisors_client_id(prod, tmp_path):
    cam = DeviceIdentity.create(tmp_path / "b" / "device.key", "cam-b")
    registry = Registry()
    registry.add(DeviceEntry("cam-b", cam.public_key_hex, "A1", UNIT))
    shown = Shown()
    judge = AlertJudge(registry, SeenState())
    settings = supervisor(prod, "sup-kick")
    watch = Watcher(settings, judge, shown, client_id="bodycam-supervisor-duty")
    drops: list[str] = []
    real_on_disconnect = watch.client.on_disconnect
    watch.client.on_disconnect = lambda c, u, f, rc, p: (
        drops.append(str(rc)),
        real_on_disconnect(c, u, f, rc, p),
    )
    watch.start()
    assert watch.subscribed.wait(WAIT)
    journal = Journal(tmp_path / "b" / "dev" / "journal.jsonl", cam)
    camera = MqttSettings(
        host=prod.host,
        port=prod.port,
        unit=UNIT,
        ca_file=str(prod.ca_file),
        password_file=str(prod.workdir / "cam-b.pw"),
        status_min_interval_s=60.0,
    )
    try:
        # The attacker (cam-a's credential) asks for the supervisor's ids, live...
        for stolen_id in ("bodycam-supervisor-duty", "sup-kick"):
            attacker = Probe(prod, "cam-a", client_id=stolen_id)
            assert attacker.connect() == "Success"  # it gets in, as cam-a and nothing more
            assert attacker.publish(f"bodycam/{UNIT}/cam-b/alert") == "Not authorized"
            attacker.close()
        with AlertLink(journal, camera) as link:
            first = journal.append("stoppage", {"reason": "weather", "detail": "live"})
            assert link.wait_idle(WAIT)
            shown.wait_for(1, WAIT)
        assert drops == []  # the watch was never kicked off
        # ...and while the console is closed, with a clean session that would wipe the
        # supervisor's queue if the broker let it take the id.
        watch.stop()
        for stolen_id in ("bodycam-supervisor-duty", "sup-kick"):
            attacker = Probe(prod, "cam-a", client_id=stolen_id)
            assert attacker.connect() == "Success"
            attacker.close()
        with AlertLink(journal, camera) as link:
            queued = [
                journal.append("stoppage", {"reason": "camera", "detail": f"queued {i}"})
                for i in range(3)
            ]
            assert link.wait_idle(WAIT)
        back = Watcher(settings, judge, shown, client_id="bodycam-supervisor-duty")
        back.start()
        got = shown.wait_for(4, WAIT)
        back.stop()
    finally:
        watch.stop()
    assert [(v.seq, v.verdict) for v in got] == [(r.seq, "verified") for r in (first, *queued)]


def test_the_supervisors_status_and_ack_commands_never_take_over_its_watch(prod, tmp_path):
    """One person, one credential: ``status`` and ``ack`` log in as ``<name>.cmd`` while
    ``watch`` holds ``<name>``'s session, so running them kicks nothing off."""
    cam = DeviceIdentity.create(tmp_path / "a" / "device.key", "cam-a")
    registry = Registry()
    registry.add(DeviceEntry("cam-a", cam.public_key_hex, "A1", UNIT))
    settings = supervisor(prod, "sup-cli")
    judge = AlertJudge(registry, SeenState())
    watch = Watcher(settings, judge, Shown())
    drops: list[str] = []
    real_on_disconnect = watch.client.on_disconnect
    watch.client.on_disconnect = lambda c, u, f, rc, p: (
        drops.append(str(rc)),
        real_on_disconnect(c, u, f, rc, p),
    )
    watch.start()
    assert watch.subscribed.wait(WAIT)
    acked: queue.Queue = queue.Queue()
    camera = Probe(prod, "cam-a")
    camera.client.on_message = lambda c, u, m: acked.put(bytes(m.payload))
    assert camera.connect() == "Success"
    try:
        assert allowed(camera.subscribe(f"bodycam/{UNIT}/cam-a/ack"))
        rows = collect_status(settings, judge, registry, wait_s=1.0)
        send_ack(settings, UNIT, "cam-a", 7, "sgt-li")
        assert json.loads(acked.get(timeout=WAIT)) == {"alert_seq": 7, "by": "sgt-li"}
        kicked = list(drops)  # before the watch's own clean disconnect
    finally:
        camera.close()
        watch.stop()
    assert "cam-a" in [r["device"] for r in rows]  # (other tests' cameras left statuses)
    assert kicked == []
    log = (prod.workdir / "mosquitto.log").read_text()
    assert "as sup-cli.cmd (" in log and "Client sup-cli already connected" not in log


# --- 3 (end to end). the dock reads statuses; its alert reaches the supervisor ------------


def dock_config(prod: ProductionBroker, user: str) -> MqttConfig:
    return MqttConfig(
        host=prod.host,
        port=prod.port,
        unit=UNIT,
        ca_file=str(prod.ca_file),
        password_file=str(prod.workdir / f"{user}.pw"),
        check_s=3600,
    )


def test_the_dock_reads_statuses_and_its_20h_alert_is_shown_verified(prod, tmp_path):
    camera, registry_path = make_camera(tmp_path, "cam-001")
    camera.record(1, 1000)
    dock_identity, store = make_dock(tmp_path, registry_path, clock=camera.clock)
    assert dock_once(store, dock_identity, camera)[0].outcome == "stored"
    camera.clock.advance(H)
    camera.record(1, 1000, seed=2)  # recorded again, not docked
    status = sign_status(
        camera.identity,
        utc=format_utc(camera.clock.time_ns()),
        online=True,
        state="recording",
        head=camera.journal.head,
        battery=80,
    )
    cam = Probe(prod, "cam-001")
    assert cam.connect() == "Success"
    assert allowed(cam.publish(f"bodycam/{UNIT}/cam-001/status", status.to_bytes(), retain=True))
    cam.close()
    shown = Shown()
    judge = AlertJudge(store.registry(), SeenState(), clock=camera.clock.time_ns)
    watch = Watcher(supervisor(prod, "sup-e2e"), judge, shown)
    watch.start()
    assert watch.subscribed.wait(WAIT)
    watcher = DeadlineWatcher(store, dock_identity, dock_config(prod, "dock-sim"))
    watcher.start()
    try:
        assert watcher.connected.wait(WAIT)
        query = "SELECT seq FROM status_heads WHERE device='cam-001'"
        deadline = time.monotonic() + WAIT
        while not store.index.query(query):  # other cameras' retained statuses come too
            assert time.monotonic() < deadline, "the dock never got cam-001's status"
            watcher.heard.wait(0.2)
            watcher.heard.clear()
        assert store.index.query(query) == [{"seq": camera.journal.head[0]}]
        camera.clock.advance(20 * H)
        sent = watcher.check()
        assert [b["level"] for b in sent] == ["warning"]
        (v,) = shown.wait_for(1, WAIT)
    finally:
        watcher.stop()
        watch.stop()
        store.close()
    assert v.genuine and v.kind == "dock_alert" and v.body["device"] == "cam-001"
    assert v.topic == f"bodycam/{UNIT}/dock/dock-sim/alert"
    assert watcher.disconnects == 0


# --- 5. the supervisor checks a dock alert's unit and freshness ----------------------------


def test_a_genuine_docks_stale_future_or_foreign_alert_is_not_verified(prod, tmp_path):
    """A lying (or replaying) dock with its real key and broker credential."""
    _, registry_path = make_camera(tmp_path, "cam-001")
    dock_identity, store = make_dock(tmp_path, registry_path)
    registry = store.registry()
    store.close()
    # A second unit is known to this supervisor through one of its cameras.
    registry.add(
        DeviceEntry("cam-c", DeviceIdentity.generate("cam-c").public_key_hex, "B7", "unit-2")
    )
    shown = Shown()
    judge = AlertJudge(registry, SeenState())
    watch = Watcher(supervisor(prod, "sup-fresh"), judge, shown)
    watch.start()
    assert watch.subscribed.wait(WAIT)
    now = time.time_ns()
    body = {"level": "violation", "device": "cam-001", "officer": "A1024", "text": "24 h"}
    cases = [
        (UNIT, "2023-03-01T08:00:00.000000Z", "stale", "days ago: older than the 7-day limit"),
        (UNIT, format_utc(now + H), "stale", "ahead of this clock"),
        ("unit-404", format_utc(now), "wrong-unit", "'unit-404' is not one this supervisor"),
        ("unit-2", format_utc(now), "wrong-unit", "belongs to unit 'unit-1', not 'unit-2'"),
    ]
    dock = Probe(prod, "dock-sim")
    assert dock.connect() == "Success"
    try:
        for i, (unit, utc, _, _) in enumerate(cases):
            payload = dock_alert(dock_identity, utc, {**body, "text": f"case {i}"})
            assert allowed(dock.publish(f"bodycam/{unit}/dock/dock-sim/alert", payload))
        honest = dock_alert(dock_identity, format_utc(time.time_ns()), {**body, "text": "ok"})
        assert allowed(dock.publish(f"bodycam/{UNIT}/dock/dock-sim/alert", honest))
        got = shown.wait_for(len(cases) + 1, WAIT)
    finally:
        dock.close()
        watch.stop()
    assert judge.units() == {"unit-1", "unit-2"}
    for v, (_, _, verdict, reason) in zip(got, cases, strict=False):
        assert not v.genuine and v.verdict == verdict and reason in v.problem, v.problem
    assert got[-1].genuine and got[-1].body["text"] == "ok"


# --- 6. bounded texts: a 200 kB id is flagged, and the next flag still goes out -----------


def test_a_200kB_device_id_is_flagged_and_the_dock_keeps_delivering(prod, tmp_path):
    _, registry_path = make_camera(tmp_path, "cam-001")
    dock_identity, store = make_dock(tmp_path, registry_path)
    huge = "X" * 200_000
    store.flag(huge, "unregistered", f"device {huge} is not in the registry")  # the real path
    # A flag row from before flags were bounded at the store (an upgraded dock's index):
    # the alert must bound it itself.
    store.index.execute(
        "INSERT INTO flags(utc, device, kind, detail) VALUES (?,?,?,?)",
        (format_utc(time.time_ns()), huge, "unregistered" + "!" * 1000, huge),
    )
    store.flag("cam-001", "media_changed", "media/20261127/a.ts differs from its record")
    sizes: list[int] = []
    raw = Probe(prod, "sup-flags")  # what goes over the wire, byte for byte
    assert raw.connect() == "Success"
    assert allowed(raw.subscribe("bodycam/+/dock/+/alert"))
    watcher = DeadlineWatcher(store, dock_identity, dock_config(prod, "dock-sim"))
    watcher.start()
    try:
        assert watcher.connected.wait(WAIT)
        watcher.check_now()  # once connected (its first check may have come before)
        payloads = [raw.messages.get(timeout=WAIT) for _ in range(3)]
        assert watcher.check() == []  # after the check that sent them has noted them sent
        sizes = [len(p) for _, p in payloads]
        assert watcher.connected.is_set() and watcher.disconnects == 0
        left = store.index.query(
            "SELECT id FROM flags WHERE id NOT IN (SELECT flag_id FROM flag_alerts)"
        )
    finally:
        watcher.stop()
        raw.close()
        store.close()
    judge = AlertJudge(Registry.load(tmp_path / "dock" / "registry.json"), SeenState())
    verdicts = [judge.alert(t, p) for t, p in payloads]
    assert all(v.genuine for v in verdicts), [v.problem for v in verdicts]
    sent = [v.body for v in verdicts]  # as the supervisor reads them off the wire
    assert [b["kind"][:12] for b in sent] == ["unregistered", "unregistered", "media_change"]
    assert all(len(b["device"]) <= 64 and len(b["text"]) <= 512 for b in sent)
    assert sent[1]["device"].endswith("...") and sent[2]["device"] == "cam-001"
    assert left == [] and max(sizes) < MAX_ALERT_BYTES


def test_a_camera_stoppage_with_a_200kB_detail_is_cut_to_fit(mock_factory):
    from firmware.state import Machine

    actions = Machine().on_fault("camera", "E" * 200_000, 0)
    (record,) = [a for a in actions if a.kind == "journal"]
    kind, body = record.args
    assert kind == "stoppage" and len(body["detail"]) == 512 and body["detail"].endswith("...")


# --- 7. persistence: what a broker restart and a broker crash keep ----------------------


def test_queued_alerts_survive_a_broker_restart_and_a_crash_after_a_save(tmp_path):
    b = ProductionBroker(tmp_path / "broker")
    b.issue("cam-p", "camera", UNIT)
    b.issue("sup-p", "supervisor")
    b.start()
    cam = DeviceIdentity.create(tmp_path / "c" / "device.key", "cam-p")
    registry = Registry()
    registry.add(DeviceEntry("cam-p", cam.public_key_hex, "A1", UNIT))
    journal = Journal(tmp_path / "c" / "dev" / "journal.jsonl", cam)
    camera = MqttSettings(
        host=b.host,
        port=b.port,
        unit=UNIT,
        ca_file=str(b.ca_file),
        password_file=str(b.workdir / "cam-p.pw"),
        status_min_interval_s=60.0,
    )
    shown = Shown()
    judge = AlertJudge(registry, SeenState())
    settings = supervisor(b, "sup-p")
    db = b.workdir / "mosquitto.db"

    def queue_alerts(tag: str) -> list[int]:
        away = Watcher(settings, judge, shown)  # the session exists; the console closes
        away.start()
        assert away.subscribed.wait(WAIT)
        away.stop()
        with AlertLink(journal, camera) as link:
            seqs = [
                journal.append("stoppage", {"reason": "camera", "detail": f"{tag} {i}"}).seq
                for i in range(5)
            ]
            assert link.wait_idle(WAIT)  # all PUBACKed: the broker holds them
        return seqs

    def deliver(n: int) -> list[int]:
        back = Watcher(settings, judge, shown)
        back.start()
        try:
            return [v.seq for v in shown.wait_for(n, WAIT)]
        finally:
            back.stop()

    try:
        clean = queue_alerts("restart")
        b.proc.send_signal(signal.SIGTERM)  # a clean stop writes the database
        b.proc.wait(WAIT)
        b.start()
        assert deliver(5) == clean
        crash = queue_alerts("crash")
        held = time.time_ns()
        deadline = time.monotonic() + 10 + WAIT  # autosave_interval 10
        while not (db.exists() and db.stat().st_mtime_ns > held):
            assert time.monotonic() < deadline, "mosquitto did not autosave"
            time.sleep(0.1)
        b.proc.kill()  # SIGKILL: nothing more is written
        b.proc.wait(WAIT)
        b.start()
        assert deliver(10) == clean + crash
    finally:
        b.stop()
    assert all(v.genuine for v in shown.verdicts)


def test_the_shipped_config_states_its_persistence_and_client_id_binding():
    conf = (Path(__file__).resolve().parents[1] / "broker" / "mosquitto.conf").read_text()
    settings = {
        line.split()[0]: line.split(None, 1)[1]
        for line in conf.splitlines()
        if line.strip() and not line.startswith("#")
        if len(line.split()) > 1
    }
    assert settings["persistence"] == "true" and settings["autosave_interval"] == "10"
    assert settings["persistence_file"] == "mosquitto.db"
    assert settings["use_username_as_clientid"] == "true"
    assert settings["allow_anonymous"] == "false"
    assert "pattern" not in settings  # a pattern applies to every class
