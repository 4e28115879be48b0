"""The daemons as systemd runs them: a real NOTIFY_SOCKET, WATCHDOG_USEC, SIGTERM.

Each daemon runs its real main() in a subprocess (the recorder on the sim backend, so it
runs on a PC; the dock's bay on a real pty, as it would on /dev/ttyACM0) and must say
READY=1, send WATCHDOG=1 from its main loop at least every half timeout (pinging once per
timeout races systemd's deadline), and on SIGTERM say STOPPING=1 and exit 0, as its unit
expects.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evidence.identity import DeviceIdentity

WATCHDOG_S = 5.0
SLACK_S = 0.6  # scheduling on a loaded 2-core machine


def run_under_notify(tmp_path: Path, argv: list[str], env: dict[str, str] | None = None):
    """Start ``argv`` with a bound notify socket; collect messages until two pings after
    READY=1, then SIGTERM it and collect until STOPPING=1. Returns (messages, ping times)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    full_env = dict(
        os.environ,
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000)),
        **(env or {}),
    )
    full_env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    messages: list[str] = []
    pings: list[float] = []
    deadline = time.monotonic() + 60

    def receive() -> str:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            proc.kill()
            pytest.fail(
                f"no notification; messages so far {messages}; stderr: "
                f"{proc.communicate()[1].decode()[-2000:]}"
            )
        messages.append(message)
        return message

    try:
        while not any("READY=1" in m.split("\n") for m in messages):
            receive()
        ready_at = time.monotonic()
        while len(pings) < 2:
            if "WATCHDOG=1" in receive().split("\n"):
                pings.append(time.monotonic())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m.split("\n") for m in messages):
            receive()
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    return messages, [ready_at, *pings]


def assert_pings_in_time(times: list[float]) -> None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= WATCHDOG_S / 2 + SLACK_S, f"watchdog pings {gaps} s apart"


def test_recorder_speaks_sd_notify(tmp_path):
    key = tmp_path / "key" / "device.key"
    DeviceIdentity.create(key, "cam-notify")
    messages, times = run_under_notify(
        tmp_path,
        [
            sys.executable,
            "-m",
            "firmware",
            "--camera",
            "sim",
            "--storage",
            str(tmp_path / "storage"),
            "--key",
            str(key),
        ],
        {"GPIOZERO_PIN_FACTORY": "mock"},
    )
    assert_pings_in_time(times)
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in messages)


@pytest.fixture
def dock_config(tmp_path) -> Path:
    config = tmp_path / "dock.toml"
    config.write_text(f'[dock]\nstore = "{tmp_path}/store"\nkey = "{tmp_path}/key/dock.key"\n')
    subprocess.run(
        [sys.executable, "-m", "dock", "--config", str(config), "init"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # The head of unit registers the dock and names the unit key in the dock's config.
    from evidence.identity import DeviceIdentity
    from evidence.registry import DockEntry
    from simulator.unit import register, unit_key

    key, dock = unit_key(tmp_path), DeviceIdentity.load(tmp_path / "key" / "dock.key")
    register(
        tmp_path / "store" / "registry.json",
        key,
        docks=[DockEntry(dock.device_id, dock.public_key_hex)],
    )
    with config.open("a") as f:
        f.write(f'unit_keys = ["{key.fingerprint}"]\n')
    return config


def test_dock_serve_speaks_sd_notify(tmp_path, dock_config):
    _, times = run_under_notify(
        tmp_path, [sys.executable, "-m", "dock", "--config", str(dock_config), "serve"]
    )
    assert_pings_in_time(times)


def test_dock_bay_speaks_sd_notify(tmp_path, dock_config):
    """A bay on a real pty (the camera's end stays silent): up, feeding the watchdog."""
    camera_end, dock_end = os.openpty()
    try:
        _, times = run_under_notify(
            tmp_path,
            [
                sys.executable,
                "-m",
                "dock",
                "--config",
                str(dock_config),
                "bay",
                os.ttyname(dock_end),
            ],
        )
    finally:
        os.close(camera_end)
        os.close(dock_end)
    assert_pings_in_time(times)
