"""The archive's 30-day alerts on the supervisor's console: judged exactly as a dock's
(signed by a key of the registry's ``archives``, fresh, shown once), shown zh-CN first;
forged and unregistered ones refused with the reason. End to end over a real mosquitto
running the production config (TLS, passwords and the ACL of scripts/issue-broker-credential,
whose ``archive`` class may write its own alert topic and whose supervisors may read every
archive's): an archive with a case at day 25 and one at day 30, ``bodycam-archive alerts``
in a real process, and a running ``bodycam-supervisor watch`` that shows both, verified."""

from __future__ import annotations

import json
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import ProductionBroker
from corekit import DAY, PW, World, build_world, copy_world, make_archive, register_archive
from paho.mqtt.enums import CallbackAPIVersion
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from alerting.judge import AlertJudge, SeenState
from archive.signed import ArchiveAlert
from evidence.canonical import canonical_bytes
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.registry import ArchiveEntry, DeviceEntry, DockEntry, Registry
from simulator.clock import SimClock
from supervisor.console import format_json, format_line
from wire.topics import archive_alert_topic

UNIT = "unit-1"
TOPIC = archive_alert_topic(UNIT, "archive-1")


def body(level: str = "due_soon", day: int = 25, case: str = "2026-0001") -> dict:
    return {
        "level": level,
        "case": case,
        "day": day,
        "deadline_utc": "2026-12-29T08:00:00.000000Z",
        "text": f"case {case}: day {day} of 30; it must be archived by 2026-12-29",
    }


def now_utc(offset_s: float = 0.0) -> str:
    return format_utc(time.time_ns() + int(offset_s * 1e9))


@pytest.fixture
def keys() -> dict[str, DeviceIdentity]:
    return {n: DeviceIdentity.generate(n) for n in ("archive-1", "dock-1", "cam-1")}


@pytest.fixture
def judge(keys) -> AlertJudge:
    registry = Registry()
    registry.add(DeviceEntry("cam-1", keys["cam-1"].public_key_hex, "A1024", UNIT))
    registry.add_dock(DockEntry("dock-1", keys["dock-1"].public_key_hex, UNIT))
    registry.add_archive(ArchiveEntry("archive-1", keys["archive-1"].public_key_hex, UNIT))
    return AlertJudge(registry, SeenState())


def test_a_genuine_archive_alert_is_verified_shown_once_and_reads_in_chinese_first(judge, keys):
    msg = ArchiveAlert.sign(keys["archive-1"], now_utc(), body())
    v = judge.alert(TOPIC, msg.to_bytes())
    assert v.genuine, (v.verdict, v.problem)
    line = format_line(v, time.time_ns())
    assert line.startswith(msg.utc[:10]) and "archive-1 (archive 档案系统)" in line
    assert "案卷即将到期 CASE DUE SOON: 案卷 2026-0001 第 25/30 天" in line
    assert "须于 2026-12-29 08:00Z 前归档" in line and line.endswith("[verified]")
    data = json.loads(format_json(v, time.time_ns()))
    assert data["genuine"] and data["kind"] == "archive_alert" and "案卷即将到期" in data["text"]
    assert judge.alert(TOPIC, msg.to_bytes()).verdict == "duplicate"  # QoS 1 redelivery
    late = ArchiveAlert.sign(keys["archive-1"], now_utc(), body("overdue", 30))
    v = judge.alert(TOPIC, late.to_bytes())
    assert v.genuine and "案卷已逾期 CASE OVERDUE" in format_line(v, time.time_ns())


def test_forged_and_unregistered_archive_alerts_are_refused_with_the_reason(judge, keys):
    def verdict(topic: str, payload: bytes) -> tuple[str, str]:
        v = judge.alert(topic, payload)
        assert not v.genuine and format_line(v, time.time_ns()).startswith("!! ")
        return v.verdict, v.problem

    genuine = ArchiveAlert.sign(keys["archive-1"], now_utc(), body())
    # another key under the registered archive's id
    impostor = ArchiveAlert.sign(DeviceIdentity.generate("archive-1"), now_utc(), body())
    assert verdict(TOPIC, impostor.to_bytes()) == (
        "forged",
        "signature does not verify under the archive's key",
    )
    # the body altered after signing: day 25 made day 30
    altered = {**genuine.to_dict(), "body": body("overdue", 30)}
    assert verdict(TOPIC, canonical_bytes(altered))[0] == "forged"
    # an archive the registry does not hold
    stranger = ArchiveAlert.sign(DeviceIdentity.generate("archive-9"), now_utc(), body())
    assert verdict(archive_alert_topic(UNIT, "archive-9"), stranger.to_bytes()) == (
        "unknown-device",
        "archive 'archive-9' is not in the registry",
    )
    # a dock's (or a camera's) valid key never makes an archive alert
    for name, noun in (("dock-1", "dock"), ("cam-1", "camera")):
        posing = ArchiveAlert.sign(keys[name], now_utc(), body())
        assert verdict(archive_alert_topic(UNIT, name), posing.to_bytes()) == (
            "forged",
            f"{name!r} is a {noun}, not an archive: archive alerts count only under archive keys",
        )
    # one archive cannot speak on another's topic, nor for a unit this console does not know
    assert verdict(archive_alert_topic(UNIT, "archive-2"), genuine.to_bytes())[0] == "forged"
    assert verdict(archive_alert_topic("unit-9", "archive-1"), genuine.to_bytes())[0] == (
        "wrong-unit"
    )
    # freshness, as for a dock's: an old one replayed, or one from a clock far ahead
    old = ArchiveAlert.sign(keys["archive-1"], now_utc(-8 * 86400), body())
    assert verdict(TOPIC, old.to_bytes())[0] == "stale"
    ahead = ArchiveAlert.sign(keys["archive-1"], now_utc(900), body())
    assert verdict(TOPIC, ahead.to_bytes())[0] == "stale"
    # not an archive alert at all, or one with a level that does not exist
    assert verdict(TOPIC, b"{not json")[0] == "invalid"
    odd = {**genuine.unsigned_dict(), "body": {**body(), "level": "someday"}}
    odd["sig"] = keys["archive-1"].sign(canonical_bytes(odd)).hex()
    assert verdict(TOPIC, canonical_bytes(odd)) == (
        "invalid",
        "not a signed archive alert: archive alert level must be one of due_soon, overdue: "
        "'someday'",
    )
    # none of this moved the judge: the genuine alert is still new
    assert judge.alert(TOPIC, genuine.to_bytes()).genuine


def test_a_revoked_archive_key_is_refused(judge, keys):
    judge.registry.add_archive(
        ArchiveEntry(
            "archive-1", keys["archive-1"].public_key_hex, UNIT, revoked_utc=now_utc(-3600)
        ),
        replace=True,
    )
    v = judge.alert(TOPIC, ArchiveAlert.sign(keys["archive-1"], now_utc(), body()).to_bytes())
    assert v.verdict == "revoked-key" and v.problem.startswith("archive 'archive-1': ")


# --- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory):
    b = ProductionBroker(tmp_path_factory.mktemp("prod-broker"))
    for archive in ("archive-1", "archive-x"):
        b.issue(archive, "archive")
    b.issue("sgt-li", "supervisor")
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Lines:
    """A child's output read line by line on a thread, so the test waits on a line."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            self.seen.append(line)
            if text in line:
                return line


def publish(prod: ProductionBroker, user: str, topic: str, payload: bytes) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user)
    pub.tls_set(ca_certs=str(prod.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    pub.username_pw_set(user, prod.password(user))
    pub.connect(prod.host, prod.port)
    pub.loop_start()
    try:
        pub.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_bodycam_archive_alerts_reach_a_running_supervisor_verified(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
    prod: ProductionBroker,
) -> None:
    start = time.time_ns()
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(start))
    try:
        fingerprint = register_archive(world, arch)  # the unit-signed registry's archives
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        wang = arch.login("wang", PW)
        day25, day30 = (
            arch.open_case(wang, kind, "traffic", ["张三"], [], "internal", format_utc(start - age))
            for kind, age in (("act of day 25", 25 * DAY + DAY // 2), ("act of day 30", 30 * DAY + DAY // 2))
        )  # fmt: skip
    finally:
        arch.close()
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    config = tmp_path / "supervisor.toml"
    setup = subprocess.run(
        [sys.executable, "-m", "supervisor", "setup", "--registry", str(world.store / "registry.json"),
         "--unit-key", fingerprint, "--config", str(config), "--name", "sgt-li",
         "--host", prod.host, "--port", str(prod.port), "--ca-file", str(prod.ca_file),
         "--username", "sgt-li", "--password-file", str(prod.workdir / "sgt-li.pw")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    watch = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "watch", "--config", str(config),
         "--state", str(tmp_path / "seen.json"), "--json", "--count", "4", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        said = Lines(watch.stderr)
        said.wait_for("waiting for alerts", 60)  # subscribed: nothing published is missed
        sent = subprocess.run(
            [*ARCHIVE_CLI, "--dir", str(tmp_path / "archive"), "alerts",
             "--mqtt", f"{prod.host}:{prod.port}", "--ca-file", str(prod.ca_file),
             "--password-file", str(prod.workdir / "archive-1.pw"), "--once"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert sent.returncode == 0 and "2 alerts sent" in sent.stdout, sent.stderr
        # Two forgeries: the archive's broker password without its key, and an archive the
        # broker lets in but the registry does not hold.
        for name in ("archive-1", "archive-x"):
            fake = ArchiveAlert.sign(DeviceIdentity.generate(name), now_utc(), body("overdue", 30))
            publish(prod, name, archive_alert_topic(UNIT, name), fake.to_bytes())
        out, err = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
    assert watch.returncode == 0, err
    shown = [json.loads(line) for line in out.splitlines()]
    genuine = sorted((s for s in shown if s["genuine"]), key=lambda s: s["body"]["day"])
    assert [(s["body"]["case"], s["body"]["level"], s["verdict"]) for s in genuine] == [
        (day25, "due_soon", "verified"),
        (day30, "overdue", "verified"),
    ]
    assert all(s["device"] == "archive-1" and s["kind"] == "archive_alert" for s in genuine)
    assert genuine[0]["text"].startswith(f"案卷即将到期 CASE DUE SOON: 案卷 {day25} 第 25/30 天")
    assert genuine[1]["text"].startswith(f"案卷已逾期 CASE OVERDUE: 案卷 {day30} 第 30/30 天")
    refused = sorted((s["verdict"], s["problem"]) for s in shown if not s["genuine"])
    assert refused == [
        ("forged", "signature does not verify under the archive's key"),
        ("unknown-device", "archive 'archive-x' is not in the registry"),
    ]
