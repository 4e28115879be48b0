"""Property tests: canonical JSON round-trips; garbage and mutated journals never crash the
verifier and never pass as intact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_verify import make_device

from evidence.canonical import canonical_bytes, parse_canonical
from evidence.exc import CanonicalError
from evidence.identity import DeviceIdentity
from evidence.record import Record
from evidence.registry import DeviceEntry, Registry
from evidence.verify import PROBLEM_CODES, CannotCheck, verify_path

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("BODYCAM_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_canonical_round_trips(value):
    data = canonical_bytes(value)
    assert parse_canonical(data) == value
    assert canonical_bytes(parse_canonical(data)) == data
    # The documented rule, written with the json module alone, gives the same bytes.
    assert (
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        == data
    )


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_non_canonical_spellings_are_refused(value):
    spaced = json.dumps(value, indent=1).encode()
    assume(spaced != canonical_bytes(value))
    with pytest.raises(CanonicalError):
        parse_canonical(spaced)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A valid device folder, its registry, and its signed head."""
    base = tmp_path_factory.mktemp("valid")
    identity = DeviceIdentity.create(base / "key" / "device.key", "cam-test")
    storage = make_device(base / "dev", identity)
    registry = Registry()
    registry.add(DeviceEntry(identity.device_id, identity.public_key_hex))
    registry.save(base / "registry.json")
    journal = storage.journal_path.read_bytes()
    head = Record.from_bytes(journal.splitlines()[-1])
    assert verify_path(storage.root, registry_path=base / "registry.json").intact
    return storage.root, base / "registry.json", journal, (None, head.seq, head.hash)


@pytest.fixture
def work(tmp_path, valid):
    root, _, _, _ = valid
    target = tmp_path / "dev"
    shutil.copytree(root, target)
    return target


def _check(work: Path, valid, journal: bytes, **kw):
    _, registry, _, head = valid
    (work / "journal.jsonl").write_bytes(journal)
    return verify_path(work, registry_path=kw.get("registry", registry), expect_heads=[head])


@given(st.binary(max_size=2000))
@SETTINGS
def test_random_bytes_never_crash_and_never_pass(work, valid, data):
    report = _check(work, valid, data)
    assert not report.intact
    assert all(p.code in PROBLEM_CODES and p.message for p in report.problems)


@st.composite
def mutations(draw, journal: bytes) -> bytes:
    rows = journal.splitlines(keepends=True)
    op = draw(
        st.sampled_from(
            [
                "flip",
                "insert",
                "delete",
                "truncate",
                "dup_line",
                "swap_lines",
                "drop_line",
                "splice",
            ]
        )
    )
    data = bytearray(journal)
    if op == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    elif op == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=20))
    elif op == "delete":
        i = draw(st.integers(0, len(data) - 1))
        del data[i : i + draw(st.integers(1, 200))]
    elif op == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif op == "dup_line":
        i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows)))
        rows.insert(j, rows[i])
        data = bytearray(b"".join(rows))
    elif op == "swap_lines":
        i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows) - 1))
        rows[i], rows[j] = rows[j], rows[i]
        data = bytearray(b"".join(rows))
    elif op == "drop_line":
        del rows[draw(st.integers(0, len(rows) - 1))]
        data = bytearray(b"".join(rows))
    else:  # splice: replace a field's value inside one line with another line's
        i = draw(st.integers(0, len(rows) - 1))
        record = json.loads(rows[i])
        key = draw(st.sampled_from(sorted(record)))
        record[key] = draw(json_values)
        rows[i] = canonical_bytes(record) + b"\n"
        data = bytearray(b"".join(rows))
    return bytes(data)


@given(st.data())
@SETTINGS
def test_mutated_journals_never_crash_and_never_pass(work, valid, data):
    journal = valid[2]
    mutated = data.draw(mutations(journal))
    assume(mutated != journal)
    report = _check(work, valid, mutated)
    assert not report.intact, mutated


@given(
    name=st.sampled_from(
        ["identity.json", "media/20261127/seg-0.ts", "journal.torn-5", "media/20261127/photo-0.jpg"]
    ),
    data=st.binary(max_size=300),
)
@SETTINGS
def test_garbage_in_other_files_never_crashes(work, valid, name, data):
    (work / name).write_bytes(data)
    report = _check(work, valid, valid[2])
    if name != "identity.json":  # with a registry, identity.json is informational only
        assert not report.intact
    report = _check(work, valid, valid[2], registry=None)
    assert report.devices[0].trust in ("self-declared key", "none")


@pytest.mark.parametrize(
    "line",
    [
        b'"\\ud800"',
        b'{"body":"\\udfff"}',
        b"[" * 990 + b"]" * 990,
        b'{"a":' * 600 + b"1" + b"}" * 600,
    ],
)
def test_pathological_lines_are_malformed_not_crashes(work, valid, line):
    rows = valid[2].splitlines(keepends=True)
    rows.insert(2, line + b"\n")
    problems = _check(work, valid, b"".join(rows)).problems
    assert [p.code for p in problems] == ["malformed_record"]


@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(
            lambda v: json.dumps({"format": "bodycam-registry-v1", "devices": v}).encode()
        ),
    )
)
@SETTINGS
def test_garbage_registry_is_could_not_check_or_a_report(work, valid, tmp_path, data):
    registry = tmp_path / "garbage-registry.json"
    registry.write_bytes(data)
    try:
        report = _check(work, valid, valid[2], registry=registry)
    except CannotCheck as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(p.code in PROBLEM_CODES for p in report.problems)
