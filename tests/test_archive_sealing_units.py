"""The master key's systemd drop-in: it loads the archive's master key and the dock's key
as encrypted credentials (never plaintext ones), under the names the code reads, and a
unit carrying it passes ``systemd-analyze verify`` with no output."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from test_systemd_units import verify

ROOT = Path(__file__).resolve().parent.parent
DROP_IN = ROOT / "systemd" / "bodycam-archive-master.conf"


def credentials() -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in DROP_IN.read_text().splitlines()
        if line.startswith("LoadCredential")
    ]


def test_the_drop_in_loads_both_keys_encrypted_under_the_names_the_code_reads():
    from archive.vault import CREDENTIAL, ENCRYPTED
    from dock import credential

    text = DROP_IN.read_text()
    assert "\nLoadCredential=" not in text  # never a plaintext credential
    assert credentials() == [
        f"{CREDENTIAL}:{ENCRYPTED}",
        f"{credential.CREDENTIAL}:{credential.ENCRYPTED}",
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_a_unit_with_the_drop_in_verifies(tmp_path: Path):
    exe = Path(sys.executable).parent / "bodycam-archive"
    unit = tmp_path / "bodycam-archive-probe.service"
    unit.write_text(
        "[Unit]\nDescription=probe\n\n[Service]\nType=oneshot\nUser=bodycam\n"
        f"ExecStart={exe} --help\n" + DROP_IN.read_text().split("[Service]\n", 1)[1]
    )
    assert verify([unit]) == []
    unit.write_text(unit.read_text().replace("LoadCredentialEncrypted=", "LoadCredentialEncryptd="))
    assert any("Unknown key" in line for line in verify([unit]))  # the check can fail
