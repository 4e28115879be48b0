"""Fixtures shared by the whole suite: keys, the mock pin factory, a real mosquitto broker."""

from __future__ import annotations

import getpass
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from passwordkit import cheapen

from evidence.identity import DeviceIdentity
from evidence.registry import DeviceEntry, Registry

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

cheapen()  # argon2id at its cheapest cost in tests: see tests/passwordkit.py

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Started in the background (`cmd &` in a script, a CI runner's job): SIGINT comes
    # ignored, and every child would inherit that. The daemons' Ctrl-C tests need theirs
    # as a shell gives it; a handler here is reset to the default in each child.
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


ROOT = Path(__file__).resolve().parents[1]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 (EC keys: fast to make), made with
    openssl as broker/README.md makes them."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=bodycam test CA", cwd=d)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
            cwd=d)  # fmt: skip


def render_production_config(conf: str, d: Path, port: int) -> str:
    """The shipped broker/mosquitto.conf with the test's paths and port; nothing else
    changes. Run as the current user (the tests' files sit in a 0700 temp folder the
    mosquitto user cannot enter; see broker/README.md on file ownership in production)."""
    out = conf.replace("/etc/mosquitto/bodycam/", f"{d}/")
    out = out.replace("/var/lib/mosquitto/", f"{d}/")
    out = out.replace("user mosquitto", f"user {getpass.getuser()}")
    out = out.replace("listener 8883", f"listener {port} 127.0.0.1")
    settings = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "/etc/" in line or "/var/" in line]
    assert f"listener {port} 127.0.0.1" in settings
    return out


def _issue_script():
    """scripts/issue-broker-credential as a module (it has no .py suffix), to run in-process."""
    path = ROOT / "scripts" / "issue-broker-credential"
    loader = importlib.machinery.SourceFileLoader("issue_broker_credential", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class ProductionBroker(Broker):
    """mosquitto running the production config from broker/ as shipped: TLS with a CA and
    a server certificate made here with openssl, the password file and the ACL written by
    scripts/issue-broker-credential. Only paths, the port and ``user`` differ from
    production. Issue credentials before :meth:`start` (mosquitto reads them at start)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        super().__init__(workdir)
        make_certs(workdir)
        shutil.copy(ROOT / "broker" / "acl", workdir / "acl")
        self.ca_file = workdir / "ca.crt"
        self.config.write_text(
            render_production_config(
                (ROOT / "broker" / "mosquitto.conf").read_text(), workdir, self.port
            )  # fmt: skip
        )
        self._issue = _issue_script()

    def issue(self, user: str, role: str, unit: str | None = None) -> Path:
        """Issue ``user``'s credential of class ``role``; returns its 0600 password file."""
        out = self.workdir / f"{user}.pw"
        argv = [user, "--role", role, "--passwd", str(self.workdir / "passwd"), "--out", str(out)]
        if unit:
            argv += ["--unit", unit]
        assert self._issue.main(argv) == 0
        return out

    def password(self, user: str) -> str:
        """``user``'s password (a supervisor's ``<name>.cmd`` shares ``<name>``'s)."""
        return (self.workdir / f"{user.removesuffix('.cmd')}.pw").read_text().strip()


@pytest.fixture
def broker(tmp_path: Path):
    """A running mosquitto for one test; ``broker.stop()``/``start()`` simulate an outage."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
