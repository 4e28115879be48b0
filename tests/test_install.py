"""install-pi, install-dock and provision-device against fake root folders.

Each script runs for real (bash or Python, as a user would run it) with ``--root`` pointing
at a folder that looks like the target machine; ``--dry-run`` must print every step and
leave the folder untouched, and the wrong kind of machine must be refused in one line.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from evidence.identity import DeviceIdentity
from evidence.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CONFIG_TXT = "dtparam=audio=on\ncamera_auto_detect=1\n\n[all]\n"


def run(script: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(SCRIPTS / script), *map(str, args)]
    if script == "provision-device":
        cmd.insert(0, sys.executable)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_pi(root: Path, codename: str = "bookworm", model: str = "Raspberry Pi Zero 2 W Rev 1.0"):
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text(CONFIG_TXT)
    return root


def make_debian(root: Path, os_id: str = "debian", codename: str = "bookworm") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(f"ID={os_id}\nVERSION_CODENAME={codename}\n")
    return root


@pytest.fixture
def pi_root(tmp_path) -> Path:
    return make_pi(tmp_path / "pi")


@pytest.fixture
def installed_pi(pi_root) -> Path:
    run("install-pi", "--root", pi_root)
    return pi_root


# --- install-pi ----------------------------------------------------------------------------


def test_install_pi_dry_run_prints_every_step_and_writes_nothing(pi_root):
    before = snapshot(pi_root)
    out = run("install-pi", "--dry-run", "--root", pi_root).stdout
    assert snapshot(pi_root) == before
    for expected in [
        "would run: apt-get install -y --no-install-recommends python3-picamera2 python3-libcamera",
        "would run: python3 -m venv --system-site-packages /opt/bodycam/venv",
        f"would run: /opt/bodycam/venv/bin/pip install --upgrade {ROOT}",
        f"would write {pi_root}/boot/firmware/config.txt",
        f"would write {pi_root}/etc/modules-load.d/bodycam.conf",
        f"would write {pi_root}/etc/systemd/system/bodycam-recorder.service",
        f"would write {pi_root}/etc/udev/rules.d/90-bodycam-rtc.rules",
        f"would write {pi_root}/etc/bodycam/recorder.toml",
        "would run: useradd --system --user-group",
        "would run: systemctl enable bodycam-recorder.service",
    ]:
        assert expected in out, expected


def test_install_pi_writes_overlays_units_and_config(installed_pi):
    root = installed_pi
    config_txt = (root / "boot/firmware/config.txt").read_text()
    assert config_txt.startswith(CONFIG_TXT.rstrip("\n"))  # the owner's lines are kept
    for line in (
        "dtparam=i2c_arm=on",
        "dtoverlay=i2c-rtc,ds3231",
        "dtparam=i2s=on",
        "dtoverlay=googlevoicehat-soundcard",
        "dtoverlay=dwc2,dr_mode=peripheral",
    ):
        assert line in config_txt.splitlines()
    assert "g_serial" in (root / "etc/modules-load.d/bodycam.conf").read_text().split()
    assert "use_acm=1" in (root / "etc/modprobe.d/bodycam-gadget.conf").read_text()
    unit = root / "etc/systemd/system/bodycam-recorder.service"
    assert unit.read_text() == (ROOT / "systemd/bodycam-recorder.service").read_text()
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    rule = (root / "etc/udev/rules.d/90-bodycam-rtc.rules").read_text()
    assert 'GROUP="bodycam"' in rule and "--hctosys" in rule


def test_recorder_config_has_every_key_commented(installed_pi):
    text = (installed_pi / "etc/bodycam/recorder.toml").read_text()
    assert tomllib.loads(text) == {}  # nothing set: the packaged defaults apply
    lines = text.splitlines()
    assert all(not line or line.startswith("#") for line in lines)
    # Settings are commented as "#key = value" (prose as "# ..."): uncommenting every
    # setting gives back exactly the packaged defaults.
    uncommented = "\n".join(
        line[1:] for line in lines if line[:1] == "#" and line[1:2] not in ("", " ")
    )
    assert tomllib.loads(uncommented) == tomllib.loads(
        (ROOT / "firmware/recorder.toml").read_text()
    )


def test_install_pi_twice_keeps_one_block_and_the_owners_config(installed_pi):
    config = installed_pi / "etc/bodycam/recorder.toml"
    config.write_text("[recording]\npre_event_s = 60\n")
    first = (installed_pi / "boot/firmware/config.txt").read_text()
    out = run("install-pi", "--root", installed_pi).stdout
    assert (installed_pi / "boot/firmware/config.txt").read_text() == first
    assert first.count("# bodycam begin") == 1
    assert config.read_text() == "[recording]\npre_event_s = 60\n"
    assert "keeping" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: make_debian(r), "this is not a Raspberry Pi"),
        (lambda r: make_pi(r, codename="bullseye"), "Bookworm is required (found: bullseye)"),
    ],
)
def test_install_pi_refuses_the_wrong_machine(tmp_path, setup, message):
    root = tmp_path / "m"
    setup(root)
    before = snapshot(root)
    result = run("install-pi", "--root", root, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(root) == before


def test_install_pi_needs_the_bookworm_boot_folder(pi_root):
    (pi_root / "boot/firmware/config.txt").unlink()
    result = run("install-pi", "--root", pi_root, check=False)
    assert result.returncode == 2 and "/boot/firmware" in result.stderr


# --- install-dock --------------------------------------------------------------------------


def test_install_dock_dry_run_and_install(tmp_path):
    root = make_debian(tmp_path / "dock")
    before = snapshot(root)
    out = run("install-dock", "--dry-run", "--root", root).stdout
    assert snapshot(root) == before
    assert f"would write {root}/etc/systemd/system/bodycam-dock-bay@.service" in out
    assert f"would write {root}/etc/udev/rules.d/90-bodycam-dock.rules" in out
    assert "would run: systemctl enable --now bodycam-dock.service" in out
    assert (
        "would run: runuser -u bodycam -- /opt/bodycam/venv/bin/bodycam-dock "
        "--config /etc/bodycam/dock.toml init"
    ) in out
    run("install-dock", "--root", root)
    for name in ("bodycam-dock.service", "bodycam-dock-bay@.service"):
        assert (root / "etc/systemd/system" / name).read_text() == (
            ROOT / "systemd" / name
        ).read_text()
    rule = (root / "etc/udev/rules.d/90-bodycam-dock.rules").read_text()
    assert "bodycam-dock-bay@%k.service" in rule
    if (ROOT / "dock/dock.toml").exists():
        text = (root / "etc/bodycam/dock.toml").read_text()
        assert tomllib.loads(text) == {}
        uncommented = "\n".join(
            line[1:] for line in text.splitlines() if line[:1] == "#" and line[1:2] not in ("", " ")
        )
        assert tomllib.loads(uncommented) == tomllib.loads((ROOT / "dock/dock.toml").read_text())


@pytest.mark.parametrize(
    ("os_id", "codename", "message"),
    [
        ("ubuntu", "jammy", "runs Debian 12 or Raspberry Pi OS Bookworm (found: ubuntu)"),
        ("debian", "bullseye", "Debian bookworm is required (found: bullseye)"),
    ],
)
def test_install_dock_refuses_other_systems(tmp_path, os_id, codename, message):
    root = make_debian(tmp_path / "m", os_id, codename)
    result = run("install-dock", "--root", root, check=False)
    assert result.returncode == 2 and message in result.stderr


def test_install_dock_refuses_a_camera(installed_pi):
    result = run("install-dock", "--root", installed_pi, check=False)
    assert result.returncode == 2 and "set up as a camera" in result.stderr


def test_help(tmp_path):
    for script in ("install-pi", "install-dock", "provision-device"):
        out = run(script, "--help").stdout
        assert "--dry-run" in out and "--root" in out


# --- provision-device --------------------------------------------------------------------


def provision(root: Path, tmp_path: Path, *extra, device="cam-0042", check=True):
    return run(
        "provision-device",
        "--root",
        root,
        "--device-id",
        device,
        "--officer",
        "A1024",
        "--unit",
        "unit-1",
        "--registry",
        tmp_path / "dock" / "registry.json",
        "--broker-passwd",
        tmp_path / "broker" / "passwd",
        *extra,
        check=check,
    )


def test_provision_dry_run_changes_nothing(installed_pi, tmp_path):
    before = snapshot(installed_pi)
    out = provision(installed_pi, tmp_path, "--dry-run").stdout
    assert snapshot(installed_pi) == before
    assert not (tmp_path / "dock").exists() and not (tmp_path / "broker").exists()
    assert (
        f"would make the device key of cam-0042 at {installed_pi}/var/lib/bodycam/key/device.key"
        in out
    )
    assert "would register cam-0042 (officer A1024, unit unit-1)" in out
    assert "would add 'cam-0042'" in out


def test_provision_makes_key_registers_and_issues_credential(installed_pi, tmp_path):
    out = provision(installed_pi, tmp_path).stdout
    key = installed_pi / "var/lib/bodycam/key/device.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    identity = DeviceIdentity.load(key)
    entry = Registry.load(tmp_path / "dock/registry.json").get("cam-0042")
    assert (entry.public_key, entry.officer, entry.unit) == (
        identity.public_key_hex,
        "A1024",
        "unit-1",
    )
    storage_identity = (installed_pi / "var/lib/bodycam/storage/identity.json").read_text()
    assert identity.public_key_hex in storage_identity
    passwd_line = (tmp_path / "broker/passwd").read_text().strip()
    assert passwd_line.startswith("cam-0042:$7$")
    password = installed_pi / "etc/bodycam/broker.passwd"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert f"provisioned cam-0042: public key {identity.public_key_hex}" in out


def test_provision_twice_refuses_and_keeps_the_key(installed_pi, tmp_path):
    provision(installed_pi, tmp_path)
    key = installed_pi / "var/lib/bodycam/key/device.key"
    registry = (tmp_path / "dock/registry.json").read_bytes()
    original = key.read_bytes()
    result = provision(installed_pi, tmp_path, check=False)
    assert result.returncode == 2
    assert "already has a key" in result.stderr and "--force" in result.stderr
    assert key.read_bytes() == original
    assert (tmp_path / "dock/registry.json").read_bytes() == registry


def test_provision_force_replaces_and_keeps_the_old_key(installed_pi, tmp_path):
    provision(installed_pi, tmp_path)
    key = installed_pi / "var/lib/bodycam/key/device.key"
    old = DeviceIdentity.load(key)
    out = provision(installed_pi, tmp_path, "--force").stdout
    new = DeviceIdentity.load(key)
    assert new.public_key_hex != old.public_key_hex
    (aside,) = key.parent.glob("device.key.replaced-*")
    assert DeviceIdentity.load(aside).public_key_hex == old.public_key_hex
    assert f"keep the old key of cam-0042 as {aside}" in out
    assert (
        Registry.load(tmp_path / "dock/registry.json").get("cam-0042").public_key
        == new.public_key_hex
    )


def test_provision_refuses_a_device_id_registered_to_another_camera(installed_pi, tmp_path):
    other = make_pi(tmp_path / "other")
    run("install-pi", "--root", other)
    provision(other, tmp_path)
    result = provision(installed_pi, tmp_path, check=False)
    assert result.returncode == 2 and "already registered" in result.stderr
    assert not (installed_pi / "var/lib/bodycam/key/device.key").exists()  # nothing made


def test_provision_refuses_the_wrong_machine(tmp_path, pi_root):
    dock = make_debian(tmp_path / "dock-machine")
    result = provision(dock, tmp_path, check=False)
    assert result.returncode == 2 and "this is not a camera" in result.stderr
    result = provision(pi_root, tmp_path, check=False)  # a Pi without install-pi
    assert result.returncode == 2 and "run scripts/install-pi first" in result.stderr
    assert sorted(os.listdir(dock / "etc")) == ["os-release"]
