"""``bodycam-sim`` as a developer meets it: on a terminal (a real pty pair), in a log,
interrupted with Ctrl-C, twice in two folders, and the log lines it writes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from alerting.judge import UNKNOWN, AlertJudge
from evidence.journal import scan_journal
from evidence.record import Record
from evidence.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SNAPSHOT = re.compile(r"simulated (\d+:\d\d:\d\d) / (\d+:\d\d:\d\d)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BODYCAM_LOG_FORMAT", "NO_COLOR")}
    env.update(TERM="xterm-256color", **extra)
    return env


class Terminal:
    """A command whose stdin, stdout and stderr are the slave of a real pty pair, and whose
    controlling terminal it is (so the byte ``\\x03`` is Ctrl-C); the test holds the
    master and reads everything the command shows."""

    def __init__(self, argv: list[str], cols: int = 200) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))

        def controlling_terminal() -> None:  # in the child, after setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_env(),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.master = master
        self.raw = bytearray()
        self.closed = False

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def read_until(self, done, timeout: float) -> bool:
        """Read what the command shows until ``done(text)`` or it hangs up (EOF)."""
        deadline = time.monotonic() + timeout
        while not done(self.text):
            if self.closed or time.monotonic() > deadline:
                return False
            ready, _, _ = select.select(
                [self.master], [], [], min(1.0, deadline - time.monotonic())
            )
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every slave fd is closed, the command is gone
                    data = b""
                if not data:
                    self.closed = True
                self.raw += data
        return True

    def finish(self, timeout: float = 180) -> int:
        self.read_until(lambda _: False, timeout)
        status = self.proc.wait(timeout=30)
        os.close(self.master)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.closed:
            os.close(self.master)
            self.closed = True


def sim(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "simulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
    )


def counts(line: str) -> tuple[int, int]:
    """(recordings, segments) from a bar snapshot or the summary's first line."""
    rec = re.search(r"(\d+) recordings?", line)
    seg = re.search(r"(\d+) segments?", line)
    return int(rec.group(1)), int(seg.group(1))


@pytest.mark.slow
def test_terminal_shows_a_moving_bar_then_the_summary_with_the_dock_line(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    term = Terminal(
        [PY, "-m", "simulator", "shift", "--out", str(out), "--duration", "20m", "--dock"]
    )
    try:
        status = term.finish()
    finally:
        term.kill()
    text = term.text
    assert status == 0, text[-2000:]
    seen = [m.group(1) for m in SNAPSHOT.finditer(text) if m.group(2) == "0:20:00"]
    assert len(set(seen)) >= 2, seen  # the bar moved
    assert seen[0] == "0:00:00" and seen[-1] == "0:20:00"
    # The per-event INFO lines give way to the bar; the stoppage warnings stay above it.
    assert "signed (" not in text and "stoppage: weather" in text
    lines = text.splitlines()
    shift = next(line for line in lines if line.startswith("shift: "))
    last_bar = [line for line in re.split(r"[\r\n]", text) if "simulated 0:20:00 / 0:20:00" in line]
    assert counts(last_bar[-1][last_bar[-1].index("simulated") :]) == counts(shift)
    dock = next(line for line in lines if line.startswith("dock: "))
    assert dock.startswith("dock: stored ") and str(out / "dock") in dock
    assert any(line.startswith("stoppages: ") for line in lines)
    nxt = next(line for line in lines if line.startswith("next: "))
    verify = subprocess.run(nxt[len("next: ") :].split(), capture_output=True, text=True, cwd=ROOT,
                            env=_env(PATH=f"{Path(PY).parent}:{os.environ['PATH']}"), timeout=120)  # fmt: skip
    assert verify.returncode == 0 and "INTACT" in verify.stdout, verify.stdout + verify.stderr


@pytest.mark.slow
def test_quiet_on_a_terminal_still_shows_the_bar_and_the_summary(tmp_path: Path) -> None:
    """-q used to mean 45 s of nothing: it quiets the log, not the bar."""
    out = tmp_path / "shift"
    term = Terminal([PY, "-m", "simulator", "shift", "--out", str(out), "--duration", "10m", "-q"])
    try:
        status = term.finish()
    finally:
        term.kill()
    text = term.text
    assert status == 0, text[-2000:]
    seen = {m.group(1) for m in SNAPSHOT.finditer(text) if m.group(2) == "0:10:00"}
    assert len(seen) >= 2 and "0:10:00" in seen, seen  # the bar moved to the end
    assert " INFO " not in text and "stoppage: weather" in text  # warnings only
    assert any(line.startswith("shift: 0.17 h simulated") for line in text.splitlines())


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_go_on(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    term = Terminal([PY, "-m", "simulator", "shift", "--out", str(out), "--duration", "8h"])
    try:
        two_segments = term.read_until(lambda t: re.search(r"\b[2-9]\d* segments", t), 180)
        assert two_segments, term.text[-2000:]
        os.write(term.master, b"\x03")  # Ctrl-C, typed on the terminal
        status = term.finish()
    finally:
        term.kill()
    assert status == 130, term.text[-2000:]
    said = [line for line in term.text.splitlines() if line.startswith("bodycam-sim: ")]
    kept = next(line for line in said if "interrupted at " in line)
    m = re.search(
        r"interrupted at (\S+) of 8:00:00 simulated: kept (\d+) recordings?, (\d+) segments?", kept
    )
    assert m, kept
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["simulated_s"] < 8 * 3600
    assert int(m.group(3)) == summary["segments"] >= 2 and str(out / "device") in kept
    hint = next(line for line in said if "to go on" in line)
    commands = re.findall(r"`([^`]+)`", hint)
    assert commands[0] == f"bodycam-sim shift --out {out}"
    assert commands[1] == f"bodycam-sim dock --out {out}"
    # What was kept is whole, and the printed commands do what they say.
    env = _env(PATH=f"{Path(PY).parent}:{os.environ['PATH']}")
    check = subprocess.run(
        commands[2].split(), capture_output=True, text=True, env=env, timeout=120
    )
    assert check.returncode == 0 and "INTACT" in check.stdout, check.stdout + check.stderr
    dock = subprocess.run(commands[1].split(), capture_output=True, text=True, env=env, timeout=120)
    assert dock.returncode == 0 and dock.stdout.startswith("dock: stored "), (
        dock.stdout + dock.stderr
    )


@pytest.mark.slow
def test_in_a_log_each_event_is_a_line_for_people_and_no_bar(tmp_path: Path) -> None:
    done = sim("shift", "--out", str(tmp_path / "s"), "--duration", "5m")
    assert done.returncode == 0, done.stderr
    assert "━" not in done.stderr + done.stdout  # no bar when nobody watches
    assert "INFO firmware.recorder: recording started (pre-event 30 s)" in done.stderr
    assert "recording stopped (by the button)" in done.stderr
    assert re.search(r"segment media/\S+ signed \(\d+ frames\)", done.stderr)
    assert "{'" not in done.stderr  # no Python dicts
    assert "dock: not docked" in done.stdout
    assert "LEDs:" not in done.stderr  # the LEDs only with -v


@pytest.mark.slow
def test_verbose_shows_the_leds_and_the_buzzer_and_json_lines_when_asked(tmp_path: Path) -> None:
    done = sim(
        "shift", "--out", str(tmp_path / "s"), "--duration", "3m", "-v",
        env=_env(BODYCAM_LOG_FORMAT="json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    started = [r for r in lines if r.get("event") == "recording_started"]
    assert started and started[0]["pre_event_s"] == 30 and started[0]["level"] == "info"
    assert started[0]["message"] == "recording started (pre-event 30 s)"
    leds = [r for r in lines if r.get("event") == "indicators"]
    assert {
        "state": "recording",
        "leds": {"red": "on", "green": "off", "amber": "off"},
    }.items() <= (next(r for r in leds if r["state"] == "recording").items())
    assert next(r for r in leds if r["state"] == "recording")["message"] == (
        "LEDs: red on, green off, amber off (recording)"
    )
    beeps = [r for r in lines if r.get("event") == "buzzer"]
    assert {b["pattern"] for b in beeps} >= {"start", "stop"}
    assert "buzzer: 1 beep of 0.3 s (start)" in {b["message"] for b in beeps}


def test_a_bad_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = sim("shift", "--out", str(tmp_path / "s"), env=_env(BODYCAM_LOG_FORMAT="xml"))
    assert done.returncode == 2
    assert done.stderr == (
        "simulator: error: BODYCAM_LOG_FORMAT must be 'text' or 'json', not 'xml'\n"
    )
    assert done.stderr.count("\n") == 1 and not (tmp_path / "s").exists()


def test_dock_without_a_shift_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = sim("dock", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "holds no simulated camera" in done.stderr
    assert f"bodycam-sim shift --out {tmp_path}" in done.stderr


@pytest.mark.slow
def test_two_shift_folders_are_two_cameras_a_supervisor_tells_apart(tmp_path: Path) -> None:
    ids = {}
    for name in ("a", "b"):
        done = sim("shift", "--out", str(tmp_path / name), "--duration", "3m", "-q")
        assert done.returncode == 0, done.stderr
        ids[name] = json.loads((tmp_path / name / "summary.json").read_text())["device"]
        assert f"camera {ids[name]}:" in done.stdout
    assert ids["a"] != ids["b"] and all(re.fullmatch(r"cam-[0-9a-f]{6}", i) for i in ids.values())
    again = sim("shift", "--out", str(tmp_path / "a"), "--duration", "1m", "-q")
    assert (
        again.returncode == 0
        and json.loads((tmp_path / "a/summary.json").read_text())["device"] == ids["a"]
    )  # the same folder goes on as the same camera

    def stoppage(name: str) -> bytes:
        lines = scan_journal(tmp_path / name / "device" / "journal.jsonl").lines
        return next(line for _, line in lines if Record.from_bytes(line).kind == "stoppage")

    # A supervisor with folder a's registry: a's alert verifies, b's is an unknown camera,
    # not a forgery ("signature does not verify") of a's.
    judge = AlertJudge(Registry.load(tmp_path / "a" / "registry.json"))
    assert judge.alert(f"bodycam/unit-1/{ids['a']}/alert", stoppage("a")).genuine
    other = judge.alert(f"bodycam/unit-1/{ids['b']}/alert", stoppage("b"))
    assert other.verdict == UNKNOWN and "signature" not in other.problem


# -- scripts/provision-device on a developer's PC ------------------------------------------


def _system_python() -> str:
    """A python3 without the project's packages (as on a fresh machine), or skip."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import nacl"], capture_output=True)
            if probe.returncode != 0:
                return candidate
    pytest.skip("no python3 without pynacl on this machine")


def test_provision_without_the_venv_says_run_bootstrap(tmp_path: Path) -> None:
    if Path("/opt/bodycam/venv/bin/python").exists():
        pytest.skip("a camera's venv is installed here: the script would use it")
    checkout = tmp_path / "checkout" / "scripts"  # a fresh checkout: no .venv yet
    checkout.mkdir(parents=True)
    script = checkout / "provision-device"
    script.write_bytes((ROOT / "scripts" / "provision-device").read_bytes())
    env = {k: v for k, v in _env().items() if k != "BODYCAM_PROVISION_REEXEC"}
    done = subprocess.run(
        [_system_python(), str(script), "--sim", str(tmp_path / "cam"), "--device-id", "cam-x"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("provision-device: error: ")
    assert "No module named 'nacl'" in done.stderr and "run scripts/bootstrap" in done.stderr
    assert not (tmp_path / "cam").exists()


def test_provision_run_by_the_system_python_uses_the_checkouts_venv() -> None:
    env = {k: v for k, v in _env().items() if k != "BODYCAM_PROVISION_REEXEC"}
    done = subprocess.run(
        [_system_python(), str(ROOT / "scripts" / "provision-device"), "--help"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--sim DIR" in done.stdout and "bodycam-recorder --camera sim" in done.stdout


def test_provision_on_a_pc_without_sim_says_how_to_make_a_simulated_camera(tmp_path: Path) -> None:
    pc = tmp_path / "pc"  # a PC's root: no /proc/device-tree/model
    (pc / "etc").mkdir(parents=True)
    done = subprocess.run(
        [PY, str(ROOT / "scripts" / "provision-device"), "--root", str(pc), "--device-id",
         "cam-0042", "--officer", "A1024", "--unit", "unit-1", "--registry", str(tmp_path / "r.json")],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("provision-device: error: this is not a camera")
    assert "on a PC, --sim DIR provisions a simulated camera for bodycam-recorder" in done.stderr
    assert sorted(p.name for p in pc.iterdir()) == ["etc"] and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_provision_sim_makes_a_camera_bodycam_recorder_records_on(tmp_path: Path) -> None:
    cam = tmp_path / "cam"
    done = subprocess.run(
        [PY, str(ROOT / "scripts" / "provision-device"), "--sim", str(cam), "--device-id", "cam-dev1"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (cam / "key" / "device.key").stat().st_mode & 0o777 == 0o600
    assert "provisioned the simulated camera cam-dev1" in done.stdout
    nxt = next(line for line in done.stdout.splitlines() if line.startswith("next: "))
    env_part, command = nxt[len("next: ") :].split(" ", 1)
    assert env_part == "GPIOZERO_PIN_FACTORY=mock"
    assert command.split()[1:] == ["--camera", "sim", "--config", str(cam / "recorder.toml")]
    # Run exactly that (pressing record, 30x real time, -v: what the officer sees and
    # hears), wait until a segment is signed, then stop it as systemd would.
    recorder = subprocess.Popen(
        [*command.split(), "--record", "--speed", "30", "-v"],
        env=_env(GPIOZERO_PIN_FACTORY="mock"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b" signed (" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([recorder.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(recorder.stderr.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        assert b"recording started (pre-event 30 s)" in seen, seen.decode(errors="replace")
        assert b" signed (" in seen, seen.decode(errors="replace")
        assert b"LEDs: red on, green off, amber off (recording)" in seen
        assert b"buzzer: 1 beep of 0.3 s (start)" in seen
        recorder.terminate()
        assert recorder.wait(timeout=60) == 0
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        recorder.stderr.close()
    # What it recorded is whole, against the camera's own registration request.
    checked = subprocess.run(
        [PY, "-m", "evidence.verify_cli", str(cam / "storage"),
         "--registry", str(cam / "registration-request.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0 and "INTACT" in checked.stdout, checked.stdout
    assert int(re.search(r"(\d+) media files?", checked.stdout).group(1)) >= 1  # a segment
    again = subprocess.run(
        [PY, str(ROOT / "scripts" / "provision-device"), "--sim", str(cam), "--device-id", "cam-dev1"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert again.returncode == 2 and "already has a key" in again.stderr  # the key is kept


@pytest.mark.slow
def test_sigint_without_a_terminal_says_the_same_in_the_log(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    proc = subprocess.Popen(
        [PY, "-m", "simulator", "shift", "--out", str(out), "--duration", "8h"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen = b""
        deadline = time.monotonic() + 180
        while seen.count(b" signed (") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        assert seen.count(b" signed (") >= 2, seen[-2000:]
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    said = [line for line in stderr.decode().splitlines() if line.startswith("bodycam-sim: ")]
    assert len(said) == 2 and "interrupted at " in said[0] and "of 8:00:00 simulated" in said[0]
    assert f"`bodycam-sim shift --out {out}` continues the same camera" in said[1]
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    assert "shift: " not in stdout.decode()  # no summary as if the shift had ended
