"""The console's copy-request pages over a real archive, on SQLite and on a real
PostgreSQL: a party's request entered, the head's approval withholding a recording (or a
refusal with its reason), the archivist's export, each step shown with who and when; the
court bundle downloaded as a zip that ``bodycam-verify`` passes in a clean folder, and the
party's MP4 (from a real simulated shift) downloaded as exported. Each role allowed or
refused as archive/policy.py says, every refusal audited; forged forms and bad input change
nothing."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from corekit import DAY, PW, World, build_world, make_archive, staff
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import csrf_of, logged_in, page_csrf

from archive.party import DERIVATION_SUFFIX
from archive.service import Archive
from evidence.unitkey import fingerprint, show_fingerprint
from evidence.verify_cli import main as verify_main
from simulator.clock import SimClock
from simulator.unit import unit_key

ROLES = {"wang": "archivist", "li": "officer", "zhao": "head", "qian": "auditor"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path):  # noqa: F811
    archive = staff(
        make_archive(world, tmp_path / "archive", db_url, SimClock(START + 3 * DAY)), ROLES
    )
    yield archive
    archive.close()


def refusals(arch: Archive) -> list[dict]:
    return [r.body for r in arch.audit.records() if r.kind == "refusal"]


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


def case_with_acts(arch: Archive, device: str, acts: list[int], classification="internal"):
    wang = arch.login("wang", PW)
    number = arch.open_case(wang, "seizure", "seizure", ["张三"], ["A1024"], classification)
    for seq in acts:
        arch.attach_act(wang, number, device, seq)
    return number


def enter_request(client, number: str, kind: str, requester: str = "张三") -> int:
    token = page_csrf(client, f"/cases/{number}")
    done = client.post(
        f"/cases/{number}/copies",
        data={"csrf": token, "requester": requester, "kind": kind, "purpose": "复议 appeal"},
    )
    assert done.status_code == 303, done.text[:800]
    return int(done.headers["location"].rsplit("/", 1)[1])


def steps_of(html: str) -> list[tuple[str, str]]:
    """(step, who) of each row of the steps table."""
    return re.findall(r'data-step="([a-z]+)">.*?<td class="by">([^<]*)</td>', html, re.S)


def test_request_approve_withholding_export_and_a_bundle_zip_that_verifies(
    arch: Archive, world: World, tmp_path: Path
) -> None:
    number = case_with_acts(arch, world.device, [seq for seq, _ in world.acts])
    wang, zhao = logged_in(arch, "wang", PW), logged_in(arch, "zhao", PW)
    rid = enter_request(wang, number, "bundle")
    page = wang.get(f"/copies/{rid}")
    assert page.status_code == 200 and "待审批" in page.text and "张三" in page.text
    assert steps_of(page.text) == [("requested", "wang")]
    assert "copy_decide" not in page.text and f"/copies/{rid}/decide" not in page.text
    # The archivist may not decide; the refusal is audited.
    token = csrf_of(page.text)
    early = wang.post(f"/copies/{rid}/decide", data={"csrf": token, "decision": "approve"})
    assert early.status_code == 403 and "may not approve" in early.text
    assert refusals(arch)[-1]["user"] == "wang"
    # The head approves, withholding the second recording with a reason.
    page = zhao.get(f"/copies/{rid}")
    assert f'action="/copies/{rid}/decide"' in page.text
    held = arch.case_recordings(arch.login("zhao", PW), number)
    withheld = f"{held[1].device}:{held[1].seq}"
    done = zhao.post(
        f"/copies/{rid}/decide",
        data={
            "csrf": csrf_of(page.text),
            "decision": "approve",
            "reason": "供复议使用 for the appeal",
            "withhold": withheld,
            f"why:{withheld}": "旁人面部 a bystander's face",
        },
    )
    assert done.status_code == 303, done.text[:800]
    page = zhao.get(f"/copies/{rid}")
    assert "已批准" in page.text and withheld in page.text and "a bystander&#39;s face" in page.text
    assert steps_of(page.text) == [("requested", "wang"), ("approved", "zhao")]
    assert f'action="/copies/{rid}/export"' not in page.text  # the head approves, never exports
    refused = zhao.post(f"/copies/{rid}/export", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 403 and "may not export" in refused.text
    # The archivist exports, once; the page then offers the download.
    page = wang.get(f"/copies/{rid}")
    done = wang.post(f"/copies/{rid}/export", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303, done.text[:800]
    page = wang.get(f"/copies/{rid}")
    assert [s for s, _ in steps_of(page.text)] == ["requested", "approved", "exported"]
    assert steps_of(page.text)[-1] == ("exported", "wang")
    row = arch.list_copies(arch.login("zhao", PW), number)[0]
    assert row["output_sha256"] in page.text and row["exported_by"] == "wang"
    again = wang.post(f"/copies/{rid}/export", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 403  # exported once; a new copy is a new request
    # Download the zip, unpack it somewhere else, and check it as an expert would.
    got = wang.get(f"/copies/{rid}/copy.zip")
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    clean = tmp_path / "elsewhere"
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        zf.extractall(clean)
    (bundle,) = [p.parent for p in clean.rglob("manifest.json")]
    manifest = json.loads((bundle / "manifest.json").read_text())
    omitted = [(m["device"], m["seq"]) for m in manifest["media"] if m["status"] == "omitted"]
    assert omitted == [(held[1].device, held[1].seq)]
    unit_fp = show_fingerprint(unit_key(world.tmp).fingerprint)
    archive_fp = show_fingerprint(fingerprint(arch.identity.public_key_hex))
    argv = [str(bundle), "--unit-key", unit_fp, "--archive-key", archive_fp]
    assert verify_main(argv) == 0
    media = sorted(bundle.rglob("*.ts"))
    with open(media[0], "r+b") as f:  # one byte altered: bodycam-verify says so
        f.seek(300)
        byte = f.read(1)
        f.seek(300)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert verify_main(argv) == 1
    # Who may not download: the head (no export right), the auditor, the officer.
    for name in ("zhao", "qian", "li"):
        refused = logged_in(arch, name, PW).get(f"/copies/{rid}/copy.zip")
        assert refused.status_code == 403, name
        no_trace(refused.text)
    kinds = [r.kind for r in arch.audit.records()]
    assert {"copy_request", "approval", "export"} <= set(kinds)
    views = [r.body["detail"] for r in arch.audit.records() if r.kind == "view"]
    assert {"what": "copy download", "request": rid, "kind": "bundle"} in views


def test_a_refusal_says_why_and_each_role_is_held_to_the_policy(
    arch: Archive, world: World
) -> None:
    number = case_with_acts(arch, world.device, [world.acts[0][0]])
    wang, zhao = logged_in(arch, "wang", PW), logged_in(arch, "zhao", PW)
    rid = enter_request(wang, number, "party")
    token = page_csrf(zhao, f"/copies/{rid}")
    silent = zhao.post(f"/copies/{rid}/decide", data={"csrf": token, "decision": "refuse"})
    assert silent.status_code == 400 and "must say why" in silent.text
    done = zhao.post(
        f"/copies/{rid}/decide",
        data={"csrf": token, "decision": "refuse", "reason": "调查尚未结束 not over yet"},
    )
    assert done.status_code == 303
    page = wang.get(f"/copies/{rid}")
    assert "已拒绝" in page.text and "调查尚未结束 not over yet" in page.text
    assert steps_of(page.text) == [("requested", "wang"), ("refused", "zhao")]
    export = wang.post(f"/copies/{rid}/export", data={"csrf": csrf_of(page.text)})
    assert export.status_code == 403 and "no copy request approved" in export.text
    # The officer and the auditor may not enter a request; each refusal is audited.
    for name in ("li", "qian"):
        c = logged_in(arch, name, PW)
        before = len(refusals(arch))
        done = c.post(
            f"/cases/{number}/copies",
            data={"csrf": page_csrf(c), "requester": "x", "kind": "bundle"},
        )
        assert done.status_code == 403 and "may not copy request" in done.text, name
        assert [r["user"] for r in refusals(arch)[before:]] == [name]
    # A state-secret case: the archivist is refused even the request, the head is not.
    secret = arch.open_case(arch.login("zhao", PW), "raid", "seizure", [], [], "state_secret")
    done = wang.post(
        f"/cases/{secret}/copies",
        data={"csrf": page_csrf(wang), "requester": "Sun", "kind": "bundle"},
    )
    assert done.status_code == 403 and "state_secret" in done.text
    listed = wang.get("/copies")
    assert listed.status_code == 200 and f'data-request="{rid}"' in listed.text


def test_forged_forms_and_bad_input_change_nothing(arch: Archive, world: World) -> None:
    number = case_with_acts(arch, world.device, [world.acts[0][0]])
    wang, zhao = logged_in(arch, "wang", PW), logged_in(arch, "zhao", PW)
    rid = enter_request(wang, number, "bundle")
    head = arch.audit_head()
    for data in ({}, {"csrf": "forged"}):
        for c, path, fields in (
            (wang, f"/cases/{number}/copies", {"requester": "x", "kind": "bundle"}),
            (zhao, f"/copies/{rid}/decide", {"decision": "approve", "reason": "ok"}),
            (wang, f"/copies/{rid}/export", {}),
        ):
            done = c.post(path, data=data | fields)
            assert done.status_code == 403 and "CSRF" in done.text, path
            no_trace(done.text)
    assert [r["status"] for r in arch.list_copies(arch.login("zhao", PW))] == ["pending"]
    changed = [r.kind for r in arch.audit.records() if r.seq > head[0]]
    assert set(changed) <= {"view", "login"}, changed
    token = page_csrf(zhao, f"/copies/{rid}")
    for path, fields, status, words in (
        (f"/copies/{rid}/decide", {"decision": "maybe"}, 400, "approved or refused"),
        (
            f"/copies/{rid}/decide",
            {"decision": "approve", "omit_lines": "cam-001:99999=x"},
            400,
            "not a recording of case",
        ),
        (f"/copies/{rid}/decide", {"decision": "approve", "omit_lines": "cam-001"}, 400, "DEVICE"),
        ("/copies/999/decide", {"decision": "approve"}, 404, "no copy request 999"),
        ("/copies/x1/decide", {"decision": "approve"}, 400, "whole number"),
        (f"/cases/{number}/copies", {"requester": "x", "kind": "poster"}, 400, "copy kind"),
        (f"/cases/{number}/copies", {"requester": "", "kind": "bundle"}, 400, "requester"),
        ("/cases/2026-9999/copies", {"requester": "x", "kind": "bundle"}, 404, "2026-9999"),
    ):
        done = zhao.post(path, data={"csrf": token} | fields)
        assert done.status_code == status and words in done.text, (path, done.text[:600])
        no_trace(done.text)
    for path, status in (
        ("/copies/999", 404),
        ("/copies/abc", 400),
        (f"/copies/{rid}/copy.zip", 403),  # not exported yet
        (f"/copies/{rid}/files/copy-1.mp4", 403),
    ):
        got = wang.get(path)
        assert got.status_code == status, (path, got.text[:400])
        no_trace(got.text)
    assert [r["status"] for r in arch.list_copies(arch.login("zhao", PW))] == ["pending"]


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="2m")


def test_the_party_copy_downloads_as_exported(
    shift: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    archive = staff(
        Archive.create(tmp_path / "a", shift.store, "archive-1", "admin", PW, database=db_url),
        ROLES,
    )
    try:
        number = case_with_acts(archive, shift.device, [shift.acts()[0][0]])
        wang, zhao = logged_in(archive, "wang", PW), logged_in(archive, "zhao", PW)
        rid = enter_request(wang, number, "party")
        done = zhao.post(
            f"/copies/{rid}/decide",
            data={"csrf": page_csrf(zhao, f"/copies/{rid}"), "decision": "approve"},
        )
        assert done.status_code == 303
        done = wang.post(f"/copies/{rid}/export", data={"csrf": page_csrf(wang, f"/copies/{rid}")})
        assert done.status_code == 303, done.text[:800]
        page = wang.get(f"/copies/{rid}")
        names = re.findall(rf'href="/copies/{rid}/files/([^"]+)"', page.text)
        assert names == [f"copy-{number}-1.mp4"]
        got = wang.get(f"/copies/{rid}/files/{names[0]}")
        assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
        exported = archive.export_folder(rid) / names[0]
        assert got.content == exported.read_bytes()
        derivation = json.loads((exported.parent / (names[0] + DERIVATION_SUFFIX)).read_text())
        assert derivation["body"]["output"]["sha256"] == hashlib.sha256(got.content).hexdigest()
        local = tmp_path / names[0]
        local.write_bytes(got.content)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0"]
            + [str(local)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0 and "video" in probe.stdout, probe.stderr
        zipped = wang.get(f"/copies/{rid}/copy.zip")
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
            inside = sorted(Path(n).name for n in zf.namelist())
        assert inside == sorted([names[0], names[0] + DERIVATION_SUFFIX])
        # An altered copy on disk is not handed out.
        with open(exported, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xFF]))
        spoiled = wang.get(f"/copies/{rid}/files/{names[0]}")
        assert spoiled.status_code == 400 and "no longer matches" in spoiled.text
    finally:
        archive.close()
