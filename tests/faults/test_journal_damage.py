"""Fault: a garbled line in the middle of a camera's journal (issue 11).

The recorder used to accept it at start without a word (the journal reads only its last
line). Now it says so in its log, journals a ``journal_damaged`` record naming the line's
offset, size and hash, which goes out as an alert, and keeps recording; a second start
does not report the same damage again. End to end: the real ``bodycam-recorder`` (sim
backend) and a real mosquitto, with a supervisor :class:`~alerting.watch.Watcher`
receiving the alert verified under the registered key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from recorderkit import Daemon, mqtt_recorder_config, reboot
from test_alerts import UNIT, watch  # noqa: F401 - a fixture, shared

from alerting.judge import VERIFIED
from evidence.canonical import sha256_hex
from evidence.identity import DeviceIdentity
from evidence.journal import Journal, scan_journal
from evidence.media import hash_file
from evidence.record import Record
from evidence.verify import verify_path
from firmware.recovery import new_damage, read_journal

pytestmark = pytest.mark.faults


def journal_with(path: Path, identity: DeviceIdentity, n: int = 6) -> list[tuple[int, bytes]]:
    with Journal(path, identity) as journal:
        for i in range(n):
            journal.append("marker", {"note": f"m{i}"})
    return scan_journal(path).lines


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_every_kind_of_damaged_line_is_found_with_its_offset(tmp_path, identity) -> None:
    path = tmp_path / "journal.jsonl"
    lines = [line for _, line in journal_with(path, identity)]
    garbled = lines[1][:40] + b"#" + lines[1][41:]  # a flipped byte: unreadable
    changed = lines[3].replace(b'"m3"', b'"m9"')  # parses, but the chain breaks after it
    rewrite(path, [lines[0], garbled, lines[2], changed, lines[4], b"{}", lines[5]])
    offsets = [o for o, _ in scan_journal(path).lines]
    records, damage = read_journal(path, identity.device_id)
    assert [r.seq for r in records] == [0, 2, 3, 4, 5]
    found = [(d.offset, d.problem.split(":")[0].split(" (")[0]) for d in damage]
    assert found == [
        (offsets[1], "unreadable"),
        (offsets[4], "seq 4 does not chain onto seq 3"),
        (offsets[5], "unreadable"),
    ], damage
    assert damage[0].sha256 == sha256_hex(garbled) and damage[0].size == len(garbled) + 1
    # An intact journal has none; damage already journaled is not new.
    clean = tmp_path / "clean.jsonl"
    journal_with(clean, identity)
    assert read_journal(clean, identity.device_id)[1] == []
    reported = Record(1, identity.device_id, 9, "0" * 64, "", 0, "journal_damaged",
                      {"lines": [d.body() for d in damage[:2]], "more": 0})  # fmt: skip
    assert new_damage([reported], damage) == damage[2:]


def test_the_recorder_reports_a_garbled_journal_line_alerts_and_keeps_recording(
    tmp_path: Path,
    identity: DeviceIdentity,
    broker,
    watch,  # noqa: F811
) -> None:
    watcher, shown = watch
    storage = tmp_path / "storage"
    journal = storage / "journal.jsonl"
    lines = [line for _, line in journal_with(journal, identity)]
    rewrite(journal, [*lines[:2], b'{"v":1,"device":"cam-te', *lines[3:]])  # seq 2 garbled
    damaged_at = scan_journal(journal).lines[2][0]
    # A media file no record names (recovery reads every record, the garbled one too).
    media = storage / "media" / "20261203"
    media.mkdir(parents=True)
    (media / f"{identity.device_id}-20261203T120000000Z-000099.ts").write_bytes(b"\x47" * 188)
    config = mqtt_recorder_config(tmp_path, broker, UNIT)
    key = tmp_path / "key" / "device.key"
    daemon = Daemon(tmp_path, key, "--config", str(config), "--record")
    try:
        daemon.wait_for("journal damaged: 1 line(s)")
        assert f"at byte {damaged_at}" in daemon.log[-1], daemon.log[-1]
        daemon.wait_for("recording started")
        daemon.wait_for("signed")  # recording goes on: a segment closed and signed
        verdicts = shown.wait_for(1, timeout=30)
        alert = next(v for v in verdicts if v.kind == "journal_damaged")
        assert alert.verdict == VERIFIED, alert
        (line,) = alert.body["lines"]
        assert line["offset"] == damaged_at and line["problem"].startswith("unreadable")
        daemon.stop()
    finally:
        daemon.kill()
    # A second start: the same damage is logged, not journaled (or alerted) again.
    reboot(tmp_path, key, config, "journal damaged: 1 line(s) are not links of the chain (0 new)")
    records, damage = read_journal(journal, identity.device_id)
    assert [d.offset for d in damage] == [damaged_at]
    assert [r.kind for r in records].count("journal_damaged") == 1
    segments = [r for r in records if r.kind == "segment"]
    assert any(r.body.get("recovered") for r in segments)  # the unnamed file, signed
    assert sum(not r.body["recovered"] for r in segments) >= 1
    for r in segments:
        assert hash_file(storage / r.body["file"]) == (r.body["size"], r.body["sha256"])
    # The verifier names exactly the damaged line (and the seq it took with it).
    problems = [str(p) for p in verify_path(storage).problems]
    assert problems and all("journal.jsonl:3" in p or "seq 2 missing" in p for p in problems), (
        problems
    )
