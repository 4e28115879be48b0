"""Benchmark (``-m bench``): close to stored for a full-size segment over TLS on loopback.

A 60-second segment at the camera's 8 Mbit/s is 60 MB. The camera closes one, its
uploader docks it at once to the real network bay, and the time from the segment's
record to the session's end (the dock journals ``stored`` before it gives the receipt) is
what the one-minute rule allows up to 60 s for. Loopback has no radio: on the station's
Wi-Fi, add 60 MB at the link's rate (at 20 Mbit/s of real throughput, 24 s).
"""

from __future__ import annotations

import time

import pytest
from dockkit import make_camera, make_dock
from netkit import Listening, trusted_docks, uploader

pytestmark = pytest.mark.bench

SEGMENT = 60 * 1_000_000  # 60 s at 8 Mbit/s


def test_a_full_size_segment_is_stored_well_within_a_minute(tmp_path):
    camera, registry = make_camera(tmp_path)
    dock_identity, store = make_dock(tmp_path, registry)
    delays = []
    with Listening(store, dock_identity, timeout=30) as bay:
        up = uploader(camera, bay.address, trusted_docks(store), timeout=30)
        for i in range(3):
            camera.record(1, SEGMENT, seed=i)  # closed: its record is in the journal
            t0 = time.monotonic()
            assert up.attempt() == "stored", up.last
            delays.append(time.monotonic() - t0)
    rate = SEGMENT / min(delays) / 1e6
    print(
        f"network bench: {len(delays)} segments of {SEGMENT / 1e6:.0f} MB over loopback TLS: "
        f"close -> stored {', '.join(f'{d:.2f}' for d in delays)} s ({rate:.0f} MB/s at best)"
    )
    assert max(delays) < 60.0
    store.close()
    camera.close()
