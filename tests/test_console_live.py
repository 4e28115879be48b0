"""The console's live status against a real mosquitto running the production config (TLS,
one credential per client, the ACL), over a real archive on SQLite and on PostgreSQL, with
the console served by uvicorn and its event stream read as a browser's EventSource reads
it: a camera's signed status and stoppage alert arrive verified as ``bodycam-supervisor``
verifies them (a forged one flagged with the reason), and acknowledging one from the page
sends the camera the acknowledgement. Who may watch and acknowledge as archive/policy.py
says (refusals audited); forged forms and alerts never shown acknowledge nothing."""

from __future__ import annotations

import argparse
import html
import json
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from conftest import ProductionBroker
from corekit import PW, World, build_world, make_archive, staff
from paho.mqtt.enums import CallbackAPIVersion
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import csrf_of

from archive.service import Archive
from archive.web.app import create_app
from archive.web.live_options import feed_from_args
from evidence.clock import SystemClock, format_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.unitkey import show_fingerprint
from simulator.unit import unit_key
from wire.ack import Ack, parse_ack_payload
from wire.message import sign_status
from wire.topics import ack_topic, alert_topic, status_topic

UNIT = "unit-1"
ROLES = {"sun": "supervisor", "zhao": "head", "qian": "auditor", "li": "officer"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, SystemClock())  # the broker's time
    staff(archive, ROLES)
    yield archive
    archive.close()


@pytest.fixture
def broker(tmp_path: Path):
    b = ProductionBroker(tmp_path / "broker")
    b.issue("cam-001", "camera", UNIT)
    b.issue("console-web", "supervisor")
    b.issue("sgt-li", "supervisor")
    b.issue("cam-999", "camera", UNIT)  # let in by the broker, unknown to the registry
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Camera:
    """The camera's side of the broker: its signed status and alerts out, acks in."""

    def __init__(
        self,
        broker: ProductionBroker,
        world: World,
        tmp: Path,
        device: str = "cam-001",
        identity: DeviceIdentity | None = None,
    ) -> None:
        self.device = device
        self.identity = identity or DeviceIdentity.load(world.tmp / f"{device}-key" / "device.key")
        self.journal = Journal(tmp / device / "journal.jsonl", self.identity)
        self.acks: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
        self.client.tls_set(ca_certs=str(broker.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.client.username_pw_set(device, broker.password(device))
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(ack_topic(UNIT, device), 1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.acks.put(parse_ack_payload(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def status(self, state: str) -> None:
        message = sign_status(
            self.identity,
            utc=format_utc(time.time_ns()),
            online=True,
            state=state,
            head=(self.journal.next_seq - 1, "0" * 64) if self.journal.next_seq else None,
            battery=71,
        )
        self.publish(status_topic(UNIT, self.device), message.to_bytes(), retain=True)

    def stoppage(self, reason: str, detail: str):
        record = self.journal.append("stoppage", {"reason": reason, "detail": detail})
        self.publish(alert_topic(UNIT, self.device), record.to_bytes())
        return record

    def replay(self):
        """A record at a seq already shown, with other content, under the real key."""
        other = Journal(self.journal.path.parent / "replay.jsonl", self.identity)
        record = other.append("stoppage", {"reason": "weather", "detail": "said again"})
        self.publish(alert_topic(UNIT, self.device), record.to_bytes())
        other.close()
        return record

    def forged(self):
        """A stoppage alert under the camera's name, signed by another key."""
        other = Journal(
            self.journal.path.parent / "forger.jsonl", DeviceIdentity.generate("cam-001")
        )
        record = other.append("stoppage", {"reason": "weather", "detail": "forged"})
        self.publish(alert_topic(UNIT, "cam-001"), record.to_bytes())
        other.close()
        return record

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.journal.close()


class Console:
    """``bodycam-archive serve --mqtt ...`` in this process: uvicorn on a free port, the
    live feed from serve's own options, and browsers as httpx clients."""

    def __init__(self, arch: Archive, broker: ProductionBroker, world: World) -> None:
        args = argparse.Namespace(
            mqtt=f"{broker.host}:{broker.port}",
            mqtt_ca_file=str(broker.ca_file),
            mqtt_insecure=False,
            mqtt_username="console-web",
            mqtt_password_file=str(broker.workdir / "console-web.pw"),
            unit_key=[show_fingerprint(unit_key(world.tmp).fingerprint)],
            console_key="",
        )
        self.app = create_app(arch, secure_cookies=False)
        self.feed = self.app.state.live = feed_from_args(args, arch)
        self.feed.start()
        assert self.feed.watcher.subscribed.wait(10), self.feed.watcher.connect_error
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def browser(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=20)
        form = c.get("/login")
        done = c.post(
            "/login", data={"name": name, "password": PW, "csrf": csrf_of(form.text), "next": "/"}
        )
        assert done.status_code == 303, done.text[:400]
        return c

    def close(self) -> None:
        self.feed.stop()
        self.server.should_exit = True
        self.thread.join(10)


class Stream:
    """An event stream read as EventSource reads it, in a thread: events in order."""

    def __init__(self, browser: httpx.Client, after: int = 0) -> None:
        self.events: list[tuple[str, str, dict]] = []
        self.cond = threading.Condition()
        self.status = 0
        self.thread = threading.Thread(target=self._read, args=(browser, after), daemon=True)
        self.thread.start()

    def _read(self, browser: httpx.Client, after: int) -> None:
        with browser.stream("GET", "/live/events", params={"after": after}, timeout=None) as r:
            self.status = r.status_code
            fields: dict[str, str] = {}
            for line in r.iter_lines():
                if line == "":
                    if "data" in fields:
                        with self.cond:
                            self.events.append(
                                (fields.get("id", ""), fields["event"], json.loads(fields["data"]))
                            )
                            self.cond.notify_all()
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    fields[key] = value

    def wait_for(self, predicate, what: str, timeout: float = 20) -> dict:
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((e for e in self.events if predicate(e)), None), timeout
            )
            assert found, f"no {what} among {self.events}"
            return found[2]


@pytest.fixture
def console(arch: Archive, broker: ProductionBroker, world: World):
    c = Console(arch, broker, world)
    yield c
    c.close()


def audit(arch: Archive, kind: str) -> list[dict]:
    return [r.body for r in arch.audit.records() if r.kind == kind]


def test_alerts_arrive_verified_and_are_acknowledged_from_the_page(
    arch: Archive, broker: ProductionBroker, world: World, console: Console, tmp_path: Path
) -> None:
    camera = Camera(broker, world, tmp_path)
    try:
        sun = console.browser("sun")
        stream = Stream(sun)
        camera.status("recording")
        status = stream.wait_for(lambda e: e[1] == "status", "status event")
        assert status["device"] == "cam-001" and status["online"] and status["officer"] == "A1024"
        assert status["text"] == "recording started"
        alert = camera.stoppage("weather", "雨水遮挡镜头 rain on the lens")
        got = stream.wait_for(lambda e: e[1] == "alert" and e[2]["genuine"], "a verified alert")
        assert (got["device"], got["seq"], got["kind"]) == ("cam-001", alert.seq, "stoppage")
        assert got["verdict"] == "verified" and "rain on the lens" in got["detail"]
        camera.forged()
        flagged = stream.wait_for(lambda e: e[1] == "alert" and not e[2]["genuine"], "a forgery")
        assert flagged["verdict"] == "forged" and "signature" in flagged["problem"]
        assert not flagged["ackable"]
        # The page, as rendered now: both alerts, an acknowledge button for the genuine one.
        page = sun.get("/live")
        assert page.status_code == 200 and "雨水遮挡镜头" in page.text and "伪造" in page.text
        assert page.text.count('action="/live/ack"') == 1
        assert "/live/live.js" in page.text
        labels = re.search(r"data-labels='([^']*)'", page.text).group(1)
        assert json.loads(html.unescape(labels))["live.ack"] == "确认"  # what live.js reads
        script = sun.get("/live/live.js")
        assert script.status_code == 200 and "EventSource" in script.text
        # Acknowledge it: the camera gets the acknowledgement, signed by who pressed it.
        done = sun.post(
            "/live/ack",
            data={"csrf": csrf_of(page.text), "device": "cam-001", "seq": str(alert.seq)},
        )
        assert done.status_code == 303, done.text[:600]
        ack = camera.acks.get(timeout=10)
        assert isinstance(ack, Ack) and (ack.alert_seq, ack.by) == (alert.seq, "sun")
        acked = stream.wait_for(lambda e: e[1] == "ack", "the ack event")
        assert (acked["device"], acked["seq"], acked["by"]) == ("cam-001", alert.seq, "sun")
        assert "sun 已确认" in sun.get("/live").text
        entries = audit(arch, "acknowledge")
        assert [(e["user"], e["target"]) for e in entries] == [
            ("sun", f"alert cam-001#{alert.seq}")
        ]
        # A page opened later gets what it missed, from the event it names.
        later = Stream(sun, after=0)
        later.wait_for(lambda e: e[1] == "ack", "the replayed ack")
        # Reloaded after a restart, the console still knows what it has shown.
        assert json.loads((arch.folder / "live-state.json").read_text())["devices"]["cam-001"]
    finally:
        camera.close()


def test_who_may_watch_and_acknowledge_and_what_is_never_acknowledged(
    arch: Archive, broker: ProductionBroker, world: World, console: Console, tmp_path: Path
) -> None:
    camera = Camera(broker, world, tmp_path)
    try:
        sun = console.browser("sun")
        stream = Stream(sun)
        alert = camera.stoppage("device", "传感器故障 sensor fault")
        stream.wait_for(lambda e: e[1] == "alert" and e[2]["genuine"], "a verified alert")
        forged = camera.forged()
        stream.wait_for(lambda e: e[1] == "alert" and not e[2]["genuine"], "a forgery")
        # The officer may not watch; the auditor may watch but not acknowledge.
        li = console.browser("li")
        before = len(audit(arch, "refusal"))
        refused = li.get("/live")
        assert refused.status_code == 403 and "may not report" in refused.text
        assert li.get("/live/events").status_code == 403
        qian = console.browser("qian")
        page = qian.get("/live")
        assert page.status_code == 200 and 'action="/live/ack"' not in page.text
        done = qian.post(
            "/live/ack", data={"csrf": csrf_of(page.text), "device": "cam-001", "seq": alert.seq}
        )
        assert done.status_code == 403 and "may not acknowledge" in done.text
        got = [(r["user"], r["detail"]["action"]) for r in audit(arch, "refusal")[before:]]
        assert got == [("li", "report"), ("li", "report"), ("qian", "acknowledge")]
        # Forged forms, an alert never shown (the forgery's seq, another number), bad input:
        # nothing is sent to the camera, nothing acknowledged.
        token = csrf_of(sun.get("/live").text)
        for data, status, words in (
            ({"device": "cam-001", "seq": alert.seq}, 403, "CSRF"),
            ({"csrf": "forged", "device": "cam-001", "seq": alert.seq}, 403, "CSRF"),
            (
                {"csrf": token, "device": "cam-001", "seq": forged.seq + 50},
                400,
                "not acknowledging",
            ),
            ({"csrf": token, "device": "cam-404", "seq": alert.seq}, 400, "not acknowledging"),
            ({"csrf": token, "device": "cam-001", "seq": "-1"}, 400, "whole number"),
        ):
            done = sun.post("/live/ack", data=data)
            assert done.status_code == status and words in done.text, (data, done.text[:500])
            assert "Traceback" not in done.text
        assert camera.acks.empty()
        assert audit(arch, "acknowledge") == []
        # A logout ends the auditor's open stream: no later alert reaches it.
        watching = Stream(qian)
        watching.wait_for(lambda e: e[1] == "alert", "the replayed alerts")
        assert qian.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 200
        later = camera.stoppage("weather", "after the logout")
        stream.wait_for(lambda e: e[1] == "alert" and e[2]["seq"] == later.seq, "the new alert")
        watching.thread.join(20)
        assert not watching.thread.is_alive()
        assert all(e[2].get("seq") != later.seq for e in watching.events)
        # The head may acknowledge.
        zhao = console.browser("zhao")
        page = zhao.get("/live")
        done = zhao.post(
            "/live/ack", data={"csrf": csrf_of(page.text), "device": "cam-001", "seq": alert.seq}
        )
        assert done.status_code == 303
        assert camera.acks.get(timeout=10).by == "zhao"
    finally:
        camera.close()


def test_the_console_and_bodycam_supervisor_give_the_same_verdicts(
    arch: Archive, broker: ProductionBroker, world: World, console: Console, tmp_path: Path
) -> None:
    """One stream of alerts, two readers: ``bodycam-supervisor watch --json`` (a real
    process) and the console's event stream, each with its own credential. Genuine,
    replayed, forged and unregistered alerts get the very same verdicts and reasons."""
    fp = show_fingerprint(unit_key(world.tmp).fingerprint)
    config = tmp_path / "supervisor.toml"
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    setup = subprocess.run(
        [sys.executable, "-m", "supervisor", "setup", "--registry", str(world.store / "registry.json"),
         "--unit-key", fp, "--config", str(config), "--name", "sgt-li",
         "--host", broker.host, "--port", str(broker.port), "--ca-file", str(broker.ca_file),
         "--username", "sgt-li", "--password-file", str(broker.workdir / "sgt-li.pw")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    watch = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "watch", "--config", str(config),
         "--state", str(tmp_path / "seen.json"), "--json", "--count", "5", "--timeout", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    camera = Camera(broker, world, tmp_path)
    stranger = Camera(broker, world, tmp_path, "cam-999", DeviceIdentity.generate("cam-999"))
    try:
        for line in watch.stderr:  # subscribed: nothing published from here on is missed
            if "waiting for alerts" in line:
                break
        sun = console.browser("sun")
        stream = Stream(sun)
        camera.stoppage("weather", "雨 rain")
        camera.stoppage("camera", "no frames")
        camera.replay()
        camera.forged()
        stranger.stoppage("weather", "not ours")
        out, err = watch.communicate(timeout=120)
        assert watch.returncode == 0, err[-2000:]
        supervisor = sorted(
            (d["verdict"], d["device"], d["seq"], d["kind"], d["problem"])
            for d in map(json.loads, out.splitlines())
        )
        with stream.cond:
            assert stream.cond.wait_for(
                lambda: sum(e[1] == "alert" for e in stream.events) >= 5, 30
            ), stream.events
            ours = sorted(
                (d["verdict"], d["device"], d["seq"], d["kind"], d["problem"])
                for _, kind, d in stream.events
                if kind == "alert"
            )
        assert ours == supervisor
        assert [v for v, *_ in ours].count("verified") == 2
        assert {v for v, *_ in ours} == {"verified", "replay", "forged", "unknown-device"}
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
        camera.close()
        stranger.close()


def test_without_a_broker_the_page_says_live_status_is_off(arch: Archive) -> None:
    from webkit import logged_in

    sun = logged_in(arch, "sun", PW)
    page = sun.get("/live")
    assert page.status_code == 200 and "--mqtt" in page.text
    assert sun.get("/live/events").status_code == 400


def test_serve_refuses_live_options_that_cannot_work(arch: Archive, tmp_path: Path) -> None:
    from archive.exc import ArchiveError

    base = {
        "mqtt": "127.0.0.1:1",
        "mqtt_ca_file": "",
        "mqtt_insecure": True,
        "mqtt_username": "",
        "mqtt_password_file": "",
        "unit_key": [],
        "console_key": "",
    }
    for change, words in (
        ({"mqtt": "nohost"}, "HOST:PORT"),
        ({}, "--unit-key"),
        ({"unit_key": ["00" * 32]}, "not a trusted unit key"),
    ):
        with pytest.raises(ArchiveError, match=words):
            feed_from_args(argparse.Namespace(**(base | change)), arch)
    assert feed_from_args(argparse.Namespace(**(base | {"mqtt": ""})), arch) is None
