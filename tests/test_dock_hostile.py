"""A hostile camera against the real ``bodycam-dock bay`` (issue 10, "A camera attacking
the dock"). The camera is written by hand (tests/hostile.py) and signs with a registered
camera's stolen key, so every record it sends verifies.

Each attack asserts what an operator would check: the REFUSE the camera got and its
reason, the flag in the dock's index and journal, that no stored byte changed (the whole
store tree before and after; the dock journal only grew by the docking and one flag), and
that the same running bay then stores an honest camera.
"""

from __future__ import annotations

import hashlib
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from dockkit import dock_cmd, wait_for
from hostile import BayRun, HostileCamera
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dock.bay import EXIT_CANNOT_SERVE, read_status
from dock.session import SessionLimits
from evidence.canonical import canonical_bytes
from evidence.exc import RecordError
from evidence.identity import DeviceIdentity
from evidence.layout import stored_name_error
from evidence.record import KINDS as RECORD_KINDS
from evidence.record import MAX_RECORD_BYTES, Record
from wire.cable import MAX_PAYLOAD, Frame, FrameError, FrameType, record_file

LIMITS = SessionLimits()
MiB = 1 << 20


@pytest.fixture(scope="module")
def dock(tmp_path_factory):
    """One bay process for every attack of this module: each attack must leave it able to
    serve (the honest docking after it proves that)."""
    run = BayRun(tmp_path_factory.mktemp("hostile"))
    run.honest_docking(segments=2)
    yield run
    assert run.stop() == 0, run.log.read_text()[-3000:]


def attack(dock: BayRun, build: Callable[[HostileCamera], None], kind: str, reason: str) -> dict:
    """Run one hostile docking and check refusal, flag, unchanged store, next docking."""
    hostile = HostileCamera(dock.stolen, after=dock.store_head())
    build(hostile)
    before = dock.snapshot()
    said = hostile.run(dock.cable.camera)
    assert said.refused is not None, said
    assert re.search(reason, said.refused), said.refused
    assert said.receipt is None  # nothing receipted: a camera would keep its data
    row = dock.ended(before)
    assert row["outcome"] in ("refused", "flagged"), row
    flags = dock.flags_since(before)
    assert [f["kind"] for f in flags] == [kind], flags
    assert re.search(reason, flags[0]["detail"]), flags
    after = dock.snapshot()
    assert after.tree == before.tree, "a stored file changed"
    new = dock.new_dock_records(before)
    assert [r.kind for r in new if r.kind != "docking"] == ["flag"], [r.kind for r in new]
    assert new[-1].body["kind"] == kind
    assert len(new) <= 2  # the handshake's "docking", then the flag
    dock.replug()
    dock.honest_docking()
    return flags[0]


def stored_media(dock: BayRun) -> str:
    folder = dock.root / "unit-1" / "cam-001"
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.ts"))[0]


# -- the store is write-once, and only media names are written ---------------------------


def test_a_stored_file_is_never_replaced(dock):
    name = stored_media(dock)
    original = (dock.root / "unit-1" / "cam-001" / name).read_bytes()
    flag = attack(
        dock,
        lambda h: h.add_file(name, b"\x47" + b"forged" * 5000),
        "media_conflict",
        r"already holds with other bytes: a stored file is never replaced",
    )
    assert name in flag["detail"]
    assert (dock.root / "unit-1" / "cam-001" / name).read_bytes() == original


@pytest.mark.parametrize(
    "name",
    [
        "journal.jsonl",
        "identity.json",
        "../registry.json",
        "media/20261118/a\nb.ts",
        "media/20261118/a\x00b.ts",
        "media/20261118/../../../registry.json",
        "media/20261118/.hidden.ts",
        "media/20261118/" + "a" * 300 + ".ts",
        "media/20261318/seg.ts",
    ],
    ids=["journal", "identity", "up", "newline", "nul", "traversal", "dot", "long", "no-day"],
)
def test_only_media_names_are_stored(dock, name):
    attack(
        dock,
        lambda h: h.add_file(name, b"\x47" * 4000),
        "bad_record",
        r"media record: .*(not media/YYYYMMDD/<name>\.ts\|jpg|names no calendar day)",
    )


def test_a_torn_tail_side_file_is_never_replaced(dock):
    """``journal.torn-N`` is the one other name a record may bind: it is write-once too."""
    body = b"a torn record's bytes"
    # The honest camera repaired a torn record: the dock stores its side file.
    (dock.camera.root / "journal.torn-7").write_bytes(body)
    dock.camera.journal.append(
        "torn_tail",
        {
            "offset": 7,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "file": "journal.torn-7",
        },
    )
    before = dock.snapshot()
    dock.camera.link(dock.dock_identity, timeout=15).run_session(dock.cable.camera)
    assert dock.ended(before)["outcome"] == "stored"
    dock.replug()
    stored = dock.root / "unit-1" / "cam-001" / "journal.torn-7"
    assert stored.read_bytes() == body
    forged = b"other bytes, same name"

    def build(h: HostileCamera) -> None:
        h.files["journal.torn-7"] = forged
        h.sign_line(
            "torn_tail",
            {
                "file": "journal.torn-7",
                "size": len(forged),
                "sha256": hashlib.sha256(forged).hexdigest(),
                "offset": 7,
            },
        )

    hostile = HostileCamera(dock.stolen, after=dock.store_head())
    build(hostile)
    before = dock.snapshot()
    said = hostile.run(dock.cable.camera)
    dock.ended(before)
    flags = dock.flags_since(before)
    # the torn tail itself is flagged (as for any camera), then the conflict refuses it
    assert [f["kind"] for f in flags] == ["torn_tail", "media_conflict"], flags
    assert said.refused and "never replaced" in said.refused
    assert dock.snapshot().tree == before.tree and stored.read_bytes() == body
    dock.replug()
    dock.honest_docking()


# -- malformed but authentic frames end the session, not the bay -------------------------


def _response(**change):
    def build(h: HostileCamera) -> None:
        h.response = lambda body: {**body, **change}

    return build


def _wiped_record(h: HostileCamera) -> None:
    h.sign_line("wiped", {"files": 5, "receipt_seq": 0})


def _huge_torn(h: HostileCamera) -> None:
    h.sign_line("torn_tail", {"file": "journal.torn-9", "size": 2**64, "sha256": "0" * 64})


def _clock(offset: int):
    def build(h: HostileCamera) -> None:
        h.clock_set = {"offset_ns": offset, "old_utc": "", "new_utc": "", "set": True}

    return build


@pytest.mark.parametrize(
    ("build", "kind", "reason"),
    [
        (_response(head=[1, 2]), "protocol", r"camera head is malformed: not an object"),
        (_response(head={"seq": 2**64, "hash": "0" * 64}), "protocol", r"head is malformed"),
        (_response(device=5), "protocol", r"field 'device' missing or of the wrong type"),
        (_response(sig="zz"), "bad_handshake", r"failed the challenge"),
        (lambda h: setattr(h, "response", lambda b: b"[1,2,3]"), "protocol", r"not a JSON object"),
        (
            lambda h: setattr(h, "response", lambda b: b'{"a":' + b"9" * 5000 + b"}"),
            "protocol",
            r"not canonical JSON",
        ),
        (_clock(2**64), "protocol", r"offset_ns out of range"),
        (_clock(-(2**70)), "protocol", r"offset_ns out of range"),
        (_wiped_record, "bad_record", r"'files' is not a list"),
        (_huge_torn, "limit", r"declares a 18446744073709551616-byte file"),
        (
            lambda h: h.add_file("media/20261118/big.ts", b"", size=2**64),
            "bad_record",
            r"bad size",
        ),
        (
            lambda h: h.add_file("media/20261118/huge.ts", b"", size=10 * 10**9),
            "limit",
            rf"declares a 10000000000-byte file; this dock takes at most "
            rf"{LIMITS.max_file_bytes} bytes per file",
        ),
        (
            lambda h: setattr(h, "records", lambda: [b"\x00" * 100]),
            "bad_record",
            r"record after seq \d+: ",
        ),
    ],
    ids=[
        "head-list",
        "head-2**64",
        "device-int",
        "bad-sig",
        "response-array",
        "response-bigint",
        "clock-2**64",
        "clock-negative",
        "wiped-files-5",
        "torn-size-2**64",
        "media-size-2**64",
        "declared-10GB",
        "records-nul",
    ],
)
def test_a_malformed_authentic_frame_is_refused_and_the_bay_serves_on(dock, build, kind, reason):
    attack(dock, build, kind, reason)


def test_a_camera_sending_a_byte_a_second_is_cut_off(dock):
    """Slow loris: every byte arrives within the stall timeout, the frame never does."""

    def build(h: HostileCamera) -> None:
        h.slow_response = 1.0

    flag = attack(dock, build, "stalled", r"peer too slow: a \d+-byte frame took more than")
    assert "bytes/s required" in flag["detail"]


# -- bounded texts -------------------------------------------------------------------------


def test_a_200_kb_device_id_is_cut_in_the_flag_and_the_log(dock):
    from evidence.identity import DeviceIdentity

    stranger = DeviceIdentity.generate("cam-x")
    hostile = HostileCamera(stranger)
    huge = "\x1b[31m" + "Z" * 200_000 + "\n"
    hostile.response = lambda body: {**body, "device": huge, "public_key": "k" * 40_000}
    log_before = dock.log.stat().st_size
    before = dock.snapshot()
    said = hostile.run(dock.cable.camera)
    assert said.refused and "unregistered camera" in said.refused
    assert len(said.refused) <= 500
    dock.ended(before)
    flags = dock.flags_since(before)
    assert [f["kind"] for f in flags] == ["unregistered"]
    assert len(flags[0]["detail"]) <= 512 and len(flags[0]["device"]) <= 64
    assert "\x1b" not in flags[0]["detail"] + flags[0]["device"]
    assert dock.snapshot().tree == before.tree
    new = dock.new_dock_records(before)
    assert [r.kind for r in new] == ["flag"] and len(new[0].to_bytes()) < 2048
    # every line the bay logged for it is bounded too (no 200 kB line, no escape codes)
    wait_for(lambda: "unregistered" in dock.log.read_text()[log_before:], what="the log line")
    text = dock.log.read_bytes()[log_before:].decode()
    assert max(len(line) for line in text.splitlines()) < 2048
    assert "\x1b" not in text
    dock.replug()
    dock.honest_docking()


# -- memory: bounded under an endless stream and a huge file ------------------------------


def _marker_records(h: HostileCamera, total: int) -> list[bytes]:
    """Correctly signed, chained records of almost the largest size a record may have."""
    pad = "x" * (MAX_RECORD_BYTES - 1000)
    lines = []
    size = 0
    while size < total:
        line = h.sign_line("marker", {"note": pad})
        lines.append(line)
        size += len(line) + 1
    return lines


def test_dock_memory_stays_bounded_under_an_endless_stream_and_a_huge_file(tmp_path):
    run = BayRun(tmp_path)
    try:
        run.honest_docking()
        idle = run.vm_hwm_kib()
        # 1. An endless RECORDS stream: signed, chained, valid records, until refused.
        hostile = HostileCamera(run.stolen, after=run.store_head())
        lines = _marker_records(hostile, LIMITS.max_record_bytes + 8 * MiB)

        def endless():
            batch: list[bytes] = []
            for line in lines:
                if batch and sum(len(x) + 1 for x in batch) + len(line) > MAX_PAYLOAD:
                    yield b"\n".join(batch)
                    batch = []
                batch.append(line)
            yield b"\n".join(batch)

        hostile.records = endless
        hostile.lines = []  # its journal head stays what it signed; the stream is the attack
        before = run.snapshot()
        said = hostile.run(run.cable.camera, timeout=30)
        row = run.ended(before, timeout=120)
        stream_peak = run.vm_hwm_kib()
        assert said.refused and "bytes of records in one docking" in said.refused, said
        assert row["outcome"] == "refused"
        assert [f["kind"] for f in run.flags_since(before)] == ["limit"]
        assert run.snapshot().tree == before.tree
        run.replug()
        # 2. A huge declared file (under the per-file maximum): the dock takes the bytes
        # as they come, to disk, never to memory; the camera then lies at the end.
        hostile = HostileCamera(run.stolen, after=run.store_head())
        declared = 6 * (1 << 30)
        hostile.add_file("media/20261118/huge.ts", b"", size=declared, sha256="1" * 64)
        sent = 192 * MiB
        chunk = bytes(range(256)) * 1024

        def data(file, offset):
            for _ in range(sent // len(chunk)):
                yield chunk

        hostile.data = data
        before = run.snapshot()
        said = hostile.run(run.cable.camera, timeout=30)
        row = run.ended(before, timeout=120)
        file_peak = run.vm_hwm_kib()
        assert said.refused and "media_altered" in said.refused, said
        assert row["bytes"] == sent
        assert run.snapshot().tree == before.tree
        run.replug()
        run.honest_docking()
        print(
            f"\nbay VmHWM: idle {idle} KiB; after {LIMITS.max_record_bytes // MiB} MiB of"
            f" records {stream_peak} KiB (+{(stream_peak - idle) / 1024:.1f} MiB); after"
            f" {sent // MiB} MiB of a declared {declared >> 30} GiB file {file_peak} KiB"
            f" (+{(file_peak - idle) / 1024:.1f} MiB)"
        )
        assert stream_peak - idle < 32 * 1024, (idle, stream_peak)
        assert file_peak - idle < 32 * 1024, (idle, file_peak)
    finally:
        run.stop()


# -- a bay that cannot serve exits so that systemd restarts it ----------------------------


def test_a_bay_that_cannot_serve_refuses_and_exits_non_zero(tmp_path):
    run = BayRun(tmp_path)
    try:
        run.honest_docking()
        registry = run.root / "registry.json"
        good = registry.read_bytes()
        registry.write_bytes(b'{"not": "a signed registry"')  # the operator broke it
        hostile = HostileCamera(run.stolen, after=run.store_head())  # any camera
        said = hostile.run(run.cable.camera)
        assert said.refused and "dock fault: the dock cannot read its registry" in said.refused
        assert run.proc.wait(60) == EXIT_CANNOT_SERVE
        log = run.log.read_text()
        assert "cannot serve" in log and "Traceback" not in log
        rows = read_status(run.root)
        assert rows[0]["state"] == "failed" and "registry" in rows[0]["reason"]
        # systemd restarts it: with the registry still broken it says why and exits 2...
        again = subprocess.run(
            dock_cmd(tmp_path, "bay", str(run.cable.path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2 and "registry" in again.stderr, again.stderr
        # ... and once the operator restores it, the bay serves again.
        registry.write_bytes(good)
        run.proc = subprocess.Popen(
            dock_cmd(tmp_path, "bay", str(run.cable.path)), stderr=run._log_file
        )
        run.replug()
        run.honest_docking()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(30) == 0
    finally:
        run.stop()


# -- at rest -------------------------------------------------------------------------------


def test_the_store_is_not_world_readable(dock):
    """Issue 10, at rest: files 0640, folders 0750, registry.json included. Nothing in the
    store can be read by others: each file is either not readable by them, or lies in a
    folder they cannot enter."""

    def others_reach(path) -> bool:
        for folder in [dock.root, *path.relative_to(dock.root).parents]:
            folder = dock.root / folder
            if not stat.S_IMODE(folder.stat().st_mode) & 0o001:
                return False
        return True

    exposed = []
    for path in [dock.root, *dock.root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o004 and others_reach(path):
            exposed.append(f"{oct(mode)} {path.relative_to(dock.root.parent)}")
    assert exposed == []
    assert stat.S_IMODE(dock.root.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE((dock.root / "registry.json").stat().st_mode) == 0o640
    folder = dock.root / "unit-1" / "cam-001"
    assert stat.S_IMODE((folder / "journal.jsonl").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    media = next(folder.rglob("*.ts"))
    assert stat.S_IMODE(media.stat().st_mode) == 0o640


# -- parsers: random malformed input is always a refusal with a reason --------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
RECORD_KEYS = ["file", "size", "sha256", "files", "offset", "start_utc", "end_utc", "frames"]


@given(st.binary(max_size=300) | json_values.map(lambda v: canonical_bytes(v)))
def test_a_control_frame_payload_is_an_object_or_a_frame_error(payload):
    for ftype in (FrameType.RESPONSE, FrameType.CLOCK_SET, FrameType.DATA_END, FrameType.WIPED):
        try:
            assert isinstance(Frame(ftype, 0, payload).json(), dict)
        except FrameError as exc:
            assert str(exc)


@given(
    st.sampled_from(list(RECORD_KINDS) + ["x_unknown"]),
    st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, max_size=5),
    st.binary(max_size=200),
)
def test_a_record_line_parses_or_is_a_record_error(kind, body, noise):
    hostile = HostileCamera(_IDENTITY)
    for line in (hostile.sign_line(kind, body), noise, hostile.sign_line(kind, body)[:-7]):
        try:
            rec = Record.from_bytes(line)
        except RecordError as exc:
            assert str(exc)
            continue
        bound = record_file(rec)  # never raises for a parsed record
        if bound is not None:
            assert isinstance(bound[0], str) and type(bound[1]) is int
            assert stored_name_error(bound[0]) is None


@given(st.text(max_size=200))
def test_a_stored_name_is_media_or_a_torn_side_file(name):
    why = stored_name_error(name)
    if why is None:
        assert re.fullmatch(
            r"media/\d{8}/[A-Za-z0-9][A-Za-z0-9_.-]*\.(ts|jpg)|journal\.torn-\d+", name
        )
        assert "\x00" not in name and "\n" not in name and ".." not in name.split("/")


_IDENTITY = DeviceIdentity.generate("cam-001")
_SESSION_STORE: dict[str, Any] = {}


def _session_store(tmp_path_factory):
    """One store for every example (a fresh store per example would be slower than the
    docking itself); the hostile camera holds the registered camera's key."""
    if not _SESSION_STORE:
        from dockkit import make_camera, make_dock

        tmp = tmp_path_factory.mktemp("parsers")
        camera, registry = make_camera(tmp)
        camera.close()
        dock_identity, store = make_dock(tmp, registry)
        _SESSION_STORE.update(
            store=store,
            dock=dock_identity,
            key=DeviceIdentity.load(tmp / "cam-001-key" / "device.key"),
        )
    return _SESSION_STORE


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    stage=st.sampled_from(["response", "field", "clock", "records", "record", "data_end", "wiped"]),
    value=json_values,
    field=st.sampled_from(["device", "head", "utc", "sig", "public_key", "extra"]),
    kind=st.sampled_from(list(RECORD_KINDS)),
    body=st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, max_size=4),
    noise=st.binary(max_size=64),
)
def test_a_docking_on_random_malformed_input_is_refused_never_crashed(
    tmp_path_factory, stage, value, field, kind, body, noise
):
    """A docking fed a random malformed message at a random stage ends in a refusal (or
    a flag, or stores what is valid) for a reason the session names: never an exception
    the session did not expect, never a dock fault."""
    from dockkit import cable_pair

    from dock.session import DockSession

    ctx = _session_store(tmp_path_factory)
    store = ctx["store"]
    hostile = HostileCamera(ctx["key"], after=store.head("cam-001"), utc_ns=time.time_ns())
    hostile.add_file(f"media/20261118/s{time.time_ns()}.ts", b"\x47" * 300)
    if stage == "response":
        hostile.response = lambda b: value if isinstance(value, dict) else canonical_bytes(value)
    elif stage == "field":
        hostile.response = lambda b: {**b, field: value}
    elif stage == "clock":
        hostile.clock_set = value if isinstance(value, dict) and value else {"offset_ns": value}
    elif stage == "records":
        hostile.records = lambda: [noise or b"{}"]
    elif stage == "record":
        hostile.sign_line(kind, body)
    elif stage == "data_end":
        hostile.data_end = lambda file, sent: (
            value if isinstance(value, dict) else {"missing": value}
        )
    else:
        hostile.wiped = value if isinstance(value, dict) else {"files": value, "reason": value}
    camera_end, dock_end = cable_pair()
    session = DockSession(store, ctx["dock"], "hypothesis", timeout=3)
    flags_before = store.index.query("SELECT MAX(id) AS n FROM flags")[0]["n"] or 0
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=session.run(dock_end)), daemon=True)
    thread.start()
    try:
        said = hostile.run(camera_end, timeout=5)
    finally:
        thread.join(30)
        camera_end.close()
        dock_end.close()
    assert not thread.is_alive()
    r = result["r"]
    assert session.fault is None, r
    assert r.outcome in ("stored", "refused", "flagged"), (r, said)
    kinds = [
        f["kind"] for f in store.index.query("SELECT kind FROM flags WHERE id > ?", (flags_before,))
    ]
    assert "malformed" not in kinds and "dock_fault" not in kinds, (kinds, r.reason)
    event(f"{stage}: {r.outcome} {','.join(kinds)}")
    if r.outcome != "stored":
        assert r.reason and said.refused, (r, said)
        assert kinds, r
