"""Sealing, on both backends, from a real simulated shift: the media of a confidential case
are unreadable on disk without the archive's keys (no 4 KiB run of a segment anywhere in
the store or the archive; ffprobe cannot read a sealed file), open only through an
approved export (the bundle verifies in a clean folder, the media hash is the camera's),
are refused to anyone else (audited), verify in the store as present-but-sealed (and fail
when a sealed file is altered or removed), and survive a rotation of the master key."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from corekit import PW
from dockkit import store_trust
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import Refused
from archive.service import Archive
from archive.vault import CREDENTIAL, VaultError
from evidence.dockjournal import key_name, sealed_name
from evidence.journal import JOURNAL_NAME, readable_records
from evidence.unitkey import fingerprint
from evidence.verify import verify_path

BLOCK = 4096


@pytest.fixture(scope="module")
def shift_once(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="2m")


def copy_shift(shift: Shift, into: Path) -> Shift:
    """A test's own copy of the shift (sealing changes the store)."""
    shutil.copytree(shift.root, into, symlinks=True)
    folder = into / shift.folder.relative_to(shift.root)
    return Shift(into, into / "dock", shift.device, folder, shift.records)


def dock_toml(shift: Shift) -> Path:
    """The dock's dock.toml as the archive names it (dock_config): its store, key, trust."""
    fp = sorted(store_trust(shift.root))[0]
    path = shift.root / "dock.toml"
    path.write_text(
        f'[dock]\nstore = "{shift.store}"\nkey = "{shift.root / "dock-key" / "dock.key"}"\n'
        f'unit_keys = ["{fp}"]\n'
    )
    return path


def sealing_archive(shift: Shift, folder: Path, url: str) -> Archive:
    Archive.create(folder, shift.store, "archive-1", "admin", PW, database=url).close()
    with open(folder / "archive.toml", "a") as f:
        f.write(f'dock_config = "{dock_toml(shift)}"\n')
    return Archive.open(folder)


def people(arch: Archive) -> dict:
    admin = arch.login("admin", PW)
    for name, role in (
        ("wang", "archivist"),
        ("zhao", "head"),
        ("li", "officer"),
        ("sun", "supervisor"),
    ):
        arch.add_user(admin, name, role, PW, officer="A1024" if role == "officer" else "")
    return {n: arch.login(n, PW) for n in ("admin", "wang", "zhao", "li", "sun")}


def segments(shift: Shift) -> list:
    return [r for r in shift.records if r.kind == "segment"]


def blocks(data: bytes) -> list[bytes]:
    """Every aligned 4 KiB block: any copied run of 8 KiB or more holds one of them."""
    return [data[i : i + BLOCK] for i in range(0, len(data) - BLOCK + 1, BLOCK)]


def leaks(roots: list[Path], plaintexts: list[bytes], skip: set[Path]) -> list[str]:
    """Files under ``roots`` (but ``skip``) that hold a 4 KiB run of a plaintext."""
    needles = [b for p in plaintexts for b in blocks(p)]
    assert needles
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.resolve() not in skip:
                data = path.read_bytes()
                if any(n in data for n in needles):
                    found.append(str(path))
    return found


def ffprobe_reads(path: Path, fmt: str | None = None) -> bool:
    """ffprobe finds streams in ``path`` (read as ``fmt``, when given, instead of guessed:
    ffprobe's guess finds a raw audio stream in random bytes now and then)."""
    forced = ["-f", fmt] if fmt else []
    done = subprocess.run(
        ["ffprobe", "-v", "error", *forced, "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0 and bool(json.loads(done.stdout or "{}").get("streams"))


@pytest.mark.parametrize("key_in", ["file", "credential"])
def test_a_confidential_recording_is_sealed_and_opens_only_through_an_approved_export(
    shift_once: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key_in: str,
) -> None:
    shift = copy_shift(shift_once, tmp_path / "shift")
    if key_in == "credential":  # systemd's credential folder, outside store and archive
        creds = tmp_path / "credentials"
        creds.mkdir(mode=0o700)
        (creds / CREDENTIAL).write_text(os.urandom(32).hex() + "\n")
        os.chmod(creds / CREDENTIAL, 0o400)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    segs = segments(shift)
    plain = {r.seq: (shift.folder / r.body["file"]).read_bytes() for r in segs}
    assert all(ffprobe_reads(shift.folder / r.body["file"], "mpegts") for r in segs)  # can fail
    arch = sealing_archive(shift, tmp_path / "archive", db_url)
    try:
        who = people(arch)
        number = arch.open_case(
            who["wang"], "seizure", "seizure", ["Zhang San"], ["A1024"], "personal_privacy"
        )
        refs = [
            ref
            for first, _last in shift.acts()
            for ref in arch.attach_act(who["wang"], number, shift.device, first)
        ]
        sealed_refs = {r.seq for r in refs}
        assert sealed_refs == set(plain)  # every segment of the shift (they share blocks)
        shown = arch.show_case(who["wang"], number)["entries"]
        assert [e["sealed"] for e in shown if e["kind"] == "recording"] == [True] * len(refs)
        # sealed: no clear file, a sealed file and its key, a signed dock record each
        for r in segs:
            clear = shift.folder / r.body["file"]
            sealed = shift.folder / sealed_name(r.body["file"])
            if r.seq in sealed_refs:
                assert not clear.exists() and sealed.is_file()
                assert (shift.folder / key_name(sealed_name(r.body["file"]))).is_file()
                assert not ffprobe_reads(sealed, "mpegts")  # not the recording's MPEG-TS
            else:
                assert clear.is_file() and not sealed.exists()
        dock_records = [
            rec
            for p in (shift.store / "_docks").glob(f"*/{JOURNAL_NAME}")
            for rec in readable_records(p)
            if rec.kind == "sealed"
        ]
        assert sorted(rec.body["seq"] for rec in dock_records) == sorted(sealed_refs)
        for rec in dock_records:
            b = rec.body
            camera = next(r for r in segs if r.seq == b["seq"])
            assert b["sha256"] == camera.body["sha256"]
            assert b["authority"]["case"] == number and b["authority"]["user"] == "wang"
            sealed_bytes = (shift.folder / b["sealed_file"]).read_bytes()
            assert hashlib.sha256(sealed_bytes).hexdigest() == b["sealed_sha256"]
            audit = arch.audit.records()[b["authority"]["audit_seq"]]
            assert audit.kind == "seal" and audit.body["detail"]["seq"] == b["seq"]
        # a copy of the disk: no 4 KiB run of a sealed segment in the store or the archive
        skip = set() if key_in == "credential" else {arch.master_key_path.resolve()}
        sealed_plain = [plain[s] for s in sealed_refs]
        assert leaks([shift.store, arch.folder], sealed_plain, skip) == []
        assert leaks([shift_once.store], sealed_plain, set())  # the scan finds clear media
        # the store verifies: sealed segments are present-but-sealed
        report = verify_path(shift.store, unit_keys=store_trust(shift.root))
        assert report.intact, [str(p) for p in report.problems]
        notes = [n for d in report.devices for n in d.notes]
        assert sum("sealed by dock" in n for n in notes) == len(sealed_refs)
        # refused to anyone not entitled, and audited
        rid = arch.request_copy(who["wang"], number, "Zhang San", "bundle", "appeal")
        arch.decide_copy(who["zhao"], rid, True, "for the appeal")
        for name in ("li", "sun", "zhao"):
            with pytest.raises(Refused):
                arch.export_copy(who[name], rid, tmp_path / f"by-{name}")
            assert not (tmp_path / f"by-{name}").exists()
        refusals = [r for r in arch.audit.records() if r.kind == "refusal"]
        assert {r.body["user"] for r in refusals} >= {"li", "sun", "zhao"}
        # the entitled, approved export decrypts into the bundle; it verifies elsewhere
        result = arch.export_copy(who["wang"], rid, tmp_path / "bundle")
        assert result["media_files"] == len(sealed_refs)
        clean = tmp_path / "elsewhere" / "bundle"
        shutil.copytree(tmp_path / "bundle", clean)
        archive_fp = fingerprint(arch.identity.public_key_hex)
        bundle = verify_path(clean, unit_keys=store_trust(shift.root), archive_keys={archive_fp})
        assert bundle.kind == "bundle" and bundle.intact, [str(p) for p in bundle.problems]
        manifest = json.loads((clean / "manifest.json").read_text())
        for m in manifest["media"]:
            if m["status"] == "included":
                data = (clean / m["file"]).read_bytes()
                camera = next(r for r in segs if r.seq == m["seq"])
                assert hashlib.sha256(data).hexdigest() == camera.body["sha256"]
                assert data == plain[m["seq"]]
        # a party's copy decodes the sealed originals (decrypted in memory, hash checked)
        pid = arch.request_copy(who["wang"], number, "Zhang San", "party", "insurance")
        arch.decide_copy(who["zhao"], pid, True, "a party to the act")
        party = arch.export_copy(who["wang"], pid, tmp_path / "party")
        mp4s = sorted((tmp_path / "party").glob("*.mp4"))
        assert len(mp4s) == party["files"] and all(ffprobe_reads(p) for p in mp4s)
        named = " ".join(p.with_name(p.name + ".derivation.json").read_text() for p in mp4s)
        assert all(r.sha256 in named for r in refs)
    finally:
        arch.close()


def test_store_verify_fails_when_a_sealed_file_is_altered_or_removed(
    shift_once: Shift,
    tmp_path: Path,
) -> None:
    shift = copy_shift(shift_once, tmp_path / "shift")
    arch = sealing_archive(shift, tmp_path / "archive", "")
    try:
        who = people(arch)
        number = arch.open_case(who["wang"], "raid", "seizure", [], ["A1024"], "internal")
        first, _last = shift.acts()[0]
        refs = arch.attach_act(who["wang"], number, shift.device, first)
        assert all((shift.folder / r.file).exists() for r in refs)  # internal: in clear
        arch.classify(who["wang"], number, "business_secret", "names a supplier")
        assert not any((shift.folder / r.file).exists() for r in refs)  # classified up: sealed
    finally:
        arch.close()
    trust = store_trust(shift.root)
    assert verify_path(shift.store, unit_keys=trust).intact
    sealed = shift.folder / sealed_name(refs[0].file)
    original = sealed.read_bytes()
    os.chmod(sealed, 0o640)
    sealed.write_bytes(original[:1000] + bytes([original[1000] ^ 1]) + original[1001:])
    report = verify_path(shift.store, unit_keys=trust)
    assert not report.intact
    assert [p.code for p in report.problems] == ["media_changed"], report.problems
    sealed.unlink()
    report = verify_path(shift.store, unit_keys=trust)
    assert [p.code for p in report.problems] == ["media_missing"], report.problems
    assert "sealed file is missing" in report.problems[0].message
    sealed.write_bytes(original)
    assert verify_path(shift.store, unit_keys=trust).intact
    key_file = shift.folder / key_name(sealed_name(refs[0].file))
    key_file.rename(tmp_path / "moved.key")
    report = verify_path(shift.store, unit_keys=trust)
    assert [p.code for p in report.problems] == ["media_missing"], report.problems


def test_rotation_rewraps_every_key_and_the_old_master_key_opens_nothing(
    shift_once: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    from archive.vault import Vault

    shift = copy_shift(shift_once, tmp_path / "shift")
    arch = sealing_archive(shift, tmp_path / "archive", db_url)
    try:
        who = people(arch)
        number = arch.open_case(who["zhao"], "raid", "seizure", [], ["A1024"], "state_secret")
        doc = tmp_path / "statement.txt"
        doc.write_bytes(b"the statement " * 500)
        digest = arch.attach_document(who["zhao"], number, str(doc), "statement")
        first, _last = shift.acts()[0]
        refs = arch.attach_act(who["zhao"], number, shift.device, first)
        old = arch.master_key_path.read_bytes()
        with pytest.raises(Refused):
            arch.rotate_master_key(who["wang"])  # an archivist does not manage keys
        # a rotation cut short (the process dies at the first media key) is resumed
        import archive.sealing as sealing

        real = sealing._write_new

        def dies(path, data):
            raise OSError("killed mid-rotation")

        sealing._write_new = dies
        try:
            with pytest.raises(OSError, match="killed"):
                arch.rotate_master_key(who["admin"])
        finally:
            sealing._write_new = real
        assert (arch.folder / "key" / "master.next").exists()
        assert arch.master_key_path.read_bytes() == old
        arch._vault = None  # a new process: both keys open while the rotation is under way
        assert arch.read_document(who["zhao"], number, digest, tmp_path / "mid") > 0
        assert hashlib.sha256(arch.sealed_source(refs[0]).open().read()).hexdigest()
        result = arch.rotate_master_key(who["admin"])
        assert result == {"documents": 0, "media": len(refs), "credential": False}
        assert arch.master_key_path.read_bytes() != old
        assert not (arch.folder / "key" / "master.next").exists()
        # read back under the new key: the document and the sealed media
        out = tmp_path / "doc-back"
        assert arch.read_document(who["zhao"], number, digest, out) == doc.stat().st_size
        for ref in refs:
            source = arch.sealed_source(ref)
            assert source is not None
            assert hashlib.sha256(source.open().read()).hexdigest() == ref.sha256
        # the old master key opens nothing
        (tmp_path / "old.key").write_bytes(old)
        os.chmod(tmp_path / "old.key", 0o600)
        stale = Vault(tmp_path / "old.key")
        for ref in refs:
            source = arch.sealed_source(ref)
            with pytest.raises(VaultError, match="does not open"):
                type(source)(source.ref, source.sealed, source.key_file, stale).open()
        arch._vault = stale
        with pytest.raises(VaultError, match="does not open"):
            arch.read_document(who["zhao"], number, digest, tmp_path / "doc-old")
        kinds = [r.body["detail"].get("event") for r in arch.audit.records() if r.kind == "key"]
        assert kinds.count("rotated") == 1 and kinds.count("rotation started") == 2
    finally:
        arch.close()


def test_a_recording_another_higher_case_holds_is_exported_only_to_who_is_cleared(
    shift_once: Shift,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    shift = copy_shift(shift_once, tmp_path / "shift")
    arch = sealing_archive(shift, tmp_path / "archive", db_url)
    try:
        who = people(arch)
        first, _last = shift.acts()[0]
        secret = arch.open_case(who["zhao"], "raid", "seizure", [], [], "state_secret")
        refs = arch.attach_act(who["zhao"], secret, shift.device, first)
        assert not (shift.folder / refs[0].file).exists()  # sealed for the state secret
        plain = arch.open_case(who["wang"], "inspection", "traffic", [], [], "internal")
        # the archivist is not cleared for the state secret: may not file it anywhere
        with pytest.raises(Refused, match=f"also in case {secret} is classified state_secret"):
            arch.attach_act(who["wang"], plain, shift.device, first)
        assert arch.attach_act(who["zhao"], plain, shift.device, first)  # present: sealed
        rid = arch.request_copy(who["wang"], plain, "Qian", "bundle", "complaint")
        arch.decide_copy(who["zhao"], rid, True, "the party's complaint")
        with pytest.raises(Refused, match=f"also in case {secret} is classified state_secret"):
            arch.export_copy(who["wang"], rid, tmp_path / "bundle")
        assert not (tmp_path / "bundle").exists()
        last = [r for r in arch.audit.records() if r.kind == "refusal"][-1]
        assert last.body["user"] == "wang" and "state_secret" in last.body["detail"]["reason"]
    finally:
        arch.close()


def run_cli(folder: Path, *args: str, user: str = "") -> subprocess.CompletedProcess:

    env = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=PW, BODYCAM_ARCHIVE_NEW_PASSWORD=PW)
    env.pop("DEBUG", None)
    cmd = [*ARCHIVE_CLI, "--dir", str(folder)] + (["--user", user] if user else [])
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_seal_key_rotate_and_verify_from_the_command_line(
    shift_once: Shift, tmp_path: Path
) -> None:
    """Attached without dock_config: refused (one line, exit 2, nothing attached); with
    it, sealed at once, and `seal --dock-config` finds nothing left; `key rotate`
    re-wraps; the bundle checks with bodycam-verify in a clean folder, and the store with
    sealed media too."""
    import sys

    shift = copy_shift(shift_once, tmp_path / "shift")
    a = tmp_path / "archive"
    init = ["init", "--store", str(shift.store), "--id", "archive-1", "--admin", "admin"]
    assert run_cli(a, *init).returncode == 0
    for name, role in (("wang", "archivist"), ("zhao", "head")):
        assert run_cli(a, "user", "add", name, "--role", role, user="admin").returncode == 0
    opened = run_cli(
        a, "--json", "case", "open", "--kind", "raid", "--procedure", "seizure",
        "--classification", "business_secret", user="wang",
    )  # fmt: skip
    number = json.loads(opened.stdout)["number"]
    first, _last = shift.acts()[0]
    attach = ["case", "attach", number, "--device", shift.device, "--act", str(first)]
    att = run_cli(a, *attach, user="wang")
    assert att.returncode == 2 and att.stderr.count("\n") == 1, att.stderr
    assert "refused: " in att.stderr and "no dock_config" in att.stderr
    segs = [r for r in segments(shift) if r.seq > first][:1]
    assert (shift.folder / segs[0].body["file"]).exists()
    shown = json.loads(run_cli(a, "--json", "case", "show", number, user="wang").stdout)
    assert shown["entries"] == []
    with open(a / "archive.toml", "a") as f:
        f.write(f'dock_config = "{dock_toml(shift)}"\n')
    att = run_cli(a, *attach, user="wang")
    assert att.returncode == 0, att.stderr
    assert not (shift.folder / segs[0].body["file"]).exists()
    again = run_cli(a, "--json", "seal", "--dock-config", str(dock_toml(shift)), user="wang")
    assert json.loads(again.stdout)["already"] == 1
    refused = run_cli(a, "key", "rotate", user="wang")
    assert refused.returncode == 3 and "may not key manage" in refused.stderr
    rotated = run_cli(a, "--json", "key", "rotate", user="admin")
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["media"] == 1, rotated.stderr
    rid = json.loads(
        run_cli(a, "--json", "copy", "request", number, "--requester", "Zhang", user="wang").stdout
    )["request"]
    assert run_cli(a, "copy", "approve", str(rid), user="zhao").returncode == 0
    out = tmp_path / "bundle"
    done = run_cli(a, "copy", "export", str(rid), "--out", str(out), user="wang")
    assert done.returncode == 0, done.stderr
    clean = tmp_path / "clean" / "bundle"
    shutil.copytree(out, clean)
    key = json.loads((a / "audit" / "archive.json").read_text())["public_key"]
    trust = ["--trust", str(shift.trust)]
    verify = [sys.executable, "-m", "evidence.verify_cli"]
    checked = subprocess.run(
        [*verify, str(clean), *trust, "--archive-key", fingerprint(key)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    manifest = json.loads((clean / "manifest.json").read_text())
    media = [m for m in manifest["media"] if m["status"] == "included"]
    assert [m["sha256"] for m in media] == [segs[0].body["sha256"]]
    data = (clean / media[0]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == segs[0].body["sha256"]
    store = subprocess.run(
        [*verify, str(shift.store), *trust], capture_output=True, text=True, timeout=120
    )
    assert store.returncode == 0, store.stdout + store.stderr
