"""Strict reading: every pattern in full and in ASCII, media only under media/YYYYMMDD/,
never a non-regular file, every read bounded, a wrong size never hashed, and an honest
torn-tail repair followed by a reboot verifies."""

from __future__ import annotations

import json
import os
import re
import threading

import pytest
from test_verify import StepClock, build, check, codes, device, lines, make_device, write_lines

import evidence.verify_folder as verify_folder
from evidence import clock, identity, record, registry
from evidence.canonical import canonical_bytes
from evidence.journal import Journal
from evidence.layout import DeviceStorage
from evidence.record import Record, media_path_error, sign_record
from evidence.verify import parse_expect_head, verify_path


def _patterns():
    for module in (clock, identity, record, registry):
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                yield f"{module.__name__}.{name}", value


SAMPLES = {
    "UTC_PATTERN": "2026-11-27T04:57:58.123456Z",
    "DEVICE_ID_PATTERN": "cam-0001",
    "HEX64": "ab" * 32,
    "HEX128": "cd" * 64,
    "KIND_PATTERN": "marker",
    "PUBLIC_KEY": "ef" * 32,
    "MEDIA_PATH": "media/20261127/cam-0001-20261127T045758123Z-000001.ts",
}


@pytest.mark.parametrize("name,pattern", list(_patterns()), ids=lambda x: str(x)[:40])
def test_every_pattern_matches_in_full_and_in_ascii(name, pattern):
    sample = SAMPLES[name.rsplit(".", 1)[1]]
    assert pattern.match(sample)
    for bad in (
        sample + "\n",
        sample + "x\n",
        " " + sample,
        sample.replace("1", "\u0661").replace("a", "\u0430"),
    ):  # Arabic 1, Cyrillic a
        if bad != sample:
            assert not pattern.match(bad), (name, bad)


def test_unicode_digits_are_not_sequence_numbers():
    with pytest.raises(ValueError):
        parse_expect_head("\u0661\u0662:" + "ab" * 32)  # "١٢"
    assert parse_expect_head("12:" + "ab" * 32) == (None, 12, "ab" * 32)


def test_a_newline_appended_to_the_last_signature_is_malformed(device, registry_file):
    rows = lines(device)
    last = json.loads(rows[-1])
    last["sig"] += "\n"  # still "verifies" with bytes.fromhex, which skips white space
    rows[-1] = canonical_bytes(last)
    write_lines(device, rows)
    (problem,) = check(device, registry_file).problems
    assert (problem.code, problem.line) == ("malformed_record", len(rows))


@pytest.mark.parametrize(
    "path",
    [
        "identity.json",
        "journal.jsonl",
        "media/../identity.json",
        "media/2026112/x.ts",
        "media/20261327/x.ts",
        "media/20261127/.hidden.ts",
        "media/20261127/a\nb.ts",
        "media/20261127/x.jpg",
        "media/20261127/sub/x.ts",
        "/media/20261127/x.ts",
        "media/20261127/" + "x" * 200 + ".ts",
    ],
)
def test_a_segment_may_bind_only_a_file_under_media(tmp_path, identity, path):
    assert media_path_error("segment", path) is not None
    storage = make_device(tmp_path / "dev", identity)
    rows = lines(storage)
    head = Record.from_bytes(rows[-1])
    # sign_record itself refuses to make such a record...
    with pytest.raises(ValueError, match="media record"):
        sign_record(
            identity,
            seq=head.seq + 1,
            prev=head.hash,
            utc=head.utc,
            mono_ns=head.mono_ns + 1,
            kind="segment",
            body={"file": path, "size": 10, "sha256": "00" * 32},
        )
    # ...so write it as a hostile key holder would, signing the bytes directly.
    body = {"file": path, "size": 10, "sha256": "00" * 32}
    unsigned = {
        "v": 1,
        "device": identity.device_id,
        "seq": head.seq + 1,
        "prev": head.hash,
        "utc": head.utc,
        "mono_ns": head.mono_ns + 1,
        "kind": "segment",
        "body": body,
    }
    unsigned["sig"] = identity.sign(canonical_bytes(unsigned)).hex()
    write_lines(storage, rows + [canonical_bytes(unsigned)])
    assert "malformed_record" in codes(check(storage))


def _fifo_reader_finished(target, *args) -> bool:
    done = threading.Event()
    result = {}

    def run():
        result["report"] = target(*args)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(30) and result


def test_identity_json_as_a_fifo_does_not_hang(device, registry_file):
    (device.root / "identity.json").unlink()
    os.mkfifo(device.root / "identity.json")
    finished = _fifo_reader_finished(check, device, registry_file)
    assert finished, "verify blocked on a FIFO"
    assert finished["report"].intact  # identity.json is informational with a registry


def test_identity_json_linked_to_dev_zero_is_not_read(device):
    (device.root / "identity.json").unlink()
    os.symlink("/dev/zero", device.root / "identity.json")
    report = check(device)
    assert "unknown_device" in codes(report)  # no key: it was not read, let alone whole


def test_a_fifo_or_link_as_the_journal_is_journal_missing(device, registry_file):
    os.rename(device.journal_path, device.root / "j")
    os.mkfifo(device.journal_path)
    finished = _fifo_reader_finished(check, device, registry_file)
    assert finished and "journal_missing" in codes(finished["report"])
    device.journal_path.unlink()
    os.symlink(device.root / "j", device.journal_path)
    assert codes(check(device, registry_file))[0] == "journal_missing"


def test_a_media_file_of_the_wrong_size_is_not_hashed(device, registry_file, monkeypatch):
    segment = device.root / "media/20261127/seg-0.ts"
    with open(segment, "r+b") as f:
        f.truncate(8 << 30)  # an 8 GiB sparse stand-in
    hashed = []
    real = verify_folder.hash_fd
    monkeypatch.setattr(verify_folder, "hash_fd", lambda fd, n: hashed.append(fd) or real(fd, n))
    (problem,) = check(device, registry_file).problems
    assert problem.code == "media_changed" and str(8 << 30) in problem.message
    assert len(hashed) == 2  # the other segment and the photo, not the 8 GiB file


def test_a_media_fifo_is_changed_not_read(device, registry_file):
    segment = device.root / "media/20261127/seg-1.ts"
    segment.unlink()
    os.mkfifo(segment)
    finished = _fifo_reader_finished(check, device, registry_file)
    assert finished
    (problem,) = finished["report"].problems
    assert problem.code == "media_changed" and "not a regular file" in problem.message


def test_an_overlong_journal_line_is_malformed_without_being_kept(device, registry_file):
    with open(device.journal_path, "ab") as f:
        f.write(b"x" * (3 << 20) + b"\n")
    (problem,) = check(device, registry_file).problems
    assert problem.code == "malformed_record" and "longer than" in problem.message


def test_an_honest_torn_tail_repair_after_a_reboot_verifies(tmp_path, identity, registry_file):
    storage = make_device(tmp_path / "dev", identity)
    last = Record.from_bytes(lines(storage)[-1])
    with open(storage.journal_path, "ab") as f:
        f.write(lines(storage)[-1][:100])  # a power cut in the middle of an append
    clock = StepClock()
    clock.utc, clock.mono = 10**9 * 1_795_100_000, 10**9  # the new boot's mono starts low
    assert clock.mono < last.mono_ns
    with Journal(storage.journal_path, identity, clock=clock, repair_torn=True) as journal:
        journal.append("boot", {"firmware": "1.0", "boot_id": "cd" * 16, "reason": "recovered"})
    report = check(storage, registry_file)
    assert report.intact, report.problems
    kinds = [json.loads(x)["kind"] for x in lines(storage)[-2:]]
    assert kinds == ["torn_tail", "boot"]


def test_mono_going_back_without_a_boot_is_still_time_backwards(tmp_path, identity, registry_file):
    storage = DeviceStorage(tmp_path / "dev")
    storage.write_identity(identity)
    records = build(identity, [{}, {"mono_ns": 5}, {}])
    write_lines(storage, [r.to_bytes() for r in records])
    assert codes(check(storage, registry_file)) == ["time_backwards"]


def test_verify_path_is_exact_about_the_store_it_detects(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    from evidence.verify import CannotCheck

    with pytest.raises(CannotCheck, match="not a device folder"):
        verify_path(tmp_path)


__all__ = ["device"]  # the fixture, imported from test_verify
