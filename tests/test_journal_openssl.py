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
    message = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    return message, signature


def pem_from_raw(public_key_hex: str, where: Path) -> Path:
    der = where / "key.der"
    der.write_bytes(bytes.fromhex(DER_PREFIX + public_key_hex))
    pem = where / "key.pem"
    subprocess.run(
        ["openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem],
        check=True,
        capture_output=True,
    )
    return pem


def openssl_verify(pem: Path, message: bytes, signature: bytes, where: Path):
    (where / "msg.bin").write_bytes(message)
    (where / "sig.bin").write_bytes(signature)
    return subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            pem,
            "-rawin",
            "-in",
            where / "msg.bin",
            "-sigfile",
            where / "sig.bin",
        ],
        capture_output=True,
        text=True,
    )


def openssl_sha256(path: Path) -> str:
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-r", path], check=True, capture_output=True, text=True
    ).stdout
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


def _doc_blocks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## 8. Checking by hand") : text.index("## 9.")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _doc_recipes() -> tuple[str, str]:
    blocks = _doc_blocks()
    return blocks[0], blocks[1]


def doc_recipe(name: str) -> str:
    """A named recipe of section 8 (its block starts with ``# recipe: NAME``)."""
    (block,) = [b for b in _doc_blocks() if b.startswith(f"# recipe: {name}\n")]
    return block


def run_recipe(names: list[str], cwd: Path, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\nexport LC_ALL=C\n" + "".join(
        f"{k}={v}\n" for k, v in {"W": str(tmp), **env}.items()
    )
    script += "\n".join(doc_recipe(n) for n in names)
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def docked(tmp_path_factory):
    """A real docking: the camera's folder with its receipt and wipe, and the dock store
    with its dock journal and unit-signed registry."""
    from dockkit import dock_once, make_camera, make_dock

    tmp = tmp_path_factory.mktemp("openssl-docked")
    camera, registry = make_camera(tmp)
    camera.record(2, 30_000)
    dock, store = make_dock(tmp, registry)
    result, _ = dock_once(store, dock, camera)
    assert result.outcome == "stored", result.reason
    camera.close()
    store.close()
    return tmp, camera


needs_basenc = pytest.mark.skipif(shutil.which("basenc") is None, reason="needs basenc")


@needs_basenc
def test_the_registry_recipe_checks_its_signature_and_prints_the_fingerprint(docked, tmp_path):
    from evidence.registry import Registry

    tmp, camera = docked
    store = tmp / "dock"
    registry = Registry.load(store / "registry.json")
    result = run_recipe(
        ["edverify", "registry"], store, tmp_path, DEVICE="cam-001", DOCK="dock-sim"
    )
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    assert registry.fingerprint in result.stdout  # what the head of unit hands over
    assert (tmp_path / "regmsg.bin").read_bytes() == doc_message(
        (store / "registry.json").read_bytes().strip()
    )[0]  # the sed rule = the json rule
    altered = tmp_path / "altered"
    altered.mkdir()
    text = (store / "registry.json").read_text().replace('"officer":"A1024"', '"officer":"B9999"')
    (altered / "registry.json").write_text(text)
    bad = run_recipe(["edverify", "registry"], altered, tmp_path, DEVICE="cam-001", DOCK="dock-sim")
    assert bad.returncode != 0 and "Verification Failure" in bad.stdout + bad.stderr


@needs_basenc
def test_the_receipt_recipe_checks_the_docks_signature(docked, tmp_path):
    tmp, camera = docked
    rows = (camera.root / "journal.jsonl").read_bytes().splitlines()
    n = next(i for i, row in enumerate(rows, 1) if b'"kind":"receipt"' in row)
    keys = run_recipe(
        ["edverify", "registry"], tmp / "dock", tmp_path, DEVICE="cam-001", DOCK="dock-sim"
    )
    assert keys.returncode == 0, keys.stderr
    script_keys = ["registry", "receipt"]
    result = run_recipe(
        ["edverify", *script_keys],
        camera.root,
        tmp_path,
        N=str(n),
        DEVICE="cam-001",
        DOCK="dock-sim",
    )
    assert result.returncode != 0  # the registry lives in the store, not on the card
    shutil.copy(tmp / "dock" / "registry.json", tmp_path / "registry.json")
    script = (
        doc_recipe("edverify")
        + "\n"
        + doc_recipe("registry").replace("registry.json", f"{tmp_path}/registry.json")
        + "\n"
        + doc_recipe("receipt")
    )
    env = f"set -euo pipefail\nW={tmp_path}\nN={n}\nDEVICE=cam-001\nDOCK=dock-sim\n"
    result = subprocess.run(
        ["bash", "-c", env + script], cwd=camera.root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Signature Verified Successfully") == 2  # registry, receipt
    receipt = json.loads(rows[n - 1])
    assert receipt["body"]["upto_hash"] in result.stdout  # the covered record's hash
    rows[n - 1] = rows[n - 1].replace(b'"upto_seq":', b'"upto_seq":1')
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "journal.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    bad = subprocess.run(
        ["bash", "-c", env + script], cwd=tmp_path / "card", capture_output=True, text=True
    )
    assert bad.returncode != 0


@needs_basenc
def test_the_store_recipe_lists_every_stored_file_ok_and_finds_one_removed(docked, tmp_path):
    tmp, camera = docked
    store = tmp_path / "dock"
    shutil.copytree(tmp / "dock", store)
    result = run_recipe(["store"], store, tmp_path, DOCK="dock-sim")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    files = [x for x in lines if " head " not in x]
    assert len(files) == 2 and all(x.endswith(" OK") for x in lines), result.stdout
    assert any(" head " in x for x in lines)
    victim = files[0].split()[0]
    (store / victim).unlink()
    again = run_recipe(["store"], store, tmp_path, DOCK="dock-sim").stdout
    assert f"{victim} MISSING OR ALTERED" in again


@pytest.mark.skipif(shutil.which("basenc") is None, reason="needs coreutils basenc")
def test_the_docs_shell_recipe_verifies_each_line(folder, identity, tmp_path):
    recipe, python_recipe = _doc_recipes()
    lines = (folder / "journal.jsonl").read_bytes().splitlines()
    for n in range(1, len(lines) + 1):
        env = f"set -euo pipefail\nN={n}\nKEY={identity.public_key_hex}\nW={tmp_path}\n"
        result = subprocess.run(
            ["bash", "-c", env + recipe], cwd=folder, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "Signature Verified Successfully" in result.stdout
        assert hashlib.sha256(lines[n - 1]).hexdigest() in result.stdout
        expected = doc_message(lines[n - 1])[0]
        assert (tmp_path / "msg.bin").read_bytes() == expected  # the sed rule
        subprocess.run(["bash", "-c", env + python_recipe], cwd=folder, check=True)
        assert (tmp_path / "msg.bin").read_bytes() == expected  # the python3 one-liner
    # The recipe wrote nothing into the evidence folder (the journal keeps its reserve).
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["identity.json", "journal.jsonl", "journal.reserve", "media"]


@needs_basenc
def test_the_docks_signed_head_checks_with_the_record_recipe(docked, tmp_path):
    """The dock's status (its journal head, signed) is a message: section 8's first recipe
    checks it under the dock's key from the registry, and the head names the last record."""
    from evidence.registry import Registry

    tmp, _ = docked
    store = tmp / "dock"
    (message_file,) = (store / ".status" / "dock-heads").glob("*.json")
    folder = tmp_path / "msg"
    folder.mkdir()
    (folder / "journal.jsonl").write_bytes(message_file.read_bytes())
    key = Registry.load(store / "registry.json").dock("dock-sim").public_key
    recipe, _ = _doc_recipes()
    env = f"set -euo pipefail\nN=1\nKEY={key}\nW={tmp_path}\n"
    result = subprocess.run(
        ["bash", "-c", env + recipe], cwd=folder, capture_output=True, text=True
    )
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout
    head = json.loads(message_file.read_bytes())["body"]["head"]
    last = (store / "_docks/dock-sim/journal.jsonl").read_bytes().splitlines()[-1]
    assert head["hash"] == hashlib.sha256(last).hexdigest()
    (folder / "journal.jsonl").write_bytes(
        message_file.read_bytes().replace(b'"state":"dock"', b'"state":"dark"')
    )
    bad = subprocess.run(["bash", "-c", env + recipe], cwd=folder, capture_output=True, text=True)
    assert bad.returncode != 0


@needs_basenc
def test_the_handshake_recipe_checks_the_head_the_camera_signed(docked, tmp_path):
    """The dock's `docking` record keeps the camera's signed handshake: openssl checks it
    under the camera's key, and the head names a record of the camera's journal."""
    from evidence.registry import Registry

    tmp, camera = docked
    journal = tmp / "dock/_docks/dock-sim/journal.jsonl"
    rows = journal.read_bytes().splitlines()
    n = next(i for i, row in enumerate(rows, 1) if b'"kind":"docking"' in row)
    key = Registry.load(tmp / "dock/registry.json").get("cam-001").public_key
    result = run_recipe(
        ["edverify", "handshake"], tmp, tmp_path, N=str(n), J=str(journal), DOCK="dock-sim", KEY=key
    )
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    head = json.loads(result.stdout.strip().splitlines()[-1])
    line = (camera.root / "journal.jsonl").read_bytes().splitlines()[head["seq"]]
    assert hashlib.sha256(line).hexdigest() == head["hash"]
    other = Registry.load(tmp / "dock/registry.json").dock("dock-sim").public_key
    bad = run_recipe(
        ["edverify", "handshake"],
        tmp,
        tmp_path,
        N=str(n),
        J=str(journal),
        DOCK="dock-sim",
        KEY=other,
    )  # not the camera's key
    assert bad.returncode != 0
