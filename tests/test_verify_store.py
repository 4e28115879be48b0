"""A dock store is checked against the dock's own journal: every deletion, move, hide and
rename an audit tried is found, each under its first cause; trust comes only from a unit
key the user names."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from dockkit import dock_once, make_camera, make_dock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.registry import Registry
from evidence.trust import load_unit_keys
from evidence.unitkey import UnitKey
from evidence.verify import CannotCheck, verify_path
from evidence.verify_cli import main as verify_main
from simulator.unit import register


@pytest.fixture(scope="module")
def docked(tmp_path_factory) -> Path:
    """A store holding two cameras, each docked once (their media wiped on the camera)."""
    tmp = tmp_path_factory.mktemp("docked")
    cams = []
    for device, unit in (("cam-001", "unit-1"), ("cam-002", "unit-1")):
        camera, registry = make_camera(tmp, device, unit=unit)
        camera.record(3, 20_000, seed=len(cams))
        cams.append((camera, registry))
    dock, store = make_dock(tmp, cams[0][1])
    register(store.registry_path, UnitKey.load(tmp / "unit-key/unit.key"), merge_from=cams[1][1])
    for camera, _ in cams:
        result, outcome = dock_once(store, dock, camera)
        assert result.outcome == "stored", result.reason
        assert outcome.wiped  # the camera wiped: only the store holds the media now
        camera.close()
    store.close()
    return tmp


@pytest.fixture
def store(docked, tmp_path) -> Path:
    """A fresh copy of the docked store for one test to damage."""
    shutil.copytree(docked / "dock", tmp_path / "dock", symlinks=True)
    return tmp_path / "dock"


@pytest.fixture(scope="module")
def keys(docked) -> frozenset[str]:
    return load_unit_keys(trust_file=docked / "trust.toml")


def check(store: Path, keys, **kw):
    return verify_path(store, unit_keys=keys, **kw)


def codes(report) -> list[str]:
    return sorted(p.code for p in report.problems)


def media_of(store: Path, device: str = "cam-001") -> list[Path]:
    return sorted((store / "unit-1" / device / "media").rglob("*.ts"))


def test_an_honest_store_is_intact_and_trusted(store, keys):
    report = check(store, keys)
    assert report.intact and report.trusted, report.problems
    roles = sorted((d.role, d.folder) for d in report.devices)
    assert roles == [
        ("device", "unit-1/cam-001"),
        ("device", "unit-1/cam-002"),
        ("dock", "_docks/dock-sim"),
    ]
    assert sum(d.media_files for d in report.devices) == 6


def test_a_deleted_media_file_is_missing_although_the_camera_wiped_it(store, keys):
    victim = media_of(store)[1]
    victim.unlink()
    (problem,) = check(store, keys).problems
    assert (
        problem.code == "media_missing" and "dock dock-sim recorded storing it" in problem.message
    )
    assert (
        problem.file == "unit-1/cam-001/" + victim.relative_to(store / "unit-1/cam-001").as_posix()
    )


def test_every_media_file_deleted_is_each_reported(store, keys):
    for device in ("cam-001", "cam-002"):
        for path in media_of(store, device):
            path.unlink()
    assert codes(check(store, keys)) == ["media_missing"] * 6


def test_media_moved_into_partial_is_missing(store, keys):
    victim = media_of(store, "cam-002")[0]
    (store / ".partial").mkdir(exist_ok=True)
    victim.rename(store / ".partial" / victim.name)
    assert codes(check(store, keys)) == ["media_missing"]


def test_a_deleted_device_folder_is_missing_once(store, keys):
    shutil.rmtree(store / "unit-1" / "cam-002")
    (problem,) = check(store, keys).problems
    assert problem.code == "device_missing" and "deleted" in problem.message
    assert problem.device == "cam-002"


@pytest.mark.parametrize("hide", ["device", "unit"])
def test_a_folder_hidden_under_a_dot_name_is_missing(store, keys, hide):
    if hide == "device":
        (store / "unit-1/cam-001").rename(store / "unit-1/.cam-001")
        expected = ["device_missing"]
    else:
        (store / "unit-1").rename(store / ".unit-1")
        expected = ["device_missing", "device_missing"]
    report = check(store, keys)
    assert codes(report) == expected
    assert all("hidden under a dot-name" in p.message for p in report.problems)


def test_a_device_folder_moved_to_another_unit_is_reported_once(store, keys):
    (store / "unit-9").mkdir()
    (store / "unit-1/cam-001").rename(store / "unit-9/cam-001")
    (problem,) = check(store, keys).problems
    assert problem.code == "device_missing" and "moved" in problem.message
    assert "unit-9/cam-001" in problem.message


def test_an_emptied_journal_with_its_media_removed_is_a_cut_tail(store, keys):
    folder = store / "unit-1/cam-002"
    (folder / "journal.jsonl").write_bytes(b"")
    shutil.rmtree(folder / "media")
    (problem,) = check(store, keys).problems
    assert problem.code == "tail_cut" and "dock journal recorded storing" in problem.message


def test_a_journal_cut_short_in_the_store_is_found_without_an_expected_head(store, keys):
    journal = store / "unit-1/cam-001/journal.jsonl"
    rows = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(rows[:3]))
    found = codes(check(store, keys))
    assert found[0] == "extra_media" or "tail_cut" in found
    assert "tail_cut" in found


def test_a_store_without_its_dock_journal_is_not_complete(store, keys):
    shutil.rmtree(store / "_docks")
    assert "dock_journal_missing" in codes(check(store, keys))


def test_a_planted_device_folder_is_not_in_the_dock_journal(store, keys):
    shutil.copytree(store / "unit-1/cam-001", store / "unit-2/cam-001")
    report = check(store, keys)
    assert "not_in_dock_journal" in codes(report)


def test_the_dock_journal_itself_is_checked_and_its_head_can_be_expected(store, keys):
    report = check(store, keys)
    (dock,) = [d for d in report.devices if d.role == "dock"]
    seq, digest = dock.head
    ok = check(store, keys, expect_heads=[("dock-sim", seq, digest)])
    assert ok.intact
    journal = store / "_docks/dock-sim/journal.jsonl"
    rows = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(rows[:-2]))  # the dock's last records, rolled back
    assert "tail_cut" in codes(check(store, keys, expect_heads=[("dock-sim", seq, digest)]))


# -- trust: the evidence never vouches for itself


def _attacker_resigns(store: Path, tmp: Path) -> None:
    """Someone with write access, no device key: a registry of their own, signed by a unit
    key of their own, that names their key for every camera; every record re-signed."""
    from evidence.identity import DeviceIdentity
    from evidence.record import Record, sign_record

    fake_unit = UnitKey.create(tmp / "attacker-unit.key", "unit-1")
    real = Registry.load(store / "registry.json")
    forged = Registry()
    for entry in real:
        key = DeviceIdentity.generate(entry.device_id)
        folder = store / "unit-1" / entry.device_id
        rows = (folder / "journal.jsonl").read_bytes().splitlines()
        out, prev = [], "0" * 64
        for row in rows:
            r = Record.from_bytes(row)
            body = dict(r.body)
            if r.kind == "marker":
                body["note"] = "rewritten"
            new = sign_record(
                key, seq=r.seq, prev=prev, utc=r.utc, mono_ns=r.mono_ns, kind=r.kind, body=body
            )
            out.append(new.to_bytes())
            prev = new.hash
        (folder / "journal.jsonl").write_bytes(b"".join(x + b"\n" for x in out))
        (folder / "identity.json").write_text(
            json.dumps({"device_id": entry.device_id, "public_key": key.public_key_hex})
        )
        forged.add(type(entry)(entry.device_id, key.public_key_hex, entry.officer, entry.unit))
    for dock in real.docks():
        forged.add_dock(dock)
    forged.save_signed(store / "registry.json", fake_unit, "2026-12-01T00:00:00.000000Z")


def test_a_replaced_registry_is_not_trusted(store, keys, tmp_path):
    _attacker_resigns(store, tmp_path)
    report = check(store, keys)
    assert not report.intact and not report.trusted
    assert "which was not named" in report.trust
    assert verify_main([str(store), "--trust", str(tmp_path.parent / "x")]) == 2  # no file


def test_a_deleted_registry_with_a_named_unit_key_cannot_be_checked(store, keys, tmp_path):
    _attacker_resigns(store, tmp_path)
    (store / "registry.json").unlink()
    with pytest.raises(CannotCheck, match="no registry.json"):
        check(store, keys)
    assert not verify_path(store).intact  # identity.json keys only: untrusted


def test_a_registry_planted_in_a_device_folder_is_untrusted(docked, tmp_path, keys):
    folder = tmp_path / "cam"
    shutil.copytree(docked / "cam-001", folder)
    shutil.copy(docked / "dock" / "registry.json", folder / "registry.json")
    report = verify_path(folder, unit_keys=frozenset())
    assert not report.trusted and not report.intact
    assert "found inside the checked path" in report.trust
    trusted = verify_path(folder, registry_path=docked / "dock" / "registry.json")
    assert trusted.intact, trusted.problems


def test_the_cli_says_untrusted_and_exits_1_without_a_named_key(store, docked, capsys):
    assert verify_main([str(store)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"{store}: UNTRUSTED: no problem found")
    assert verify_main([str(store), "--trust", str(docked / "trust.toml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trusted"] and data["intact"] and data["exit"] == 0
    fingerprint = next(iter(load_unit_keys(trust_file=docked / "trust.toml")))
    spaced = " ".join(fingerprint[i : i + 4] for i in range(0, 64, 4)).upper()
    assert verify_main([str(store), "--unit-key", spaced]) == 0


# -- random damage never passes


def _evidence_paths(store: Path) -> list[Path]:
    """Everything whose change the store's rules must notice (not identity.json, which is
    informational, and not the dock's working space)."""
    found = []
    for path in sorted(store.rglob("*")):
        rel = path.relative_to(store)
        if rel.parts[0].startswith(".") or rel.name in (
            "identity.json",
            "index.sqlite",
            "registry.json",
        ):
            continue
        if path.is_file() and (rel.name == "journal.jsonl" or "media" in rel.parts):
            found.append(path)
        elif path.is_dir() and len(rel.parts) <= 2 and rel.parts[0] != "_docks":
            found.append(path)
    return found


OPS = ("delete", "hide", "move_to_partial", "move_to_unit", "rename")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10**6)), min_size=1, max_size=3)
)
def test_random_deletions_moves_and_renames_never_pass_as_intact(docked, keys, tmp_path, steps):
    store = Path(tempfile.mkdtemp(dir=tmp_path)) / "dock"
    shutil.copytree(docked / "dock", store, symlinks=True)
    for op, pick in steps:
        targets = _evidence_paths(store)
        if not targets:
            break  # everything is gone already
        target = targets[pick % len(targets)]
        if op == "delete":
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        elif op == "hide":
            target.rename(target.with_name("." + target.name))
        elif op == "move_to_partial":
            (store / ".partial").mkdir(exist_ok=True)
            target.rename(store / ".partial" / f"{pick}-{target.name}")
        elif op == "move_to_unit":
            dest = store / "unit-moved" / target.name
            if dest.exists() or dest.parent == target or target == store / "unit-moved":
                continue
            dest.parent.mkdir(exist_ok=True)
            target.rename(dest)
        else:
            target.rename(target.with_name(target.name + "x"))
    try:
        report = check(store, keys)
    except CannotCheck:
        report = None  # could not check is not intact either
    shutil.rmtree(store.parent)
    assert report is None or not report.intact, (steps, [str(p) for p in report.problems])
