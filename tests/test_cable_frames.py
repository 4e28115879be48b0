"""The cable's frames: a strict pure decoder (hypothesis) and refusals on a real pty."""

from __future__ import annotations

import threading

import pytest
from dockkit import cable_pair, make_camera, make_dock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire.cable import (
    HEADER,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameError,
    FrameType,
    LinkTimeout,
    encode_frame,
)
from wire.link import Link

frame_types = st.sampled_from(list(FrameType))
payloads = st.binary(max_size=2048)


@given(st.lists(st.tuples(frame_types, payloads), max_size=8), st.integers(1, 64))
def test_frames_round_trip_in_any_split(frames, step):
    wire = b"".join(encode_frame(t, i, p) for i, (t, p) in enumerate(frames))
    decoder = FrameDecoder()
    got = []
    for k in range(0, len(wire), step):
        got += decoder.feed(wire[k : k + step])
    assert [(f.type, f.seq, f.payload) for f in got] == [
        (t, i, p) for i, (t, p) in enumerate(frames)
    ]
    assert decoder.pending == 0


@given(frame_types, payloads, st.data())
def test_any_flipped_byte_is_refused(ftype, payload, data):
    wire = bytearray(encode_frame(ftype, 0, payload))
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] ^= data.draw(st.integers(1, 255))
    decoder = FrameDecoder()
    try:
        frames = decoder.feed(bytes(wire))
    except FrameError as exc:
        assert str(exc)  # a reason, never an empty message
        return
    # A corrupted length field may leave the decoder waiting for more bytes: never a frame.
    assert frames == []


@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_the_decoder(data):
    decoder = FrameDecoder()
    try:
        frames = decoder.feed(data)
    except FrameError:
        with pytest.raises(FrameError):  # poisoned: the session is over
            decoder.feed(b"")
        return
    for f in frames:
        assert isinstance(f.type, FrameType)


def test_refusal_reasons():
    cases = {
        b"XX" + encode_frame(FrameType.BYE, 0)[2:]: "bad magic",
        encode_frame(FrameType.BYE, 0)[:2]
        + b"\x09"
        + encode_frame(FrameType.BYE, 0)[3:]: "unsupported protocol version 9",
        encode_frame(FrameType.BYE, 1): "out-of-order frame: sequence 1, expected 0",
        HEADER.pack(b"BK", 1, 10, 0, MAX_PAYLOAD + 1): "oversized frame",
        HEADER.pack(b"BK", 1, 99, 0, 0): "unknown frame type 99",
        encode_frame(FrameType.BYE, 0, b"{}")[:-1] + b"\x00": "checksum mismatch",
    }
    for wire, reason in cases.items():
        with pytest.raises(FrameError, match=reason):
            FrameDecoder().feed(wire)
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(FrameType.DATA, 0, bytes(MAX_PAYLOAD + 1))


@pytest.mark.parametrize("bulk", [False, True])
def test_a_stalled_peer_times_out(bulk):
    camera, port = cable_pair(timeout=0.1)
    try:
        link = Link(port, timeout=0.3, bulk_reader=bulk)
        camera.write(encode_frame(FrameType.RESPONSE, 0, b"{")[:9])  # half a header
        with pytest.raises(LinkTimeout, match="peer stalled"):
            link.recv("RESPONSE")
    finally:
        port.close()
        camera.close()


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(noise=st.binary(min_size=1, max_size=600))
def test_random_bytes_on_the_line_are_refused_and_the_camera_keeps_its_data(
    tmp_path_factory, noise
):
    tmp = tmp_path_factory.mktemp("noise")
    camera, registry = make_camera(tmp)
    files = camera.record(1, 3000)
    dock_identity, store = make_dock(tmp, registry)
    # The dock hears noise where a camera should answer.
    from dock.session import DockSession

    end, port = cable_pair(timeout=0.1)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            r=DockSession(store, dock_identity, "noise", timeout=0.2).run(port)
        ),
        daemon=True,
    )
    thread.start()
    end.read(HEADER.size)  # the challenge starts
    end.write(noise)
    thread.join(10)
    port.close()
    end.close()
    r = result["r"]
    assert r.outcome in ("refused", "interrupted"), r
    assert r.reason and store.device_folders() == []
    # The camera hears noise where a dock should challenge: it gives up, keeps everything.
    end, port = cable_pair(timeout=0.1)
    port.write(noise)
    with pytest.raises((FrameError, LinkTimeout)):
        camera.link(dock_identity, timeout=0.2).run_session(end)
    port.close()
    end.close()
    assert camera.media_files() == set(files)
    camera.close()
    store.close()
