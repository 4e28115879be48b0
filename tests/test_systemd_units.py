"""The systemd units and udev rules: `systemd-analyze verify` with no output, and the settings
the deployment relies on (notify, watchdog, restart, user, state, hardening)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
SERVICES = ["bodycam-recorder.service", "bodycam-dock.service", "bodycam-dock-bay@.service"]
CLOCK_UNITS = ["bodycam-clock.socket", "bodycam-clock.service"]  # the clock helper
INSTALLED_BIN = "/opt/bodycam/venv/bin/"
VENV_BIN = Path(sys.executable).parent  # the same entry points, installed here

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_config(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, dict_type=_MultiDict)
    parser.optionxform = str  # keys are case sensitive
    parser.read(UNITS / name)
    return parser


class _MultiDict(dict):
    """Repeated keys (SystemCallFilter=, ...) are joined, not overwritten."""

    def __setitem__(self, key, value):
        if key in self and isinstance(value, list) and isinstance(self[key], list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def staged(tmp_path: Path, names: list[str]) -> Path:
    """Copies of the units whose ExecStart points at this venv's real entry points (the
    installed path /opt/bodycam/venv does not exist here, and verify checks it)."""
    out = tmp_path / "units"
    out.mkdir(exist_ok=True)
    for name in names:
        text = (UNITS / name).read_text().replace(INSTALLED_BIN, f"{VENV_BIN}/")
        (out / name).write_text(text)
    return out


def verify(paths: list[Path]) -> list[str]:
    """Run systemd-analyze verify; return every line it printed about our units.

    It exits 0 on warnings ("Unknown key ... ignoring"), so its output is what counts.
    Lines about the host's own unit files (/lib/systemd, /etc/systemd) are not ours.
    """
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    lines = (result.stdout + result.stderr).splitlines()
    ours = [
        line
        for line in lines
        if line.strip() and not re.match(r"^/(usr/)?lib/systemd/|^/etc/systemd/", line)
    ]
    if result.returncode != 0 and not ours:
        ours = [f"exit status {result.returncode}"]
    return ours


def instance_paths(directory: Path) -> list[Path]:
    paths = []
    for name in SERVICES:
        if name.endswith("@.service"):
            name = name.replace("@.service", "@ttyACM0.service")  # verify needs an instance
        paths.append(directory / name)
    return paths


@needs_analyze
def test_entry_points_exist():
    for name in ("bodycam-recorder", "bodycam-dock", "bodycam-clock"):
        assert (VENV_BIN / name).exists(), f"{name} is not installed in {VENV_BIN}"


@needs_analyze
def test_systemd_analyze_verify_prints_nothing(tmp_path):
    directory = staged(tmp_path, SERVICES + CLOCK_UNITS)
    assert verify(instance_paths(directory) + [directory / name for name in CLOCK_UNITS]) == []


@needs_analyze
def test_verify_catches_a_warning(tmp_path):
    """The check above can fail: a misspelt key is only a warning, exit status 0."""
    directory = staged(tmp_path, ["bodycam-recorder.service"])
    unit = directory / "bodycam-recorder.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchDogSec="))
    problems = verify([unit])
    assert any("Unknown key" in line and "WatchDogSec" in line for line in problems), problems


@needs_analyze
def test_verify_catches_a_missing_executable(tmp_path):
    directory = tmp_path / "units"
    directory.mkdir()
    shutil.copy(UNITS / "bodycam-dock.service", directory)  # ExecStart under /opt: absent
    assert any("is not executable" in line for line in verify([directory / "bodycam-dock.service"]))


@pytest.mark.parametrize("name", SERVICES)
def test_service_settings(name):
    service = unit_config(name)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["User"] == "bodycam" and service["Group"] == "bodycam"
    assert service["StateDirectory"] == "bodycam"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert service[key] == value, key
    assert service["ExecStart"].startswith(INSTALLED_BIN)
    assert "--config /etc/bodycam/" in service["ExecStart"]


@pytest.mark.parametrize(
    ("name", "module", "command"),
    [
        ("bodycam-recorder.service", "firmware.__main__", None),
        ("bodycam-dock.service", "dock.__main__", "serve"),
        ("bodycam-dock-bay@.service", "dock.__main__", "bay"),
    ],
)
def test_exec_start_parses_with_the_daemons_own_parser(name, module, command):
    """The command line in the unit is one the daemon accepts (argparse exits otherwise)."""
    import importlib
    import shlex

    argv = shlex.split(unit_config(name)["Service"]["ExecStart"].replace("%I", "ttyACM0"))
    args = importlib.import_module(module).build_parser().parse_args(argv[1:])
    assert args.config in ("/etc/bodycam/recorder.toml", "/etc/bodycam/dock.toml")
    if command:
        assert args.command == command
    if command == "bay":
        assert args.port == "/dev/ttyACM0"


def test_the_recorder_holds_no_privilege_and_cannot_set_the_clock():
    unit = unit_config("bodycam-recorder.service")
    service = unit["Service"]
    assert service["CapabilityBoundingSet"] == ""  # empty: no capability at all
    assert "AmbientCapabilities" not in service
    assert service["ProtectClock"] == "yes"
    assert "@clock" not in service["SystemCallFilter"]
    # It asks the clock helper instead, whose socket it pulls in.
    assert unit["Unit"]["Wants"] == "bodycam-clock.socket"
    assert "bodycam-clock.socket" in unit["Unit"]["After"].split()


def test_the_clock_helper_socket_is_the_recorders_only():
    socket_unit = unit_config("bodycam-clock.socket")
    sock = socket_unit["Socket"]
    assert sock["ListenStream"] == "/run/bodycam-clock.sock"  # firmware.clockd.SOCKET_PATH
    assert (sock["SocketUser"], sock["SocketGroup"], sock["SocketMode"]) == (
        "bodycam-clock",
        "bodycam",
        "0660",
    )
    assert sock["Accept"] == "no"  # one helper process, one connection at a time
    assert socket_unit["Install"]["WantedBy"] == "sockets.target"
    from firmware.clockd import SOCKET_PATH

    assert sock["ListenStream"] == SOCKET_PATH


def test_the_clock_helper_holds_cap_sys_time_the_rtc_and_nothing_else():
    unit = unit_config("bodycam-clock.service")
    service = unit["Service"]
    assert unit["Unit"]["Requires"] == "bodycam-clock.socket"
    assert (service["User"], service["Group"]) == ("bodycam-clock", "bodycam-clock")
    assert service["CapabilityBoundingSet"] == service["AmbientCapabilities"] == "CAP_SYS_TIME"
    assert "ProtectClock" not in service and "PrivateUsers" not in service  # both void it
    assert (service["PrivateDevices"], service["DevicePolicy"]) == ("yes", "closed")
    assert service["DeviceAllow"] == "char-rtc rw"
    assert service["BindPaths"] == "-/dev/rtc0"
    # No network, no socket of its own, nothing writable.
    assert service["PrivateNetwork"] == "yes" and service["IPAddressDeny"] == "any"
    assert service["RestrictAddressFamilies"] == "none"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    for key in ("StateDirectory", "RuntimeDirectory", "LogsDirectory", "ReadWritePaths"):
        assert key not in service, key
    assert service["UMask"] == "0077" and service["MemoryDenyWriteExecute"] == "yes"
    assert 0 < int(service["TasksMax"]) <= 8 and re.fullmatch(r"[0-9]+M", service["MemoryMax"])


def test_the_clock_helper_command_line_parses():
    import shlex

    from firmware.clockd import build_parser

    argv = shlex.split(unit_config("bodycam-clock.service")["Service"]["ExecStart"])
    assert argv[0] == INSTALLED_BIN + "bodycam-clock"
    args = build_parser().parse_args(argv[1:])
    assert args.config == "/etc/bodycam/recorder.toml"  # the recorder's own step bound
    assert args.socket is None and args.user == "bodycam"  # the socket systemd passes


def test_bay_is_bound_to_its_serial_port():
    unit = unit_config("bodycam-dock-bay@.service")
    assert unit["Unit"]["BindsTo"] == "dev-%i.device"
    assert "/dev/%I" in unit["Service"]["ExecStart"]
    assert unit["Service"]["DeviceAllow"] == "/dev/%I rw"


def _rule_fields(line: str) -> dict[str, tuple[str, str]]:
    fields = {}
    for m in re.finditer(r'([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|=|:=)\s*"([^"]*)"', line):
        fields[m.group(1)] = (m.group(2), m.group(3))
    return fields


def test_udev_rule_starts_a_bay_for_the_gadget_serial_port():
    lines = [
        line
        for line in (UNITS / "90-bodycam-dock.rules").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = _rule_fields(lines[0])
    assert fields["SUBSYSTEM"] == ("==", "tty")
    assert fields["ATTRS{idVendor}"] == ("==", "0525")  # Linux USB gadget (NetChip id)
    assert fields["ATTRS{idProduct}"] == ("==", "a4a7")  # g_serial in CDC ACM mode
    assert fields["TAG"] == ("+=", "systemd")
    op, wants = fields["ENV{SYSTEMD_WANTS}"]
    assert op == "+=" and wants == "bodycam-dock-bay@%k.service"
    assert (UNITS / "bodycam-dock-bay@.service").exists()
    # Every key=value pair of the line was understood (no typo hides in it).
    assert len(fields) == lines[0].count('"') // 2


def security(tmp_path: Path, name: str) -> str:
    """``systemd-analyze security --offline=yes`` of a unit (skipped where unsupported)."""
    directory = staged(tmp_path, [name])
    path = directory / name.replace("@.service", "@ttyACM0.service")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "Overall exposure level" not in result.stdout and "offline" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security scan")
    return result.stdout + result.stderr


# Issue 10's targets: bay and dock at most 1.2, the recorder at most 2.0. Measured with
# systemd 252: bay 0.4, dock 1.1, recorder 1.6 (2.3 while it held CAP_SYS_TIME, @clock and
# no ProtectClock; the clock helper holds them now). The clock helper's own target is 1.2:
# measured 1.1 (what is left is what it is for: CAP_SYS_TIME, @clock, the RTC, and no
# ProtectClock/PrivateUsers, which would void the capability). docs/deployment.md.
EXPOSURE_LIMIT = {
    "bodycam-dock-bay@.service": 1.2,
    "bodycam-dock.service": 1.2,
    "bodycam-recorder.service": 2.0,
    "bodycam-clock.service": 1.2,
}


@needs_analyze
@pytest.mark.parametrize("name", [*SERVICES, "bodycam-clock.service"])
def test_exposure_is_low(tmp_path, name):
    out = security(tmp_path, name)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
    assert m, out
    assert float(m.group(1)) <= EXPOSURE_LIMIT[name], out


def _scan_rows(out: str):
    lines = out.splitlines()

    def row(name: str) -> str:
        return next(line for line in lines if line[2:].startswith(f"{name} "))

    return row


@needs_analyze
def test_the_recorder_may_not_set_the_clock(tmp_path):
    """The offline scan reads the filter and capabilities as systemd builds them."""
    row = _scan_rows(security(tmp_path, "bodycam-recorder.service"))
    assert "@clock is not included" in row("SystemCallFilter=~@clock")
    assert "@privileged is not included" in row("SystemCallFilter=~@privileged")
    assert row("CapabilityBoundingSet=~CAP_SYS_TIME").startswith("✓")
    assert row("ProtectClock=").startswith("✓")
    for group in ("@resources", "@mount", "@module", "@reboot", "@swap", "@raw-io"):
        assert f"{group} is not included" in row(f"SystemCallFilter=~{group}")


@needs_analyze
def test_the_clock_helper_may_set_the_clock_and_nothing_else_privileged(tmp_path):
    """~@privileged removes @clock too; the unit adds it back."""
    row = _scan_rows(security(tmp_path, "bodycam-clock.service"))
    assert "@clock is included" in row("SystemCallFilter=~@clock")  # clock_settime
    for group in ("@resources", "@mount", "@module", "@reboot", "@swap", "@raw-io"):
        assert f"{group} is not included" in row(f"SystemCallFilter=~{group}")
    for name in (
        "PrivateNetwork=",
        "PrivateDevices=",
        "MemoryDenyWriteExecute=",
        "ProcSubset=",
        "RestrictAddressFamilies=~AF_UNIX",  # not even a local socket: only systemd's
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "RestrictAddressFamilies=~AF_NETLINK",
        "User=/DynamicUser=",
    ):
        assert row(name).startswith("✓"), row(name)


@pytest.mark.parametrize("name", SERVICES)
def test_every_unit_is_bounded_and_private(name):
    service = unit_config(name)["Service"]
    assert service["UMask"] == "0077"  # store files, registry and keys: owner only
    assert re.fullmatch(r"[0-9]+M", service["MemoryMax"])
    assert 0 < int(service["TasksMax"]) <= 128
    assert service["PrivateMounts"] == "yes"


def test_the_bay_has_no_network():
    service = unit_config("bodycam-dock-bay@.service")["Service"]
    assert service["PrivateNetwork"] == "yes"
    assert service["IPAddressDeny"] == "any"
    assert service["RestrictAddressFamilies"] == "AF_UNIX"  # sd_notify only


@pytest.mark.parametrize("name", ["bodycam-dock.service", "bodycam-dock-bay@.service"])
def test_the_dock_key_is_an_encrypted_credential(name):
    from dock.credential import CREDENTIAL, ENCRYPTED

    service = unit_config(name)["Service"]
    assert service["LoadCredentialEncrypted"] == f"{CREDENTIAL}:{ENCRYPTED}"
    assert "LoadCredential" not in service  # never a plaintext credential
