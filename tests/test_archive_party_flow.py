"""A party's copy through the archive's approval flow, as users run it (``bodycam-archive``
in real processes, both database backends), from a real simulated shift: the request for
张三, the head's approval and the archivist's export make one MP4 per act that ffprobe
reads, watermarked with the name in Chinese, with a derivation record signed by the
archive's key naming the case's originals. Without the font the export is one line naming
the package to install, exit 2, and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from corekit import PW
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.party import DERIVATION_SUFFIX, Derivation
from archive.watermark import FONT_ENV, FONT_PACKAGE


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="2m")


def run(folder: Path, *args: str, user: str = "", env: dict[str, str] | None = None):
    environ = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=PW, BODYCAM_ARCHIVE_NEW_PASSWORD=PW)
    environ.pop("DEBUG", None)
    environ.pop(FONT_ENV, None)
    environ.update(env or {})
    cmd = [*ARCHIVE_CLI, "--dir", str(folder)]
    return subprocess.run(
        [*cmd, *(["--user", user] if user else []), *args],
        capture_output=True, text=True, env=environ, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip


def test_an_approved_party_copy_is_an_mp4_with_a_signed_derivation(
    shift: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    a = tmp_path / "archive"
    url = db_url if db_url.startswith("postgresql") else ""
    init = ["init", "--store", str(shift.store), "--id", "archive-1", "--admin", "admin"]
    done = run(a, *init, *(["--database", url] if url else []))
    assert done.returncode == 0, done.stderr
    assert run(a, "user", "add", "wang", "--role", "archivist", user="admin").returncode == 0
    assert run(a, "user", "add", "zhao", "--role", "head", user="admin").returncode == 0
    opened = run(
        a, "--json", "case", "open", "--kind", "traffic stop", "--procedure", "traffic",
        "--party", "张三", "--classification", "internal", user="wang",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    number = json.loads(opened.stdout)["number"]
    first, _last = shift.acts()[0]
    att = run(
        a, "case", "attach", number, "--device", shift.device, "--act", str(first), user="wang"
    )
    assert att.returncode == 0, att.stderr
    req = run(
        a, "--json", "copy", "request", number, "--requester", "张三", "--kind", "party",
        "--purpose", "insurance claim", user="wang",
    )  # fmt: skip
    rid = str(json.loads(req.stdout)["request"])
    assert run(a, "copy", "approve", rid, "--reason", "a party", user="zhao").returncode == 0

    out = tmp_path / "copy"
    missing = run(
        a, "copy", "export", rid, "--out", str(out), user="wang",
        env={FONT_ENV: str(tmp_path / "no-such-font.ttc")},
    )  # fmt: skip
    assert missing.returncode == 2, missing
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert f"apt-get install {FONT_PACKAGE}" in missing.stderr, missing.stderr
    assert not out.exists()  # nothing written, and the request is still to be exported

    exp = run(a, "--json", "copy", "export", rid, "--out", str(out), user="wang")
    assert exp.returncode == 0, exp.stderr
    result = json.loads(exp.stdout)
    assert result["kind"] == "party" and result["files"] == 1
    mp4 = next(out.glob("*.mp4"))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(mp4)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert sorted(s["codec_name"] for s in json.loads(probe.stdout)["streams"]) == [
        "aac",
        "h264",
    ]
    record = mp4.with_name(mp4.name + DERIVATION_SUFFIX).read_bytes().strip()
    derivation = Derivation.from_bytes(record)
    derivation.verify(json.loads((a / "audit" / "archive.json").read_text())["public_key"])
    body = derivation.body
    assert body["requester"] == "张三" and body["by"] == "wang" and body["request"] == rid
    assert body["watermark"]["text"][0] == f"仅供 张三 使用 · {body['date']} 复制 · 申请 {rid}"
    signed = {r.body["sha256"] for r in shift.records if r.kind == "segment"}
    assert {s["sha256"] for s in body["sources"]} <= signed
    again = run(a, "copy", "export", rid, "--out", str(tmp_path / "copy2"), user="wang")
    assert again.returncode != 0  # once
