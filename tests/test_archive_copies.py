"""Copies for the parties on both database backends: a request is recorded, the head
approves (withholding a confidential recording, listed) or refuses, and only then may an
archivist export; the court bundle it makes verifies in a clean folder and fails once
altered. Each step, and each refusal, is in the audit log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import ArchiveError, Refused
from evidence.unitkey import fingerprint
from evidence.verify import verify_path
from simulator.clock import SimClock
from simulator.unit import unit_key


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 3 * DAY))
    yield archive
    archive.close()


def test_request_approval_export_and_a_bundle_that_verifies(arch, world: World, tmp_path) -> None:
    admin = arch.login("admin", PW)
    for name, role in (("wang", "archivist"), ("zhao", "head"), ("li", "officer")):
        arch.add_user(admin, name, role, PW, officer="A1024" if role == "officer" else "")
    wang, zhao, li = (arch.login(n, PW) for n in ("wang", "zhao", "li"))
    number = arch.open_case(
        wang, "seizure", "seizure", ["Zhang San"], ["A1024"], "personal_privacy"
    )
    for seq, _files in world.acts:
        arch.attach_act(wang, number, world.device, seq)
    first_act = arch.case_recordings(wang, number)[:3]
    rid = arch.request_copy(wang, number, "Zhang San", "bundle", "appeal")
    with pytest.raises(Refused, match="no copy request approved"):
        arch.export_copy(wang, rid, tmp_path / "early")
    assert not (tmp_path / "early").exists()
    with pytest.raises(Refused, match="may not approve"):
        arch.decide_copy(li, rid, True)
    with pytest.raises(ArchiveError, match="not a recording"):
        arch.decide_copy(zhao, rid, True, omit={"cam-001:99999": "x"})
    withheld = f"{first_act[1].device}:{first_act[1].seq}"
    arch.decide_copy(zhao, rid, True, "approved for the appeal", {withheld: "a bystander's face"})
    with pytest.raises(Refused, match="may not export"):
        arch.export_copy(zhao, rid, tmp_path / "by-head")  # the head approves, never exports
    result = arch.export_copy(wang, rid, tmp_path / "bundle")
    assert result["media_files"] == 4 and result["omitted"] == 1
    with pytest.raises(Refused):
        arch.export_copy(wang, rid, tmp_path / "twice")  # exported once; a new request is new
    # a clean folder anywhere: the bundle alone, the unit key and the archive key named
    clean = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(tmp_path / "bundle", clean)
    unit_fp = unit_key(world.tmp).fingerprint
    archive_fp = fingerprint(arch.identity.public_key_hex)
    report = verify_path(clean, unit_keys={unit_fp}, archive_keys={archive_fp})
    assert report.kind == "bundle" and report.intact, [str(p) for p in report.problems]
    manifest = json.loads((clean / "manifest.json").read_text())
    omitted = [m for m in manifest["media"] if m["status"] == "omitted"]
    assert [(m["device"], m["seq"]) for m in omitted] == [(first_act[1].device, first_act[1].seq)]
    media = sorted(p for p in clean.rglob("*.ts"))
    with open(media[0], "r+b") as f:
        f.seek(500)
        byte = f.read(1)
        f.seek(500)
        f.write(bytes([byte[0] ^ 0xFF]))
    altered = verify_path(clean, unit_keys={unit_fp}, archive_keys={archive_fp})
    assert not altered.intact and "media_changed" in {p.code for p in altered.problems}
    listed = arch.list_copies(zhao, number)
    assert [(r["id"], r["status"], r["output_sha256"]) for r in listed] == [
        (rid, "exported", result["sha256"])
    ]
    kinds = [r.kind for r in arch.audit.records()]
    assert {"copy_request", "approval", "export"} <= set(kinds)
    assert kinds.count("refusal") == 4


def test_refused_requests_and_confidential_cases_are_refused_with_the_reason(
    arch, world: World, tmp_path
) -> None:
    admin = arch.login("admin", PW)
    arch.add_user(admin, "wang", "archivist", PW)
    arch.add_user(admin, "zhao", "head", PW)
    wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
    number = arch.open_case(wang, "inspection", "traffic", ["Qian"], [], "internal")
    rid = arch.request_copy(wang, number, "Qian", "party", "insurance")
    with pytest.raises(ArchiveError, match="must say why"):
        arch.decide_copy(zhao, rid, False)
    arch.decide_copy(zhao, rid, False, "the investigation is not over")
    with pytest.raises(ArchiveError, match="already refused"):
        arch.decide_copy(zhao, rid, True)
    with pytest.raises(Refused, match="refused"):
        arch.export_copy(wang, rid, tmp_path / "x")
    secret = arch.open_case(zhao, "raid", "seizure", [], [], "state_secret")
    with pytest.raises(Refused, match="state_secret"):
        arch.request_copy(wang, secret, "Sun", "bundle", "")
    sid = arch.request_copy(zhao, secret, "Sun", "bundle", "court")
    with pytest.raises(ArchiveError, match="no recordings"):
        arch.decide_copy(zhao, sid, True)
    arch.attach_act(zhao, secret, world.device, world.acts[1][0])
    arch.decide_copy(zhao, sid, True, "for the court")
    with pytest.raises(Refused, match="classified state_secret"):
        arch.export_copy(wang, sid, tmp_path / "secret")
    assert not (tmp_path / "secret").exists()
