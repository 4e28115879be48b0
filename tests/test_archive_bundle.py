"""The court bundle: built from a real docked shift, checked by ``bodycam-verify`` and by
the openssl commands its own note prints, and failing on each kind of alteration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from dockkit import alter_byte, store_trust

from archive.bundle import BundleError, RecordRange, build_bundle
from archive.notes import EN_NAME, ZH_NAME, command_block
from evidence.identity import DeviceIdentity
from evidence.registry import Registry
from evidence.unitkey import UnitKey
from evidence.verify import verify_path
from evidence.verify_bundle import DOCK_RECORDS_NAME, MANIFEST_NAME, REGISTRY_NAME
from evidence.verify_cli import main as verify_main

PRIVACY = "personal privacy of a bystander (Art. 37)"


@pytest.fixture(scope="module")
def shift(tmp_path_factory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s")


@pytest.fixture(scope="module")
def archive_key() -> DeviceIdentity:
    return DeviceIdentity.generate("archive-1")


@pytest.fixture(scope="module")
def built(shift, archive_key, tmp_path_factory):
    """A bundle of the first and the last recording, the first one's photo withheld."""
    acts = shift.acts()
    photo = next(r for r in shift.records if r.kind == "photo" and r.seq <= acts[0][1])
    refs = [RecordRange(shift.device, *acts[0]), (shift.device, *acts[-1])]
    out = tmp_path_factory.mktemp("bundles") / "case-1"
    result = build_bundle(
        shift.store,
        refs,
        out,
        omit={(shift.device, photo.seq): PRIVACY},
        title="2026-001",
        unit_keys=store_trust(shift.root),
        signer=archive_key,
    )
    return result, photo


def check(bundle: Path, shift: Shift):
    return verify_path(bundle, unit_keys=store_trust(shift.root))


def codes(report) -> set[str]:
    return {p.code for p in report.problems}


def openssl_check(bundle: Path, shift: Shift) -> subprocess.CompletedProcess:
    """Run the note's commands, as printed, in the bundle folder."""
    script = command_block((bundle / EN_NAME).read_text(encoding="utf-8"))
    fp = sorted(store_trust(shift.root))[0]
    return subprocess.run(
        ["bash", "-c", script],
        cwd=bundle,
        env={"PATH": os.environ["PATH"], "FP": fp},
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of(built, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(built[0].path, dest)
    return dest


def test_bundle_holds_originals_and_verifies_in_a_clean_folder(built, shift, tmp_path, capsys):
    result, photo = built
    manifest = result.manifest
    acts = [shift.acts()[0], shift.acts()[-1]]
    bound = [r for r in shift.records if r.media and any(a <= r.seq <= b for a, b in acts)]
    assert result.media_files == len(bound) - 1 and result.omitted == 1
    for m in manifest["media"]:
        if m["status"] == "included":
            name = m["file"].split("/", 2)[2]
            assert (result.path / m["file"]).read_bytes() == (shift.folder / name).read_bytes()
    assert [m["seq"] for m in manifest["media"] if m["status"] == "omitted"] == [photo.seq]
    assert not (result.path / f"devices/{shift.device}" / photo.body["file"]).exists()
    for name in (EN_NAME, ZH_NAME):
        note = (result.path / name).read_text(encoding="utf-8")
        assert PRIVACY in note and photo.body["file"] in note
    assert command_block((result.path / EN_NAME).read_text(encoding="utf-8")) == command_block(
        (result.path / ZH_NAME).read_text(encoding="utf-8")
    )
    assert "如何仅用 openssl 核验" in (result.path / ZH_NAME).read_text(encoding="utf-8")
    # nothing but the bundle is left beside it (the temporary folder was renamed)
    assert [p.name for p in result.path.parent.iterdir()] == [result.path.name]

    clean = copy_of(built, tmp_path)
    report = check(clean, shift)
    assert report.kind == "bundle" and report.intact, [str(p) for p in report.problems]
    notes = " ".join(n for d in report.devices for n in d.notes)
    assert "withheld" in notes and PRIVACY in notes and "signed by 'archive-1'" in notes

    trust = ["--trust", str(shift.trust)]
    assert verify_main([str(clean), *trust]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(f"{clean}: INTACT: court bundle, 2 ranges")
    assert verify_main([str(clean), "--json", *trust]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "bundle"
    # without a named unit key, the bundle vouches for itself: not trusted
    assert verify_main([str(clean)]) == 1
    assert "UNTRUSTED" in capsys.readouterr().out


def test_the_notes_openssl_commands_pass_on_the_bundle(built, shift, tmp_path):
    done = openssl_check(copy_of(built, tmp_path), shift)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "BUNDLE CHECKED: OK", done.stdout
    assert "registry.json: signature OK" in lines
    assert sum("/media/" in line and line.endswith(" OK") for line in lines) == built[0].media_files
    assert any(line.endswith("withheld (listed in this note)") for line in lines)
    assert not any(w in done.stdout for w in ("FAILED", "MISSING", "ALTERED", "BROKEN"))


def _media(bundle: Path) -> Path:
    return sorted(bundle.glob("devices/*/media/*/*.ts"))[0]


def _journal(bundle: Path) -> Path:
    return sorted(bundle.glob("devices/*/journal-*.jsonl"))[0]


def alter_media_byte(bundle: Path, shift: Shift) -> None:
    alter_byte(_media(bundle), 5000)


def remove_segment(bundle: Path, shift: Shift) -> None:
    _media(bundle).unlink()


def remove_record(bundle: Path, shift: Shift) -> None:
    path = _journal(bundle)
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[2]
    path.write_bytes(b"".join(lines))


def edit_record(bundle: Path, shift: Shift) -> None:
    path = _journal(bundle)
    text = path.read_text(encoding="utf-8")
    assert '"by":"button"' in text
    path.write_text(text.replace('"by":"button"', '"by":"fault"', 1), encoding="utf-8")


def swap_registry(bundle: Path, shift: Shift) -> None:
    """Another unit key signs the same devices: all signatures still verify under it."""
    registry = Registry.load(bundle / REGISTRY_NAME)
    other = UnitKey.generate("unit-1")
    (bundle / REGISTRY_NAME).write_bytes(registry.sign(other, "2026-12-01T00:00:00.000000Z"))


def withhold_by_editing_the_manifest(bundle: Path, shift: Shift) -> None:
    """Delete a segment and mark it withheld in the (signed) manifest."""
    media = _media(bundle)
    rel = media.relative_to(bundle).as_posix()
    manifest = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    for m in manifest["media"]:
        if m["file"] == rel:
            m["status"], m["reason"] = "omitted", "confidential"
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    media.unlink()


def drop_dock_records(bundle: Path, shift: Shift) -> None:
    (bundle / DOCK_RECORDS_NAME).unlink()


def plant_file(bundle: Path, shift: Shift) -> None:
    day = _media(bundle).parent
    shutil.copy(_media(bundle), day / "planted.ts")


ALTERATIONS = {
    "media byte": (alter_media_byte, {"media_changed"}),
    "removed segment": (remove_segment, {"media_missing"}),
    "removed record": (remove_record, {"sequence_gap"}),
    "edited record": (edit_record, {"bad_signature"}),
    "swapped registry": (swap_registry, {"registry_mismatch"}),
    "withheld by editing the manifest": (withhold_by_editing_the_manifest, {"bundle_mismatch"}),
    "dock records removed": (drop_dock_records, {"head_mismatch"}),
    "planted file": (plant_file, {"extra_media"}),
}


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_an_altered_bundle_fails_with_its_reason(name, built, shift, tmp_path, capsys):
    alter, expected = ALTERATIONS[name]
    bundle = copy_of(built, tmp_path)
    alter(bundle, shift)
    report = check(bundle, shift)
    assert not report.intact
    assert expected <= codes(report), [str(p) for p in report.problems]
    assert verify_main([str(bundle), "--trust", str(shift.trust)]) == 1
    out = capsys.readouterr().out
    assert any(code in out for code in expected) and "INTACT" not in out.splitlines()[-1]


@pytest.mark.parametrize("name", ["media byte", "removed record", "swapped registry"])
def test_the_notes_openssl_commands_fail_on_an_altered_bundle(name, built, shift, tmp_path):
    bundle = copy_of(built, tmp_path)
    ALTERATIONS[name][0](bundle, shift)
    done = openssl_check(bundle, shift)
    assert done.stdout.splitlines()[-1] == "BUNDLE CHECK FAILED", done.stdout
    want = {"media byte": "ALTERED", "removed record": "RECORDS MISSING", "swapped registry": "NOT"}
    assert want[name] in done.stdout


def test_a_damaged_manifest_cannot_be_checked_one_line(built, shift, tmp_path, capsys):
    bundle = copy_of(built, tmp_path)
    (bundle / MANIFEST_NAME).write_bytes(b"{\x00")
    assert verify_main([str(bundle), "--trust", str(shift.trust)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "manifest" in err and "Traceback" not in err


def test_build_refuses_bad_requests_and_leaves_nothing(shift, tmp_path):
    out = tmp_path / "b"
    first, last = shift.acts()[0]
    with pytest.raises(BundleError, match="not in the store.s registry"):
        build_bundle(shift.store, [("cam-nobody", 0, 1)], out)
    with pytest.raises(BundleError, match="lacks seq"):
        build_bundle(shift.store, [(shift.device, first, 10**6)], out)
    with pytest.raises(BundleError, match="no media record"):
        build_bundle(shift.store, [(shift.device, first, last)], out, omit={(shift.device, 0): "x"})
    with pytest.raises(BundleError, match="no recordings"):
        build_bundle(shift.store, [], out)
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    with pytest.raises(BundleError, match="already exists"):
        build_bundle(shift.store, [(shift.device, first, last)], out)


def test_bundle_from_media_records_and_timing(shift, tmp_path):
    """Refs may be the media records themselves; reports the build rate on real segments."""
    import time

    segments = [r for r in shift.records if r.kind == "segment"]
    start = time.perf_counter()
    result = build_bundle(shift.store, segments, tmp_path / "all")
    seconds = time.perf_counter() - start
    assert result.media_files == len(segments)
    assert check(result.path, shift).intact
    print(
        f"bundle: {result.media_bytes / 1e6:.1f} MB, {result.media_files} files in {seconds:.2f} s"
    )


def test_archive_key_names_the_manifest_signer(built, shift, archive_key, tmp_path, capsys):
    from evidence.unitkey import fingerprint

    bundle = copy_of(built, tmp_path)
    trust = [str(bundle), "--trust", str(shift.trust)]
    assert verify_main([*trust, "--archive-key", fingerprint(archive_key.public_key_hex)]) == 0
    capsys.readouterr()
    other = fingerprint(DeviceIdentity.generate("archive-2").public_key_hex)
    assert verify_main([*trust, "--archive-key", other]) == 1
    assert "not by an archive key named" in capsys.readouterr().out
    assert verify_main([*trust, "--archive-key", "xyz"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    # an unsigned bundle, when an archive key is named, fails
    unsigned = build_bundle(shift.store, [(shift.device, *shift.acts()[0])], tmp_path / "u")
    assert verify_main([str(unsigned.path), "--trust", str(shift.trust)]) == 0
    assert (
        verify_main([str(unsigned.path), "--trust", str(shift.trust), "--archive-key", other]) == 1
    )
