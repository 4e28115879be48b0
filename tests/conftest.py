"""Fixtures shared by the whole suite: keys, the mock pin factory, a real mosquitto broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from evidence.identity import DeviceIdentity
from evidence.registry import DeviceEntry, Registry

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


@pytest.fixture
def identity(tmp_path: Path) -> DeviceIdentity:
    """A freshly provisioned device key (mode 0600) for device ``cam-test``."""
    return DeviceIdentity.create(tmp_path / "key" / "device.key", "cam-test")


@pytest.fixture
def registry_file(tmp_path: Path, identity: DeviceIdentity) -> Path:
    """A registry holding ``identity`` (officer ``A1024``, unit ``unit-1``)."""
    path = tmp_path / "registry.json"
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, identity.public_key_hex, "A1024", "unit-1"))
    registry.save(path)
    return path


@pytest.fixture
def mock_factory():
    """gpiozero's MockFactory installed for one test and torn down after it."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on a free loopback port, with a generated config."""

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 100000\nmax_inflight_messages 0\n"
            f"persistence false\n{extra_config}"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            pytest.fail("mosquitto is not installed (run .ci/run or apt-get install mosquitto)")
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "mosquitto.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    log = (self.workdir / "mosquitto.log").read_text()
                    raise RuntimeError(f"mosquitto exited: {log}") from None
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    """A running mosquitto for one test; ``broker.stop()``/``start()`` simulate an outage."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
