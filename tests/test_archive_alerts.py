"""The 30-day alerts over a real mosquitto, on both database backends: each open case gets
its day-25 and its day-30 alert once, signed by the archive's key; closed cases none."""

from __future__ import annotations

import queue
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.alerts import ArchiveAlert, CaseAlerter, archive_alert_topic, due
from evidence.clock import format_utc
from evidence.exc import SignatureError
from evidence.identity import DeviceIdentity
from simulator.clock import SimClock
from wire.broker import ConnectionSettings


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


def test_the_decision_alone() -> None:
    now = START + 100 * DAY
    rows = [
        {"number": n, "status": s, "alerted_days": a}
        for n, s, a in [("a", "open", 0), ("b", "open", 0), ("c", "open", 25), ("d", "closed", 0),
                        ("e", "open", 30), ("f", "open", 0)]
    ]  # fmt: skip
    deadlines = {
        "a": format_utc(now + 10 * DAY),  # day 20: nothing yet
        "b": format_utc(now + 4 * DAY),  # day 26: due soon
        "c": format_utc(now - 1),  # day 30, the first alert sent: overdue now
        "d": format_utc(now - DAY),  # closed: never
        "e": format_utc(now - DAY),  # both sent
        "f": None,  # no act end known
    }
    assert [(d.number, d.day) for d in due(rows, deadlines, now)] == [("b", 25), ("c", 30)]


def test_alerts_reach_the_broker_once_each_and_verify(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
    broker,
) -> None:
    now = START + 60 * DAY
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(now))
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    sub.on_message = lambda c, u, m: got.put((m.topic, bytes(m.payload)))
    sub.connect(broker.host, broker.port)
    sub.subscribe("bodycam/+/archive/+/alert", qos=1)
    sub.loop_start()
    alerter = CaseAlerter(
        arch, ConnectionSettings(broker.host, broker.port, insecure=True), "unit-1"
    )
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        wang = arch.login("wang", PW)
        numbers = {
            age: arch.open_case(
                wang, f"act {age}", "traffic", [], [], "internal", format_utc(now - age * DAY)
            )
            for age in (3, 26, 31, 40)
        }
        arch.close_case(wang, numbers[40])
        alerter.start()
        assert alerter.connected.wait(10)
        first = alerter.check(now)
        assert sorted((b["case"], b["level"]) for b in first) == [
            (numbers[26], "due_soon"),
            (numbers[31], "overdue"),
        ]
        assert alerter.check(now) == []  # once each
        later = alerter.check(now + 5 * DAY)
        assert [(b["case"], b["day"]) for b in later] == [(numbers[26], 30)]
        messages = [got.get(timeout=10) for _ in range(3)]
        for topic, payload in messages:
            assert topic == archive_alert_topic("unit-1", "archive-1")
            msg = ArchiveAlert.from_bytes(payload)
            msg.verify(arch.identity.public_key_hex)
            with pytest.raises(SignatureError):
                msg.verify(DeviceIdentity.generate("other").public_key_hex)
            assert msg.kind == "archive_alert" and msg.device == "archive-1"
        assert got.empty()
        alerts = [r for r in arch.audit.records() if r.body["detail"].get("event") == "alert"]
        assert len(alerts) == 3 and all(r.body["user"] == "system" for r in alerts)
    finally:
        alerter.stop()
        sub.loop_stop()
        sub.disconnect()
        arch.close()
