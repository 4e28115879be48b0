"""Fault: the cable is pulled (issue 13). The real ``bodycam-recorder`` (sim backend) keeps
its dock port open on a pty whose other end the test holds as the dock; pulling the cable is
closing that end (the port hangs up). The same running daemon must dock again when a dock
comes back, after a pull between sessions and after a pull in the middle of one.

The camera opens its port by a stable name (``ttyGS0`` here, a symlink the test points at
the current pty, as udev names the gadget port), so a new cable is a new pty pair.
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
from hostile_dock import HostileDock

from dock.session import DockSession
from evidence.identity import DeviceIdentity
from simulator.dockbay import PtyEnd, ensure_dock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.faults


class Daemon:
    """``python -m firmware`` on the sim backend; its log lines are read on a thread."""

    def __init__(self, tmp: Path, key: Path, *args: str) -> None:
        env = {**os.environ, "BODYCAM_CAMERA": "sim", "GPIOZERO_PIN_FACTORY": "mock"}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "firmware",
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
        )
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s: {''.join(self.log)[-3000:]}")
            if line is None:
                pytest.fail(f"daemon exited before {text!r}: {''.join(self.log)[-3000:]}")
            self.log.append(line)
            if text in line:
                return line

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, "".join(self.log)[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Cable:
    """A pty pair: the dock (the test) holds the master; ``port`` names the slave for the
    camera, which opens it by that name. ``pull`` hangs the port up."""

    def __init__(self, port: Path) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        target = os.ttyname(slave)
        os.close(slave)  # the master keeps the pair; the camera opens the slave
        link = port.with_name(port.name + ".new")
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        os.replace(link, port)  # the gadget port appears under its stable name
        self.master = master
        self.end = PtyEnd(master)

    def pull(self) -> None:
        self.end.close()


def short_wav(tmp: Path) -> Path:
    wav = tmp / "short.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 1600)
    return wav


def test_the_camera_docks_again_after_the_cable_is_pulled(
    tmp_path: Path, identity: DeviceIdentity, registry_file: Path
) -> None:
    key = tmp_path / "key" / "device.key"
    dock_identity, store = ensure_dock(
        tmp_path / "dock", tmp_path / "dock-key" / "dock.key", registry_file
    )
    config = tmp_path / "recorder.toml"
    config.write_text(
        f'[dock]\nregistry = "{store.registry_path}"\nunit_keys = {sorted(store.unit_keys)}\n'
        f'poll_s = 0.2\n[announcement]\nwav = "{short_wav(tmp_path)}"\n'
    )
    port = tmp_path / "ttyGS0"

    def dock_now(cable: Cable):
        return DockSession(store, dock_identity, "test-bay", timeout=10).run(cable.end)

    cable = Cable(port)
    daemon = Daemon(tmp_path, key, "--config", str(config), "--dock-port", str(port))
    try:
        daemon.wait_for("dock port")
        first = dock_now(cable)
        assert first.outcome == "stored", first.reason
        daemon.wait_for("docking with")

        # 1. Pulled between sessions: the idle port hangs up (it polls readable too).
        cable.pull()
        daemon.wait_for("hung up (undocked)")
        daemon.wait_for("waiting for a dock")  # the old pty is gone: it waits for the port

        # 2. Pulled in the middle of a session, right after the handshake.
        cable = Cable(port)
        daemon.wait_for("dock port")
        hostile = HostileDock(cable.master, dock_identity)
        kind, _ = hostile.challenge()
        assert kind.name == "RESPONSE"
        cable.pull()
        daemon.wait_for("lost during the session (undocked)")

        # 3. A dock again: the same running thread docks, stores and receipts.
        cable = Cable(port)
        daemon.wait_for("dock port")
        again = dock_now(cable)
        assert again.outcome == "stored", again.reason
        assert again.receipt_upto is not None and again.receipt_upto >= first.receipt_upto
        daemon.wait_for("docking with")
        assert daemon.proc.poll() is None
        log = "".join(daemon.log)
        assert "Traceback" not in log and "Exception in thread" not in log, log[-3000:]
        cable.pull()
        daemon.stop()
    finally:
        daemon.kill()
        cable.pull()
        store.close()
