"""The tamper suite: one test per kind of damage, each asserting the exact problem reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.canonical import GENESIS_HASH, canonical_bytes
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from evidence.layout import DeviceStorage
from evidence.media import HashingWriter
from evidence.record import Record, sign_record
from evidence.registry import DeviceEntry, Registry
from evidence.unitkey import UnitKey
from evidence.verify import CannotCheck, verify_path
from evidence.verify_cli import main as verify_main

T0 = 1_795_000_000 * 10**9


class StepClock:
    """A clock that moves one second per reading, so records get distinct stamps."""

    def __init__(self) -> None:
        self.utc = T0
        self.mono = 5 * 10**9

    def time_ns(self) -> int:
        self.utc += 10**9
        return self.utc

    def monotonic_ns(self) -> int:
        self.mono += 10**9
        return self.mono


def make_device(root: Path, identity: DeviceIdentity) -> DeviceStorage:
    """A device folder as the recorder leaves it: boot, a recording with two segments
    and a photo, a marker, stop."""
    storage = DeviceStorage(root)
    storage.write_identity(identity)
    journal = Journal(storage.journal_path, identity, clock=StepClock())
    journal.append("boot", {"firmware": "1.0", "boot_id": "ab" * 16, "reason": "start"})
    journal.append("recording_started", {"pre_event_s": 30})
    for i in range(2):
        writer = HashingWriter(root, f"media/20261127/seg-{i}.ts")
        writer.write(bytes([i + 1]) * 5000)
        journal.append(
            "segment",
            writer.close().body(
                start_utc=format_utc(T0),
                end_utc=format_utc(T0),
                frames=10,
                audio_frames=5,
                recovered=False,
            ),
        )
    journal.append("marker", {"note": "identity checked"})
    writer = HashingWriter(root, "media/20261127/photo-0.jpg")
    writer.write(b"\xff\xd8jpeg" * 100)
    journal.append("photo", writer.close().body())
    journal.append("recording_stopped", {"by": "button"})
    journal.close()
    return storage


def lines(storage: DeviceStorage) -> list[bytes]:
    return storage.journal_path.read_bytes().splitlines()


def write_lines(storage: DeviceStorage, rows: list[bytes]) -> None:
    storage.journal_path.write_bytes(b"".join(r + b"\n" for r in rows))


def codes(report) -> list[str]:
    return [p.code for p in report.problems]


def build(identity: DeviceIdentity, specs: list[dict]) -> list[Record]:
    """Sign records as a (buggy or hostile) key holder would: each spec may override
    seq, prev, utc, mono_ns or the signer; by default they chain correctly."""
    records: list[Record] = []
    for i, spec in enumerate(specs):
        signer = spec.get("identity", identity)
        prev = records[-1].hash if records else GENESIS_HASH
        records.append(
            sign_record(
                signer,
                seq=spec.get("seq", records[-1].seq + 1 if records else 0),
                prev=spec.get("prev", prev),
                utc=spec.get("utc", format_utc(T0 + i * 10**9)),
                mono_ns=spec.get("mono_ns", 10**9 * (i + 1)),
                kind=spec.get("kind", "marker"),
                body=spec.get("body", {"note": str(i)}),
            )
        )
    return records


@pytest.fixture
def device(tmp_path, identity) -> DeviceStorage:
    return make_device(tmp_path / "dev", identity)


@pytest.fixture
def other(tmp_path) -> DeviceIdentity:
    return DeviceIdentity.create(tmp_path / "key2" / "device.key", "cam-other")


@pytest.fixture
def registry2(tmp_path, identity, other) -> Path:
    """A registry holding both cam-test and cam-other."""
    path = tmp_path / "registry2.json"
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, identity.public_key_hex))
    registry.add(DeviceEntry(other.device_id, other.public_key_hex))
    registry.save(path)
    return path


def no_dock_journal(report):
    """The problems of a store built by hand, which has no dock journal (and says so)."""
    assert "dock_journal_missing" in codes(report)
    return [p for p in report.problems if p.code != "dock_journal_missing"]


def check(storage, registry=None, **kw):
    return verify_path(storage.root, registry_path=registry, **kw)


def test_intact_folder_passes_with_registry_and_with_self_declared_key(device, registry_file):
    report = check(device, registry_file)
    assert report.intact, report.problems
    (dev,) = report.devices
    assert (dev.device, dev.trust, dev.records, dev.media_files) == ("cam-test", "registry", 7, 3)
    assert dev.head[0] == 6 and not dev.notes
    self_declared = check(device)  # checked, but the evidence vouches for itself
    assert not self_declared.problems and not self_declared.trusted
    assert not self_declared.intact and self_declared.exit_status == 1
    assert self_declared.devices[0].trust == "self-declared key"
    assert "self-declared key" in self_declared.devices[0].notes[0]


def test_bad_signature_names_the_record(device, registry_file):
    rows = lines(device)
    record = json.loads(rows[4])
    record["body"]["note"] = "nothing checked"
    rows[4] = canonical_bytes(record)
    write_lines(device, rows)
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.seq, problem.line, problem.file, problem.device) == (
        "bad_signature",
        4,
        5,
        "journal.jsonl",
        "cam-test",
    )


def test_unknown_device(device, tmp_path, other):
    registry = Registry()
    registry.add(DeviceEntry(other.device_id, other.public_key_hex))
    registry.save(tmp_path / "reg.json")
    assert codes(check(device, tmp_path / "reg.json")) == ["unknown_device"]


def test_wrong_key(device, tmp_path, identity, other):
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, other.public_key_hex))
    registry.save(tmp_path / "reg.json")
    (problem,) = check(device, tmp_path / "reg.json").problems
    assert problem.code == "wrong_key" and "7 record(s)" in problem.message


def test_broken_chain(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    records = build(identity, [{}, {}, {"prev": "ab" * 32}, {}])
    write_lines(storage, [r.to_bytes() for r in records])
    (problem,) = check(storage, registry_file).problems
    assert (problem.code, problem.seq, problem.line) == ("broken_chain", 2, 3)


def test_first_record_must_name_the_genesis_hash(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    write_lines(storage, [r.to_bytes() for r in build(identity, [{"prev": "11" * 32}, {}])])
    assert codes(check(storage, registry_file)) == ["broken_chain"]


def test_sequence_gap(device, registry_file):
    rows = lines(device)
    del rows[4]
    write_lines(device, rows)
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.seq, problem.line) == ("sequence_gap", 5, 5)
    assert "seq 4 missing" in problem.message


def test_missing_start_is_a_gap(device, registry_file):
    write_lines(device, lines(device)[2:])
    (problem,) = check(device, registry_file).problems
    assert problem.code == "sequence_gap" and "seqs 0..1" in problem.message


def test_sequence_repeat(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    r = build(identity, [{}, {}])
    fork = sign_record(
        identity,
        seq=1,
        prev=r[0].hash,
        utc=r[1].utc,
        mono_ns=r[1].mono_ns,
        kind="marker",
        body={"note": "fork"},
    )
    write_lines(storage, [r[0].to_bytes(), r[1].to_bytes(), fork.to_bytes()])
    (problem,) = check(storage, registry_file).problems
    assert (problem.code, problem.seq, problem.line) == ("sequence_repeat", 1, 3)


def test_reordered(device, registry_file):
    rows = lines(device)
    rows[4], rows[5] = rows[5], rows[4]
    write_lines(device, rows)
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.seq, problem.line) == ("reordered", 4, 6)


def test_foreign_device_record(device, registry2, other):
    foreign = build(other, [{}])[0]
    rows = lines(device)
    rows.insert(3, foreign.to_bytes())
    write_lines(device, rows)
    (problem,) = check(device, registry2).problems
    assert (problem.code, problem.line, problem.seq) == ("foreign_device", 4, 0)
    assert "registered device 'cam-other'" in problem.message


def test_record_signed_by_another_registered_device(device, registry2, identity, other):
    rows = lines(device)
    original = Record.from_bytes(rows[4])
    unsigned = Record(
        1,
        identity.device_id,
        4,
        original.prev,
        original.utc,
        original.mono_ns,
        "marker",
        original.body,
    )
    forged = Record.from_dict(
        {**unsigned.unsigned_dict(), "sig": other.sign(unsigned.signing_bytes()).hex()}
    )
    rows[4] = forged.to_bytes()
    write_lines(device, rows)
    problems = check(device, registry2).problems
    assert [(p.code, p.seq) for p in problems] == [("foreign_device", 4), ("sequence_gap", 5)]
    assert "signed by registered device 'cam-other'" in problems[0].message


def test_replayed(device, registry_file):
    rows = lines(device)
    rows.append(rows[4])
    write_lines(device, rows)
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.seq, problem.line) == ("replayed", 4, 8)
    assert "line 5" in problem.message


def test_media_missing(device, registry_file):
    (device.root / "media/20261127/seg-1.ts").unlink()
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file, problem.seq) == (
        "media_missing",
        "media/20261127/seg-1.ts",
        3,
    )


def test_media_changed(device, registry_file):
    path = device.root / "media/20261127/seg-0.ts"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file, problem.seq) == (
        "media_changed",
        "media/20261127/seg-0.ts",
        2,
    )


def test_media_truncated(device, registry_file):
    path = device.root / "media/20261127/photo-0.jpg"
    path.write_bytes(path.read_bytes()[:-1])
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file) == ("media_truncated", "media/20261127/photo-0.jpg")


def test_media_replaced_by_a_symlink_is_not_followed(device, registry_file, tmp_path):
    path = device.root / "media/20261127/seg-0.ts"
    shutil.move(path, tmp_path / "elsewhere.ts")
    path.symlink_to(tmp_path / "elsewhere.ts")
    (problem,) = check(device, registry_file).problems
    assert problem.code == "media_changed" and "symbolic link" in problem.message


def test_extra_media(device, registry_file):
    (device.root / "media/20261128").mkdir()
    (device.root / "media/20261128/planted.ts").write_bytes(b"x")
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file) == ("extra_media", "media/20261128/planted.ts")


def _receipted(tmp_path, identity, dock_sig: str | None = None):
    """A device folder whose first two segments were wiped under a dock's receipt, and a
    registry that lists the camera and the dock."""
    from evidence.receipt import receipt_message
    from evidence.registry import DockEntry

    storage = make_device(tmp_path / "dev", identity)
    dock = DeviceIdentity.create(tmp_path / "dock.key", "dock-1")
    head = Record.from_bytes(lines(storage)[3])  # the second segment
    sig = (
        dock_sig
        or dock.sign(receipt_message("dock-1", identity.device_id, head.seq, head.hash)).hex()
    )
    clock = StepClock()
    clock.utc, clock.mono = T0 + 100 * 10**9, 100 * 10**9  # later in the same boot
    with Journal(storage.journal_path, identity, clock=clock) as journal:
        receipt = journal.append(
            "receipt",
            {"dock": "dock-1", "upto_seq": head.seq, "upto_hash": head.hash, "dock_sig": sig},
        )
        journal.append(
            "wiped",
            {
                "files": ["media/20261127/seg-0.ts", "media/20261127/seg-1.ts"],
                "receipt_seq": receipt.seq,
            },
        )
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, identity.public_key_hex))
    registry.add_dock(DockEntry("dock-1", dock.public_key_hex))
    key = UnitKey.create(tmp_path / "unit.key", "unit-1")
    registry.save_signed(tmp_path / "signed.json", key, format_utc(T0))
    return storage, tmp_path / "signed.json"


def test_wiped_media_may_be_absent_but_must_match_if_present(tmp_path, identity):
    storage, registry = _receipted(tmp_path, identity)
    (storage.root / "media/20261127/seg-0.ts").unlink()
    assert check(storage, registry).intact
    (storage.root / "media/20261127/seg-1.ts").write_bytes(b"\x02" * 4999)
    assert codes(check(storage, registry)) == ["media_truncated"]


def test_a_wipe_needs_a_receipt_that_verifies_under_a_registered_dock(
    tmp_path, identity, registry_file
):
    storage, registry = _receipted(tmp_path, identity, dock_sig="ab" * 64)
    (storage.root / "media/20261127/seg-0.ts").unlink()
    assert codes(check(storage, registry)) == ["bad_receipt"]  # once, under its first cause
    assert codes(check(storage, registry_file)) == ["bad_receipt"]  # no dock in a v1 registry
    rows = lines(storage)
    wiped = json.loads(rows[-1])
    wiped["body"]["receipt_seq"] = 3  # a record that is no receipt
    rows[-1] = sign_record(
        identity, **{k: wiped[k] for k in ("seq", "prev", "utc", "mono_ns", "kind", "body")}
    ).to_bytes()
    write_lines(storage, rows)
    assert codes(check(storage, registry)) == ["bad_receipt", "unreceipted_wipe"]


def _timed(identity, times):
    return build(
        identity,
        [
            {
                "utc": format_utc(u),
                "mono_ns": m,
                "kind": k,
                "body": {"firmware": "1", "boot_id": "00" * 16, "reason": "start"}
                if k == "boot"
                else {"note": "x"},
            }
            for u, m, k in times
        ],
    )


def test_time_backwards_utc_and_monotonic(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    s = 10**9
    write_lines(
        storage,
        [
            r.to_bytes()
            for r in _timed(
                identity,
                [
                    (T0, 1 * s, "boot"),
                    (T0 + s, 2 * s, "marker"),
                    (T0 - 60 * s, 3 * s, "marker"),
                    (T0 + 2 * s, 1 * s, "marker"),
                ],
            )
        ],
    )
    problems = check(storage, registry_file).problems
    assert [(p.code, p.seq) for p in problems] == [("time_backwards", 2), ("time_backwards", 3)]
    assert "UTC" in problems[0].message and "mono_ns" in problems[1].message


def test_clock_set_and_boot_allow_time_to_step_back(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    s = 10**9
    write_lines(
        storage,
        [
            r.to_bytes()
            for r in _timed(
                identity,
                [
                    (T0, 1 * s, "boot"),
                    (T0 + s, 2 * s, "clock_set"),
                    (T0 - 60 * s, 3 * s, "marker"),
                    (T0 - 59 * s, 1 * s, "boot"),
                    (T0 - 58 * s, 2 * s, "marker"),
                ],
            )
        ],
    )
    assert check(storage, registry_file).intact


def test_tail_cut_and_head_mismatch(device, registry_file):
    rows = lines(device)
    head = Record.from_bytes(rows[-1])
    write_lines(device, rows[:-1])
    (problem,) = check(device, registry_file, expect_heads=[(None, 6, head.hash)]).problems
    assert (problem.code, problem.seq) == ("tail_cut", 6)
    assert "ends at seq 5" in problem.message
    write_lines(device, rows)
    assert check(device, registry_file, expect_heads=[(None, 6, head.hash)]).intact
    (problem,) = check(device, registry_file, expect_heads=[(None, 5, head.hash)]).problems
    assert (problem.code, problem.seq, problem.line) == ("head_mismatch", 5, 6)


def test_torn_record_in_the_journal(device, registry_file):
    with open(device.journal_path, "ab") as f:
        f.write(b'{"body":{"no')
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.line) == ("torn_record", 8)


def test_repaired_torn_tail_checks_its_side_file(device, registry_file, identity):
    with open(device.journal_path, "ab") as f:
        f.write(b'{"body":{"no')
    Journal(device.journal_path, identity, repair_torn=True).close()
    assert check(device, registry_file).intact
    side = next(device.root.glob("journal.torn-*"))
    side.write_bytes(b'{"body":{"na')
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file) == ("bad_torn_side_file", side.name)
    side.unlink()
    (problem,) = check(device, registry_file).problems
    assert problem.code == "bad_torn_side_file" and "missing" in problem.message


def test_unaccounted_side_file(device, registry_file):
    (device.root / "journal.torn-99").write_bytes(b"x")
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.file) == ("bad_torn_side_file", "journal.torn-99")


def test_malformed_lines(device, registry_file):
    rows = lines(device)
    rows.insert(2, b"\xff\xfe not json")
    rows.insert(3, b"")
    write_lines(device, rows)
    problems = check(device, registry_file).problems
    assert [(p.code, p.line) for p in problems] == [
        ("malformed_record", 3),
        ("malformed_record", 4),
    ]


def test_receipt_must_name_the_chain(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    r = build(identity, [{}, {}])
    r += build(
        identity,
        [
            {},
            {},
            {
                "kind": "receipt",
                "body": {
                    "dock": "dock-1",
                    "upto_seq": 1,
                    "upto_hash": "cd" * 32,
                    "dock_sig": "00" * 64,
                },
                "prev": r[1].hash,
            },
        ],
    )[2:]
    write_lines(storage, [x.to_bytes() for x in r])
    problems = check(storage, registry_file).problems
    assert sorted((p.code, p.seq) for p in problems) == [
        ("bad_receipt", 2),
        ("receipt_mismatch", 2),
    ]  # no dock key to check it, and a bad hash


def test_garbage_identity_without_registry_is_reported(device):
    (device.root / "identity.json").write_bytes(b"\x00garbage")
    (problem,) = check(device).problems
    assert problem.code == "unknown_device" and "no key" in problem.message


def test_dock_store_reports_per_device(tmp_path, identity, other, registry2):
    store = tmp_path / "store"
    make_device(store / "unit-1" / "cam-test", identity)
    make_device(store / "unit-1" / "cam-other", other)
    (store / "index.sqlite").write_bytes(b"")
    (store / ".partial" / "x").mkdir(parents=True)
    shutil.copy(registry2, store / "registry.json")
    report = verify_path(store)  # an unsigned registry inside the store: not trusted
    assert report.kind == "dock_store" and not report.trusted and no_dock_journal(report) == []
    assert [(d.folder, d.trust) for d in report.devices if d.role == "device"] == [
        ("unit-1/cam-other", "untrusted registry"),
        ("unit-1/cam-test", "untrusted registry"),
    ]
    given = verify_path(store, registry_path=registry2)
    assert given.trusted and no_dock_journal(given) == []
    (store / "unit-1/cam-test/media/20261127/seg-0.ts").write_bytes(b"")
    (problem,) = no_dock_journal(verify_path(store))
    assert (problem.code, problem.device, problem.file) == (
        "media_truncated",
        "cam-test",
        "unit-1/cam-test/media/20261127/seg-0.ts",
    )


def test_cli_exit_statuses_and_json(device, registry_file, tmp_path, capsys):
    assert verify_main([str(device.root), "--registry", str(registry_file)]) == 0
    assert "INTACT" in capsys.readouterr().out
    (device.root / "media/20261127/seg-0.ts").unlink()
    assert verify_main([str(device.root), "--registry", str(registry_file), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["intact"] is False and report["exit"] == 1
    (problem,) = report["devices"][0]["problems"]
    assert problem == {
        "code": "media_missing",
        "message": "segment file is missing",
        "device": "cam-test",
        "seq": 2,
        "line": 3,
        "file": "media/20261127/seg-0.ts",
    }
    assert verify_main([str(device.root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("media/20261127/seg-0.ts:3: media_missing:")
    assert out[-1].endswith("records, 2 media files (5.6 KB)") and "1 PROBLEM in" in out[-1]


@pytest.mark.parametrize(
    "setup, reason",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"x"), "not a device folder"),
        (lambda p: p.mkdir(), "not a device folder"),
    ],
)
def test_cli_cannot_check(tmp_path, capsys, setup, reason):
    target = tmp_path / "target"
    setup(target)
    assert verify_main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and "Traceback" not in err


def test_cli_bad_registry_and_bad_expect_head(device, tmp_path, capsys):
    (tmp_path / "bad.json").write_bytes(b"\x00\x01")
    assert verify_main([str(device.root), "--registry", str(tmp_path / "bad.json")]) == 2
    assert verify_main([str(device.root), "--expect-head", "x:y"]) == 2
    assert verify_main([str(device.root), "--json", "--expect-head", "cam-x:1:" + "0" * 64]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["exit"] == 2
    assert len(err.splitlines()) == 3 and "Traceback" not in err


def test_every_problem_code_is_documented():
    from evidence.verify import PROBLEM_CODES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "journal-format.md").read_text()
    table = doc[doc.index("### Problem codes") : doc.index("## 10.")]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(PROBLEM_CODES)


def test_store_expect_head_per_device(tmp_path, identity, other, registry2):
    store = tmp_path / "store"
    a = make_device(store / "unit-1" / "cam-test", identity)
    make_device(store / "unit-1" / "cam-other", other)
    (store / "index.sqlite").write_bytes(b"")  # a store, not just a folder of folders
    shutil.copy(registry2, store / "registry.json")
    head = Record.from_bytes(lines(a)[-1])
    write_lines(a, lines(a)[:-1])
    (problem,) = no_dock_journal(verify_path(store, expect_heads=[("cam-test", 6, head.hash)]))
    assert (problem.code, problem.device, problem.file) == (
        "tail_cut",
        "cam-test",
        "unit-1/cam-test/journal.jsonl",
    )
    with pytest.raises(CannotCheck, match="DEVICE:SEQ:HASH"):
        verify_path(store, expect_heads=[(None, 6, head.hash)])
    with pytest.raises(CannotCheck, match="not here"):
        verify_path(store, expect_heads=[("cam-nowhere", 6, head.hash)])


def test_console_script_reports_garbage_without_a_traceback(tmp_path):
    folder = tmp_path / "dev"
    folder.mkdir()
    (folder / "journal.jsonl").write_bytes(b"\x00\xff garbage\n{}\n[1,2]\n")
    (folder / "identity.json").write_bytes(b"{{{")
    exe = Path(sys.executable).with_name("bodycam-verify")
    result = subprocess.run([exe, str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr == ""
    assert [line.split(": ")[1] for line in result.stdout.splitlines()[:3]] == [
        "malformed_record"
    ] * 3


def test_identity_json_of_another_device(device, registry2, other):
    DeviceStorage(device.root).write_identity(other)
    (problem,) = check(device, registry2).problems
    assert (problem.code, problem.file, problem.device) == (
        "foreign_device",
        "identity.json",
        "cam-test",
    )


def test_store_folder_without_a_readable_journal(tmp_path, identity, registry_file):
    store = tmp_path / "store"
    make_device(store / "unit-1" / "cam-test", identity)
    (store / "index.sqlite").write_bytes(b"")  # a store, not just a folder of folders
    (store / "unit-1" / "cam-gone").mkdir()
    (store / "unit-1" / "cam-fifo").mkdir()
    os.mkfifo(store / "unit-1" / "cam-fifo" / "journal.jsonl")
    problems = no_dock_journal(verify_path(store, registry_path=registry_file))
    assert [(p.code, p.file) for p in problems] == [
        ("journal_missing", "unit-1/cam-fifo/journal.jsonl"),
        ("journal_missing", "unit-1/cam-gone/journal.jsonl"),
    ]


def test_cli_config_file(device, registry_file, tmp_path, capsys):
    config = tmp_path / "verify.toml"
    config.write_text(f'registry = "{registry_file}"\njson = true\n')
    assert verify_main([str(device.root), "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["registry"] == str(registry_file)
    assert report["devices"][0]["trust"] == "registry"
    config.write_text('registy = "x"\n')
    assert verify_main([str(device.root), "--config", str(config)]) == 2
    assert "unknown setting 'registy'" in capsys.readouterr().err
