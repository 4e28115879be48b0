"""A party's copy through the archive's approval flow, from a real simulated shift: the
request, the head's approval and the archivist's export make one MP4 per act that ffprobe
reads, with a derivation record signed by the archive's key naming the case's originals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from corekit import PW
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.party import DERIVATION_SUFFIX, Derivation
from archive.service import Archive


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="2m")


def test_an_approved_party_copy_is_an_mp4_with_a_signed_derivation(
    shift: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    arch = Archive.create(
        tmp_path / "archive", shift.store, "archive-1", "admin", PW, database=db_url
    )
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        arch.add_user(admin, "zhao", "head", PW)
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        number = arch.open_case(wang, "traffic stop", "traffic", ["张三"], [], "internal")
        first, _last = shift.acts()[0]
        refs = arch.attach_act(wang, number, shift.device, first)
        assert refs
        rid = arch.request_copy(wang, number, "张三", "party", "insurance claim")
        arch.decide_copy(zhao, rid, True, "a party to the act")
        result = arch.export_copy(wang, rid, tmp_path / "copy", watermark_name="Zhang San")
        assert result["kind"] == "party" and result["files"] == 1
        mp4 = next((tmp_path / "copy").glob("*.mp4"))
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
        derivation.verify(arch.identity.public_key_hex)
        assert derivation.body["requester"] == "张三" and derivation.body["by"] == "wang"
        assert derivation.body["request"] == str(rid)
        named = json.dumps(derivation.body["sources"])
        assert all(r.sha256 in named for r in refs)
    finally:
        arch.close()
