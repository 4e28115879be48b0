"""What a supervisor meets at the console: set-up, the first line, a broker that is not
there, an ack for nothing, a fast simulated clock, and status lines. Each test runs the
real command and checks its exit status and the line it prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port
from test_alerts_receipts import camera_settings, make_unit

from alerting.watch import describe_status
from evidence.journal import Journal
from evidence.registry import Registry
from firmware.mqtt import AlertLink
from simulator.clock import SimClock

PROG = "bodycam-supervisor"
ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout)


def wait_for_port(port: int, timeout: float = 10) -> None:
    """Until something accepts connections on 127.0.0.1:port (a broker just started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            threading.Event().wait(0.05)


def flags(broker, registry: Path, state: Path) -> list[str]:
    return [
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--insecure",
        "--registry",
        str(registry),
        "--state",
        str(state),
    ]


class Watch:
    """A live `bodycam-supervisor watch` process; its stdout lines as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [tool(PROG), "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 20) -> str:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(text in x for x in self.lines), timeout)
            assert ok, f"no line with {text!r} in {self.lines}"
            return next(x for x in self.lines if text in x)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def test_watch_says_it_is_connected_and_waiting(broker, registry_file, tmp_path):
    done = run(
        tool(PROG), "watch", "--timeout", "0.5", *flags(broker, registry_file, tmp_path / "s")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"connected to {broker.host}:{broker.port}, waiting for alerts"
    )


def test_watch_exits_2_with_one_line_when_the_broker_is_unreachable(registry_file, tmp_path):
    port = free_port()  # nothing listens there
    start = time.monotonic()
    done = run(
        tool(PROG), "watch", "--host", "127.0.0.1", "--port", str(port), "--insecure", "--registry",
        str(registry_file), "--state", str(tmp_path / "s"),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{PROG}: error: cannot reach the broker at 127.0.0.1:{port} "
        "(connection refused or host unreachable)"
    ]
    assert done.stdout == "" and time.monotonic() - start < 10


def test_ack_for_an_alert_that_was_never_shown_says_so(broker, registry_file, tmp_path):
    done = run(
        tool(PROG), "ack", "cam-test", "9999", "--by", "sgt-li",
        *flags(broker, registry_file, tmp_path / "s"),
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"{PROG}: error: no alert #9999 of cam-test has been shown on this console; "
        "not acknowledging"
    )
    assert "acknowledged" not in done.stdout


def test_watch_without_a_registry_says_what_to_run(tmp_path):
    done = run(tool(PROG), "watch", "--registry", str(tmp_path / "registry.json"))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert f"no registry at {tmp_path / 'registry.json'}" in line
    assert "'bodycam-supervisor setup --registry FILE --unit-key FINGERPRINT'" in line
    # ... and that command is in the --help.
    helptext = run(tool(PROG), "--help").stdout + run(tool(PROG), "setup", "--help").stdout
    assert "setup" in helptext and "--unit-key FINGERPRINT" in helptext


def test_setup_trusts_the_registry_makes_the_key_and_watch_then_needs_no_flags(broker, tmp_path):
    unit = tmp_path / "unit"
    unit.mkdir()
    init = run(
        tool("bodycam-unit"), "--key", str(unit / "unit.key"), "--registry",
        str(unit / "registry.json"), "init", "--unit", "unit-1", "--no-passphrase",
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    fingerprint = init.stdout.splitlines()[-1].strip()
    config = tmp_path / "console" / "supervisor.toml"
    setup = [tool(PROG), "setup", "--registry", str(unit / "registry.json"), "--config"]
    setup += [str(config), "--name", "sgt-li", "--host", broker.host, "--port", str(broker.port)]
    setup += ["--insecure"]
    # The wrong fingerprint is refused, and nothing is written.
    wrong = run(*setup, "--unit-key", "ab" * 32)
    assert wrong.returncode == 2 and "not a trusted unit key" in wrong.stderr
    assert not config.exists()
    done = run(*setup, "--unit-key", fingerprint)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "then run: bodycam-supervisor watch"
    register = lines[-2].split()
    assert register[:3] == ["bodycam-unit", "add-console", "console-sgt-li"]
    assert (config.parent / "console.key").stat().st_mode & 0o077 == 0
    # The head of unit runs the printed command; the console is then in the registry.
    added = run(
        tool("bodycam-unit"), "--key", str(unit / "unit.key"), "--registry",
        str(unit / "registry.json"), *register[1:],
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert list(Registry.load(unit / "registry.json").console_keys()) == ["console-sgt-li"]
    again = run(*setup, "--unit-key", fingerprint)  # rerun: keeps the key, says registered
    assert "console key" in again.stdout and "kept" in again.stdout
    assert "this console is registered: cameras honour its receipts" in again.stdout
    watched = run(
        tool(PROG), "watch", "--config", str(config), "--state", str(tmp_path / "s"),
        "--timeout", "0.5",
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.splitlines() == [
        f"connected to {broker.host}:{broker.port}, waiting for alerts"
    ]


def test_a_fast_simulated_clock_does_not_read_as_a_fault(broker, tmp_path):
    unit = make_unit(tmp_path / "unit")
    state = tmp_path / "seen.json"
    watch = Watch("--config", str(unit.supervisor_config(broker, state)))
    # A simulated camera whose clock runs 600 times faster than real time.
    clock = SimClock(time.time_ns(), speed=600.0)
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera, clock=clock)
    link = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
    try:
        watch.wait_for("waiting for alerts")
        link.start()
        assert link.wait_connected(10)
        time.sleep(1.0)  # ten simulated minutes
        journal.append("stoppage", {"reason": "weather", "detail": "rain"})
        time.sleep(0.5)
        journal.append("resumed", {"reason": "weather"})
        first = watch.wait_for("STOPPAGE weather")
        second = watch.wait_for("RESUMED")
        assert link.wait_idle(10)
    finally:
        link.stop()
        assert watch.stop() == 0
    for line in (first, second):
        assert "device clock ahead" not in line and " ago  [verified #" in line
    notes = [x for x in watch.lines if "its clock reads" in x]
    assert len(notes) == 1 and notes[0].startswith("-- cam-0001: its clock reads ")
    assert "ahead of this console's" in notes[0]


def test_status_lines_for_recording_started_dock_finished_and_shift_ended(broker, tmp_path):
    unit = make_unit(tmp_path / "unit")
    watch = Watch("--config", str(unit.supervisor_config(broker, tmp_path / "seen.json")))
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera)
    state = ["ready"]
    link = AlertLink(
        journal,
        camera_settings(broker),
        consoles=unit.consoles,
        status_source=lambda: (state[0], 80),
    )
    try:
        watch.wait_for("waiting for alerts")
        link.start()
        watch.wait_for("cam-0001 (A1024)  online, ready")
        state[0] = "recording"
        journal.append("recording_started", {"pre_event_s": 30})
        watch.wait_for("cam-0001 (A1024)  recording started")
        state[0] = "ready"
        journal.append("recording_stopped", {"reason": "button"})
        # The indicator turns "ready" before the stop is journaled: a periodic status in
        # between says it first, with the state it left for; either way, one line.
        assert re.search(
            r"\(A1024\)  recording stopped( \(ready\))?$", watch.wait_for("recording stopped")
        )
        # The dock's receipt for the media, as the camera journals it.
        journal.append("receipt", {"dock": "dock-1", "upto_seq": 2, "upto_hash": "0" * 64})
        watch.wait_for("cam-0001 (A1024)  dock finished")
        link.stop()  # the camera is switched off at the end of the shift
        watch.wait_for("cam-0001 (A1024)  shift ended (camera switched off)")
    finally:
        link.stop()
        assert watch.stop() == 0
    status = [x for x in watch.lines if x.startswith("-- ")]
    assert len(status) == 5, status  # each once, none of them an alert line
    assert not any("[verified" in x or x.startswith("!!") for x in watch.lines)


def test_watch_takes_a_new_registry_edition_without_a_restart(broker, tmp_path):
    """Started before the camera was registered (as before a simulated shift has added
    its camera), the watch verifies the camera's alert once the new edition is written."""
    unit = make_unit(tmp_path / "unit")
    registry = Registry.load(unit.registry)
    camera = registry.get("cam-0001")
    empty = Registry(consoles={c.console_id: c for c in registry.consoles()})
    empty.save_signed(unit.registry, unit.key, "2026-12-03T08:00:00.000000Z")
    watch = Watch("--config", str(unit.supervisor_config(broker, tmp_path / "seen.json")))
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera)
    link = AlertLink(journal, camera_settings(broker), consoles=unit.consoles)
    try:
        watch.wait_for("waiting for alerts")
        link.start()
        assert link.wait_connected(10)
        journal.append("stoppage", {"reason": "weather", "detail": "before"})
        watch.wait_for("NOT GENUINE unknown-device")
        empty.add(camera)
        empty.save_signed(unit.registry, unit.key, "2026-12-03T08:01:00.000000Z")
        # The camera resends (no registered console has receipted it): now verified.
        line = watch.wait_for("[verified #")
        assert "cam-0001 (A1024)  STOPPAGE weather: before" in line
        assert link.wait_idle(15)
    finally:
        link.stop()
        assert watch.stop() == 0


def test_a_camera_registered_just_before_it_connects_is_verified_from_its_first_word(
    broker, tmp_path
):
    """A simulated shift writes its registry edition and connects within milliseconds,
    well inside the watch's half-second look at the file: the camera's first status and
    first alert are judged on the new edition, not shown as an unknown camera's."""
    unit = make_unit(tmp_path / "unit")
    registry = Registry.load(unit.registry)
    camera = registry.get("cam-0001")
    empty = Registry(consoles={c.console_id: c for c in registry.consoles()})
    empty.save_signed(unit.registry, unit.key, "2026-12-03T08:00:00.000000Z")
    watch = Watch("--config", str(unit.supervisor_config(broker, tmp_path / "seen.json")))
    journal = Journal(tmp_path / "dev" / "journal.jsonl", unit.camera)
    # No console receipts (as in a simulated shift): an alert judged wrongly is not resent.
    link = AlertLink(journal, camera_settings(broker), consoles={},
                     status_source=lambda: ("ready", 80))  # fmt: skip
    try:
        watch.wait_for("waiting for alerts")
        empty.add(camera)
        empty.save_signed(unit.registry, unit.key, "2026-12-03T08:01:00.000000Z")
        link.start()
        journal.append("stoppage", {"reason": "weather", "detail": "first"})
        line = watch.wait_for("STOPPAGE weather")
        assert link.wait_idle(10)
        watch.wait_for("cam-0001 (A1024)  online, ready")
    finally:
        link.stop()
        code = watch.stop()
    assert code == 0
    assert "[verified #" in line
    assert not any(x.startswith("!!") for x in watch.lines), watch.lines
    assert "not in the registry" not in watch.proc.stderr.read()


def _doc_commands() -> list[str]:
    """The command lines of docs/alerts.md, "Watching a simulated shift"."""
    text = (ROOT / "docs" / "alerts.md").read_text()
    section = text.split("\n### Watching a simulated shift\n", 1)[1].split("\n#", 1)[0]
    return [line[4:] for line in section.splitlines() if line.startswith("    ")]


@pytest.mark.slow
def test_the_documented_console_for_a_simulated_shift_shows_its_whole_story(tmp_path):
    """docs/alerts.md's lines, run as written (DIR, the port and FINGERPRINT filled in):
    the supervisor is set up before any shift, and sees the shift from recording started
    to dock finished and shift ended, every alert verified."""
    commands = _doc_commands()
    assert [c.split()[0] for c in commands] == [
        "mosquitto", ".venv/bin/bodycam-unit", ".venv/bin/bodycam-supervisor",
        ".venv/bin/bodycam-supervisor", ".venv/bin/bodycam-sim",
    ]  # fmt: skip
    port, shift = str(free_port()), tmp_path / "shift"
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_STATE_HOME": str(home / ".local/state")}  # fmt: skip
    env.pop("BODYCAM_LOG_FORMAT", None)
    background: list[subprocess.Popen] = []
    watch: Watch | None = None
    fingerprint = ""
    try:
        for line in commands:
            argv = line.rstrip(" &").replace("1884", port).replace("DIR", str(shift))
            argv = argv.replace("FINGERPRINT", fingerprint).split()
            if argv[0].startswith(".venv/bin/"):
                argv[0] = tool(argv[0].removeprefix(".venv/bin/"))
            if argv[0] == "mosquitto":
                argv[0] = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
                background.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, env=env))  # fmt: skip
                wait_for_port(int(port))
            elif line.endswith("&"):  # the watch
                watch = Watch(*argv[2:], env=env)
                watch.wait_for("waiting for alerts")
            else:
                done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT,
                                      timeout=300)  # fmt: skip
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                if "init" in argv:
                    fingerprint = done.stdout.splitlines()[-1].replace(" ", "")
                    assert len(fingerprint) == 64, done.stdout
        assert watch is not None
        device = json.loads((shift / "summary.json").read_text())["device"]
        watch.wait_for(f"{device} (A1024)  shift ended (camera switched off)", timeout=30)
    finally:
        code = watch.stop() if watch is not None else 0
        for proc in background:
            proc.terminate()
            proc.wait(10)
    assert code == 0
    story = [x.split("  ", 2)[-1] for x in watch.lines if x.startswith("-- 2")]
    assert story[:2] == ["online, ready", "recording started"], story
    recordings = json.loads((shift / "summary.json").read_text())["recordings"]
    # One stop line a recording, whichever status got out first ("recording stopped" after
    # the stop's event status, "recording stopped (ready)" after a periodic one).
    said = [x.split(" (")[0] for x in story]
    assert said.count("recording started") == said.count("recording stopped") == recordings
    assert story[-2:] == ["dock finished (the dock has receipted its media)",
                          "shift ended (camera switched off)"]  # fmt: skip
    alerts = [x for x in watch.lines if "STOPPAGE" in x or "RESUMED" in x]
    assert len(alerts) == 10 and all("[verified #" in x for x in alerts), watch.lines
    assert not any(x.startswith("!!") or "clock ahead" in x for x in watch.lines)
    assert "not in the registry" not in watch.proc.stderr.read()


def test_watch_logs_for_people_and_json_lines_when_asked(broker, registry_file, tmp_path):
    args = [tool(PROG), "watch", "-v", "--timeout", "0.5",
            *flags(broker, registry_file, tmp_path / "s")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "BODYCAM_LOG_FORMAT"}
    text = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert text.returncode == 0, text.stderr
    assert f"INFO alerting.watch: connected to {broker.host}:{broker.port}" in text.stderr
    assert "{'" not in text.stderr
    env["BODYCAM_LOG_FORMAT"] = "json"
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert {"level": "info", "logger": "alerting.watch",
            "message": f"connected to {broker.host}:{broker.port}"}.items() <= next(
        r for r in lines if r["logger"] == "alerting.watch").items()  # fmt: skip
    assert any(r["level"] == "debug" for r in lines)  # -v
    # What the supervisor reads stays a line for people (--json asks for JSON there).
    assert done.stdout.splitlines()[0] == (
        f"connected to {broker.host}:{broker.port}, waiting for alerts"
    )


@pytest.mark.parametrize(
    "states",
    [
        # The stop's event status first, then the indicator's own state.
        ["ready", "recording", "recording_stopped", "ready"],
        # A periodic status with the indicator's new state got out before the event's.
        ["ready", "recording", "ready", "recording_stopped", "ready"],
        # A stoppage ended the recording; its stop event follows.
        ["ready", "recording", "stoppage", "recording_stopped", "ready"],
    ],
)
def test_one_recording_gives_one_started_and_one_stopped_line(states):
    lines, previous = [], None
    for state in states:
        line = describe_status(previous, True, state)
        previous = (True, state)
        if line:
            lines.append(line)
    assert lines[0] == "online, ready"
    assert [x.split(" (")[0] for x in lines[1:]] == ["recording started", "recording stopped"]


def test_a_stop_seen_first_after_a_restart_or_offline_is_shown():
    assert describe_status(None, True, "recording_stopped") == "recording stopped"
    assert describe_status((False, "connection_lost"), True, "recording_stopped") == (
        "recording stopped"
    )
