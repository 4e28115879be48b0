"""docs/journal-format.md is enough to check a record without our code: openssl does it.

The signed message is rebuilt here with Python's json module alone, following the doc's
rules (not evidence.canonical), and the doc's shell recipe is run as written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_verify import make_device

from evidence.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "journal-format.md"
DER_PREFIX = "302a300506032b6570032100"
ANNOUNCEMENT = "为保护您的合法权益，监督我们的执法行为，本次行政执法全程录音、录像。"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def folder(tmp_path, identity):
    storage = make_device(tmp_path / "dev", identity)
    with Journal(storage.journal_path, identity) as journal:
        journal.append("announcement", {"text": ANNOUNCEMENT, "sha256": "0f" * 32})
        journal.append("marker", {"note": 'quote " backslash \\ tab \t bell \x07 sig "sig":"x",'})
    return storage.root


def doc_message(line: bytes) -> tuple[bytes, bytes]:
    """(message, signature) built from the doc's section 3-4 with the json module only."""
    record = json.loads(line)
    signature = bytes.fromhex(record.pop("sig"))
    message = json.dumps(record, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8")
    return message, signature


def pem_from_raw(public_key_hex: str, where: Path) -> Path:
    der = where / "key.der"
    der.write_bytes(bytes.fromhex(DER_PREFIX + public_key_hex))
    pem = where / "key.pem"
    subprocess.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem],
                   check=True, capture_output=True)
    return pem


def openssl_verify(pem: Path, message: bytes, signature: bytes, where: Path):
    (where / "msg.bin").write_bytes(message)
    (where / "sig.bin").write_bytes(signature)
    return subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin",
         "-in", where / "msg.bin", "-sigfile", where / "sig.bin"],
        capture_output=True, text=True)


def openssl_sha256(path: Path) -> str:
    out = subprocess.run(["openssl", "dgst", "-sha256", "-r", path], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[0]


def test_openssl_verifies_every_record_and_the_chain(folder, tmp_path, identity):
    assert DER_PREFIX in DOC.read_text()
    pem = pem_from_raw(identity.public_key_hex, tmp_path)
    lines = (folder / "journal.jsonl").read_bytes().splitlines()
    assert any(ANNOUNCEMENT.encode() in line for line in lines)  # raw UTF-8, not \u escapes
    prev = "0" * 64
    for n, line in enumerate(lines):
        message, signature = doc_message(line)
        assert len(signature) == 64
        result = openssl_verify(pem, message, signature, tmp_path)
        assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout
        record = json.loads(line)
        assert record["prev"] == prev and record["seq"] == n
        (tmp_path / "line.bin").write_bytes(line)
        prev = openssl_sha256(tmp_path / "line.bin")


def test_openssl_rejects_an_altered_record(folder, tmp_path, identity):
    pem = pem_from_raw(identity.public_key_hex, tmp_path)
    line = (folder / "journal.jsonl").read_bytes().splitlines()[4]
    message, signature = doc_message(line)
    altered = message.replace(b"identity checked", b"identity skipped")
    assert altered != message
    result = openssl_verify(pem, altered, signature, tmp_path)
    assert result.returncode != 0 and "Verification Failure" in result.stdout + result.stderr


def test_openssl_dgst_matches_segment_records(folder):
    segments = [json.loads(line) for line in (folder / "journal.jsonl").read_bytes().splitlines()]
    segments = [r for r in segments if r["kind"] in ("segment", "photo")]
    assert len(segments) == 3
    for record in segments:
        path = folder / record["body"]["file"]
        assert openssl_sha256(path) == record["body"]["sha256"]
        assert path.stat().st_size == record["body"]["size"]


def _doc_recipes() -> tuple[str, str]:
    text = DOC.read_text()
    section = text[text.index("## 8. Checking by hand"):text.index("## 9.")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    return blocks[0], blocks[1]


@pytest.mark.skipif(shutil.which("basenc") is None, reason="needs coreutils basenc")
def test_the_docs_shell_recipe_verifies_each_line(folder, identity, tmp_path):
    recipe, python_recipe = _doc_recipes()
    lines = (folder / "journal.jsonl").read_bytes().splitlines()
    for n in range(1, len(lines) + 1):
        env = f"set -euo pipefail\nN={n}\nKEY={identity.public_key_hex}\nW={tmp_path}\n"
        result = subprocess.run(["bash", "-c", env + recipe], cwd=folder, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        assert "Signature Verified Successfully" in result.stdout
        assert hashlib.sha256(lines[n - 1]).hexdigest() in result.stdout
        expected = doc_message(lines[n - 1])[0]
        assert (tmp_path / "msg.bin").read_bytes() == expected  # the sed rule
        subprocess.run(["bash", "-c", env + python_recipe], cwd=folder, check=True)
        assert (tmp_path / "msg.bin").read_bytes() == expected  # the python3 one-liner
    # The recipe wrote nothing into the evidence folder.
    assert sorted(p.name for p in folder.iterdir()) == ["identity.json", "journal.jsonl",
                                                        "media"]
