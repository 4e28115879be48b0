"""The daemons as systemd runs them: a real NOTIFY_SOCKET, WATCHDOG_USEC, SIGTERM.

The recorder runs its real main() in a subprocess (sim backend, so it runs on a PC) and
must say READY=1, keep sending WATCHDOG=1 from its main loop, and say STOPPING=1 and exit
0 on SIGTERM, as bodycam-recorder.service expects of it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from evidence.identity import DeviceIdentity


def _receive_until(sock: socket.socket, wanted: str, seen: list[str], deadline: float) -> None:
    while not any(wanted in m.split("\n") for m in seen):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        seen.append(sock.recv(4096).decode())


def test_recorder_speaks_sd_notify(tmp_path):
    key = tmp_path / "key" / "device.key"
    DeviceIdentity.create(key, "cam-notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
               WATCHDOG_USEC="10000000", GPIOZERO_PIN_FACTORY="mock")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware", "--camera", "sim", "--storage",
         str(tmp_path / "storage"), "--key", str(key)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        _receive_until(sock, "READY=1", seen, deadline)
        # Two pings after READY: the main loop keeps feeding the watchdog.
        after_ready: list[str] = []
        while after_ready.count("WATCHDOG=1") < 2:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            after_ready.append(sock.recv(4096).decode())
        seen += after_ready
        proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", seen, deadline)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in seen)
