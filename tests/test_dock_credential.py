"""The dock's key as an encrypted systemd credential (issue 10): the loader, the real
``bodycam-dock`` reading its key from ``$CREDENTIALS_DIRECTORY`` with no key file on disk,
a real ``systemd-creds`` round trip where it runs, and the install script's command lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dock.credential import CREDENTIAL, ENCRYPTED, init_identity, load_dock_identity
from evidence.exc import KeyFileError
from evidence.identity import DeviceIdentity
from evidence.record import Record

ROOT = Path(__file__).resolve().parent.parent


def credentials_dir(tmp_path: Path, key: Path) -> Path:
    """What systemd makes for LoadCredentialEncrypted=dock.key:...: a folder holding the
    decrypted credential, mode 0400, readable by the service only."""
    folder = tmp_path / "credentials"
    folder.mkdir(mode=0o500, exist_ok=True)
    os.chmod(folder, 0o700)
    shutil.copyfile(key, folder / CREDENTIAL)
    os.chmod(folder / CREDENTIAL, 0o400)
    os.chmod(folder, 0o500)
    return folder


def test_the_key_comes_from_the_credentials_directory_when_systemd_passes_it(tmp_path):
    made = DeviceIdentity.create(tmp_path / "made" / "dock.key", "dock-1")
    folder = credentials_dir(tmp_path, tmp_path / "made" / "dock.key")
    env = {"CREDENTIALS_DIRECTORY": str(folder)}
    absent = tmp_path / "var" / "dock.key"  # the plaintext file is gone
    loaded = load_dock_identity(absent, environ=env)
    assert (loaded.device_id, loaded.public_key_hex) == ("dock-1", made.public_key_hex)
    # Outside a unit the key file is used, as before; neither: one clear error.
    assert load_dock_identity(tmp_path / "made" / "dock.key", environ={}).device_id == "dock-1"
    with pytest.raises(KeyFileError, match="no dock key, and no systemd credential 'dock.key'"):
        load_dock_identity(absent, environ={})
    # A credential folder without this credential (the unit loads others): the file.
    other = tmp_path / "other-credentials"
    other.mkdir()
    with pytest.raises(KeyFileError, match="no dock key"):
        load_dock_identity(absent, environ={"CREDENTIALS_DIRECTORY": str(other)})


def test_a_credential_others_could_read_is_refused(tmp_path):
    DeviceIdentity.create(tmp_path / "made" / "dock.key", "dock-1")
    folder = tmp_path / "credentials"
    folder.mkdir()
    shutil.copyfile(tmp_path / "made" / "dock.key", folder / CREDENTIAL)
    os.chmod(folder / CREDENTIAL, 0o644)
    with pytest.raises(KeyFileError, match="mode 0644"):
        load_dock_identity(tmp_path / "x", environ={"CREDENTIALS_DIRECTORY": str(folder)})


def test_init_never_makes_a_second_key_beside_the_encrypted_one(tmp_path):
    encrypted = tmp_path / "credstore.encrypted" / "bodycam-dock.key"
    encrypted.parent.mkdir()
    encrypted.write_bytes(b"Whatever systemd-creds wrote")
    key = tmp_path / "dock-key" / "dock.key"
    with pytest.raises(KeyFileError, match="kept encrypted in"):
        init_identity(key, "dock-1", environ={}, encrypted=encrypted)
    assert not key.exists()
    made = init_identity(key, "dock-1", environ={}, encrypted=tmp_path / "absent")
    assert key.exists() and init_identity(key, "dock-1", environ={}).public_key_hex == (
        made.public_key_hex
    )


def test_the_dock_runs_on_the_credential_alone(tmp_path):
    """``bodycam-dock reconcile`` (a keeper of the store: it journals under the dock's key)
    with the key only in $CREDENTIALS_DIRECTORY, as under its unit."""
    from simulator.dockbay import ensure_dock

    key = tmp_path / "dock-key" / "dock.key"
    identity, store = ensure_dock(tmp_path / "dock", key, None)
    fingerprints = sorted(store.unit_keys)
    store.close()
    folder = credentials_dir(tmp_path, key)
    key.unlink()  # what install-dock does after encrypting it
    config = tmp_path / "dock.toml"
    config.write_text(
        f'[dock]\nstore = "{tmp_path / "dock"}"\nkey = "{key}"\nunit_keys = {fingerprints}\n'
    )
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(folder)}
    cmd = [sys.executable, "-m", "dock", "--config", str(config), "reconcile"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    journal = tmp_path / "dock" / "_docks" / identity.device_id / "journal.jsonl"
    last = Record.from_bytes(journal.read_bytes().splitlines()[-1])
    assert last.kind == "boot" and last.device == identity.device_id
    last.verify(identity.public_key_hex)  # signed with the credential's key
    env.pop("CREDENTIALS_DIRECTORY")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no dock key, and no systemd credential" in done.stderr
    assert "Traceback" not in done.stderr


def _systemd_creds_works(tmp_path: Path) -> str | None:
    """Why a real systemd-creds round trip cannot run here, or None."""
    if shutil.which("systemd-creds") is None:
        return "systemd-creds is not installed"
    if os.geteuid() != 0:
        return "systemd-creds encrypt --with-key=auto needs root (the host key)"
    probe = tmp_path / "probe"
    probe.write_text("x")
    out = tmp_path / "probe.cred"
    result = subprocess.run(
        ["systemd-creds", "encrypt", "--with-key=auto", "--name=probe", str(probe), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if result.returncode == 0 else f"systemd-creds failed: {result.stderr.strip()}"


def test_systemd_creds_round_trip_as_install_dock_and_the_units_do(tmp_path):
    why = _systemd_creds_works(tmp_path)
    if why:
        pytest.skip(why)
    key = tmp_path / "dock-key" / "dock.key"
    made = DeviceIdentity.create(key, "dock-1")
    encrypted = tmp_path / "bodycam-dock.key"
    subprocess.run(  # install-dock's command line
        [
            "systemd-creds",
            "encrypt",
            "--with-key=auto",
            f"--name={CREDENTIAL}",
            str(key),
            str(encrypted),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    seed = key.read_text().split('"seed": "')[1][:64]
    assert (
        seed not in encrypted.read_text(errors="replace")
        and b"dock-1" not in encrypted.read_bytes()
    )
    # What LoadCredentialEncrypted=dock.key:... does before the service starts.
    folder = tmp_path / "credentials"
    folder.mkdir()
    subprocess.run(
        [
            "systemd-creds",
            "decrypt",
            f"--name={CREDENTIAL}",
            str(encrypted),
            str(folder / CREDENTIAL),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    os.chmod(folder / CREDENTIAL, 0o400)
    loaded = load_dock_identity(tmp_path / "gone", environ={"CREDENTIALS_DIRECTORY": str(folder)})
    assert loaded.public_key_hex == made.public_key_hex
    # The name is bound: the same file cannot be passed off as another credential.
    wrong = subprocess.run(
        ["systemd-creds", "decrypt", "--name=other.key", str(encrypted), "-"],
        capture_output=True,
        timeout=60,
    )
    assert wrong.returncode != 0


def _debian(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    return root


def install_dock(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(ROOT / "scripts" / "install-dock"), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def test_install_dock_encrypts_the_key_and_removes_the_plaintext(tmp_path):
    root = _debian(tmp_path / "dock")
    out = install_dock("--dry-run", "--root", str(root)).stdout
    lines = out.splitlines()
    init = lines.index(
        "would run: runuser -u bodycam -- /opt/bodycam/venv/bin/bodycam-dock "
        "--config /etc/bodycam/dock.toml init"
    )
    encrypt = lines.index(
        "would run: systemd-creds encrypt --with-key=auto --name=dock.key "
        f"/var/lib/bodycam/dock-key/dock.key {ENCRYPTED}"
    )
    remove = lines.index("would run: shred --remove /var/lib/bodycam/dock-key/dock.key")
    enable = lines.index("would run: systemctl enable --now bodycam-dock.service")
    assert init < encrypt < remove < enable  # made, encrypted, plaintext gone, then started
    assert "would run: install -d -o root -g root -m 0700 /etc/credstore.encrypted" in lines
    # Installed again: the encrypted key is kept, and no new key is made.
    (root / ENCRYPTED.lstrip("/")).parent.mkdir(parents=True)
    (root / ENCRYPTED.lstrip("/")).write_bytes(b"sealed")
    again = install_dock("--root", str(root)).stdout
    assert f"keeping the encrypted dock key {root}{ENCRYPTED}" in again
    assert "systemd-creds" not in again and "bodycam-dock init" not in again.replace(
        "(bodycam-dock init, as bodycam)", ""
    )
