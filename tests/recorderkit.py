"""The real recorder daemon and the cable it docks on, for tests that drive both.

The cable is a raw pty pair the test holds; the camera opens it through
``/proc/<test pid>/fd/<slave>``, never a ``/dev/pts/N`` name another process could open.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import tty
import wave
from pathlib import Path

import pytest

from simulator.dockbay import PtyEnd

ROOT = Path(__file__).resolve().parent.parent


class Daemon:
    """``python -m firmware`` on the sim backend; its log lines are read on a thread."""

    def __init__(
        self,
        tmp: Path,
        key: Path,
        *args: str,
        launcher: tuple[str, ...] = ("-m", "firmware"),
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``launcher``: what the interpreter runs (a probe script around the daemon, say);
        ``pass_fds``: descriptors the daemon inherits (the probe's pipe)."""
        env = {**os.environ, "BODYCAM_CAMERA": "sim", "GPIOZERO_PIN_FACTORY": "mock"}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *launcher,
                "--key",
                str(key),
                "--storage",
                str(tmp / "storage"),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s: {''.join(self.log)[-2000:]}")
            if line is None:
                pytest.fail(f"daemon exited before {text!r}: {''.join(self.log)[-2000:]}")
            self.log.append(line)
            if text in line:
                return

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, "".join(self.log)[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class HeldEnd(PtyEnd):
    """The dock's end (the pty master), which also holds the slave fd the camera opens:
    the camera is given ``/proc/<test pid>/fd/<slave>``, never the ``/dev/pts/N`` name that
    another process (or another test's pty, later) could open. Closing it pulls the cable."""

    def __init__(self, master: int, slave: int) -> None:
        super().__init__(master)
        self.slave = slave

    def close(self) -> None:
        super().close()
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


def cable(tmp: Path) -> tuple[HeldEnd, str]:
    """A raw pty pair the test holds, and the path the camera opens it by."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = tmp / "ttyGS0"
    path.unlink(missing_ok=True)
    os.symlink(f"/proc/{os.getpid()}/fd/{slave}", path)
    return HeldEnd(master, slave), str(path)


def short_wav(tmp: Path, seconds: float = 0.1) -> Path:
    """A silent announcement of ``seconds`` (16 kHz mono): the real one plays for seconds
    at speed 1."""
    wav = tmp / "short.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * round(16000 * seconds))
    return wav


def mqtt_recorder_config(
    tmp: Path, broker, unit: str, health: str = "", recording: str = ""
) -> Path:
    """``tmp/recorder.toml`` for a small, fast camera (160x120, 10 fps, 1 s segments, no
    pre-event) alerting to ``broker``; ``health``/``recording``: extra TOML lines."""
    password = tmp / "broker.passwd"
    password.write_text("not-checked-by-the-test-broker\n")
    password.chmod(0o600)
    config = tmp / "recorder.toml"
    config.write_text(
        "[camera]\nwidth = 160\nheight = 120\nfps = 10\n"
        f"[recording]\nsegment_max_s = 1\npre_event_s = 0\n{recording}"
        f"[health]\n{health}"
        f'[announcement]\nwav = "{short_wav(tmp)}"\n[dock]\nport = ""\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nunit = "{unit}"\n'
        f'password_file = "{password}"\ninsecure = true\n'
    )
    return config


def reboot(tmp: Path, key: Path, config: Path, *waits: str) -> str:
    """Start the recorder again without recording (a reboot), wait for each of ``waits``
    and for "recorder ready", stop it; its log."""
    again = Daemon(tmp, key, "--config", str(config))
    try:
        for line in waits:
            again.wait_for(line)
        again.wait_for("recorder ready")
        again.stop()
    finally:
        again.kill()
    return "".join(again.log)
