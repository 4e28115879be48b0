"""The fixed camera's TLS offload with its connection cut at random points, 30 times
(issue 14, "What must be shown"): no loss and no duplicate.

Real parts: the dock is ``bodycam-dock serve --listen 127.0.0.1:0`` (a process); the camera
is the real recorder on the simulator's twin, recording 1-second segments in real time,
its uploader docking over TLS through a TCP proxy. Each run arms the proxy to cut the next
connection after a random number of bytes (seeded, printed) in a random direction (camera
to dock: mid-record, mid-file; dock to camera: at the TLS handshake, the challenge, the
clock, a GET, the receipt), closing both sides with a reset, as a dropped network does;
the camera retries on its own, and the run ends when a later session has stored. At the
end: ``bodycam-verify`` passes on the store with the unit key, every segment the camera
closed is in the store exactly once, nothing was wiped without a receipt covering it, and
nothing is duplicated.

Reproduce a run: ``BODYCAM_CUT_SEED=<seed> pytest tests/faults/test_net_cuts.py -s``.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from dockkit import verify_args
from netkit import CutProxy, DockProcess, NetCamera, close_to_stored, percentile, records

from evidence.record import Record
from wire.net import format_address

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RUNS = 30
SEED = int(os.environ.get("BODYCAM_CUT_SEED", "1414"))
# Bytes: a session carries about one 1-second segment (some 25 kB of TLS records) up, and
# about 2.3 kB down (the TLS handshake, challenge, clock, SYNC, GET, receipt, BYE).
MAX_CUT = {"up": 24_000, "down": 2_200}


def wiped_without_receipt(camera_records) -> list[str]:
    """Files a ``wiped`` record names that no earlier ``receipt`` of the same session
    covers (its ``receipt_seq`` must name a receipt whose ``upto_seq`` reaches the file's
    segment)."""
    by_seq = {r.seq: r for r in camera_records}
    seg_of = {r.media[0]: r.seq for r in camera_records if r.media}
    wrong = []
    for r in camera_records:
        if r.kind != "wiped":
            continue
        receipt = by_seq.get(r.body.get("receipt_seq"))
        for f in r.body["files"]:
            if receipt is None or receipt.kind != "receipt" or receipt.seq > r.seq:
                wrong.append(f)
            elif seg_of.get(f, 1 << 62) > receipt.body["upto_seq"]:
                wrong.append(f)
    return wrong


def test_thirty_random_cuts_lose_nothing_and_duplicate_nothing(tmp_path):
    rnd = random.Random(SEED)
    print(f"\nnetwork cuts: seed {SEED} (BODYCAM_CUT_SEED)")
    cam = NetCamera(tmp_path)
    dock = DockProcess(tmp_path)
    proxy = CutProxy(dock.address)
    cam.config["dock"]["network"] = format_address(proxy.address)
    plan = []
    try:
        cam.start()
        cam.record()
        for run in range(RUNS):
            direction = rnd.choice(("up", "down"))
            cut = rnd.randrange(0, MAX_CUT[direction])
            plan.append((cut, direction))
            stored_before = cam.uploader.stored
            proxy.arm(cut, direction)
            assert proxy.cut_done.wait(30), f"run {run}: no connection came to be cut"
            with cam.uploader.done:  # the camera retried on its own, and stored
                ok = cam.uploader.done.wait_for(
                    lambda before=stored_before: cam.uploader.stored > before, 30
                )
            assert ok, f"run {run}: no session stored after the cut at {cut} {direction}"
        cam.stop_recording()
        cam.wait_all_stored()
    finally:
        cam.close()
        proxy.close()
        code = dock.stop()
    assert code == 0, dock.log.read_text()[-3000:]

    camera = records(cam.journal_path)
    segments = [r.media[0] for r in camera if r.kind == "segment"]
    store_dir = cam.store_journal().parent
    stored_files = Counter(
        p.relative_to(store_dir).as_posix() for p in (store_dir / "media").rglob("*.ts")
    )
    dock_journal = tmp_path / "dock" / "_docks" / "dock-sim" / "journal.jsonl"
    stored_records = Counter(
        r.body["seq"]
        for r in records(dock_journal)
        if r.kind == "stored" and r.body["device"] == cam.identity.device_id
    )
    lost = [f for f in segments if f not in stored_files]
    duplicated = [s for s, n in stored_records.items() if n > 1]
    duplicated += [f for f, n in Counter(segments).items() if n > 1]
    store_seqs = [r.seq for r in records(cam.store_journal())]
    duplicated += [s for s, n in Counter(store_seqs).items() if n > 1]
    wrongly = wiped_without_receipt(camera)
    wiped = {f for r in camera if r.kind == "wiped" for f in r.body["files"]}
    on_card = {
        p.relative_to(cam.tmp / "device").as_posix()
        for p in (cam.tmp / "device" / "media").rglob("*.ts")
    }
    lost += [f for f in segments if f not in wiped and f not in on_card]  # gone untold
    wrongly += [f for f in wiped if f not in stored_files]
    hit = sum(1 for cut, _d, got in proxy.cuts if got >= cut)
    delays = close_to_stored(cam.journal_path, dock_journal)
    print(
        f"network cuts: {RUNS} runs ({hit} cut mid-session: "
        f"{sum(d == 'up' for _c, d in plan)} camera->dock, "
        f"{sum(d == 'down' for _c, d in plan)} dock->camera), {len(segments)} segments, "
        f"{len(set(lost))} lost, {len(duplicated)} duplicated, {len(set(wrongly))} wrongly wiped; "
        f"{cam.uploader.sessions} sessions, {cam.uploader.failures} failed"
    )
    print(
        f"network cuts: close -> stored under cuts: p50 {percentile(delays, 50):.3f} s, "
        f"p99 {percentile(delays, 99):.3f} s, max {max(delays):.3f} s"
    )
    print("network cuts: plan " + " ".join(f"{c}{d[0]}" for c, d in plan))
    assert not lost and not duplicated and not wrongly, (lost, duplicated, wrongly)
    assert len(segments) >= RUNS
    assert set(stored_files) == set(segments)
    # The store holds the camera's journal, byte for byte, up to the last session; after
    # it the camera has journaled only that session's own bookkeeping (its receipt, the
    # wipe), which the next session carries.
    in_store, on_camera = cam.store_journal().read_bytes(), cam.journal_path.read_bytes()
    assert on_camera.startswith(in_store)
    after = [Record.from_bytes(line) for line in on_camera[len(in_store) :].splitlines()]
    assert {r.kind for r in after} <= {"docked", "clock_set", "receipt", "wiped"}, after
    assert not on_card, "the final session's receipt covers every segment"
    assert hit >= 20, f"too few cuts landed inside a session: {proxy.cuts}"
    assert not any((tmp_path / "dock" / ".partial").rglob("*.part"))
    done = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", *verify_args(tmp_path / "dock")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log = dock.log.read_text()
    phases = Counter(
        re.findall(r" interrupted \(line closed while (?:reading|sending) ([A-Z_/]+)", log)
    )
    tls = log.count("TLS handshake failed")
    print(f"network cuts: where the dock saw them: {dict(phases)}, {tls} in the TLS handshake")
    assert sum(phases.values()) >= 10, "the dock saw the cuts as interrupted sessions"
