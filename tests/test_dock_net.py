"""Network docking (issue 14): the dock protocol over TLS 1.3 TCP, both ends authenticated
by their registry keys, and hostile peers on the network.

The dock is the real network bay (:class:`dock.netbay.NetListener`) on a free loopback
port; the camera is the real uploader (:class:`firmware.netdock.NetUploader`) on a
camera's storage made with the real journal and media writer (tests/dockkit.py).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl

import pytest
from dockkit import make_camera, make_dock, store_trust
from netkit import Listening, trusted_docks, uploader, wait_until

from evidence.identity import DeviceIdentity
from evidence.registry import DockEntry
from evidence.verify import verify_path
from simulator.unit import register, unit_key
from wire.cable import FrameDecoder, FrameType, encode_frame
from wire.net import ALPN, NetPort, PinError, client_context, dock_certificate, peer_key


@pytest.fixture
def site(tmp_path):
    """A camera with three closed segments, and a dock store that registers both."""
    camera, registry = make_camera(tmp_path)
    camera.record(3, 40_000)
    dock_identity, store = make_dock(tmp_path, registry)
    yield camera, dock_identity, store
    store.close()
    camera.close()


def stored_files(tmp_path, device="cam-001") -> set[str]:
    folder = tmp_path / "dock" / "unit-1" / device
    return {p.relative_to(folder).as_posix() for p in (folder / "media").rglob("*") if p.is_file()}


def test_certificate_carries_the_dock_key():
    from cryptography import x509

    dock = DeviceIdentity.generate("dock-7")
    cert_pem, key_pem = dock_certificate(dock)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.rfc4514_string() == "CN=dock-7"
    raw = cert.public_key().public_bytes_raw()
    assert raw.hex() == dock.public_key_hex
    assert b"PRIVATE KEY" in key_pem


def test_network_docking_stores_and_wipes_under_the_receipt(site, tmp_path):
    camera, dock_identity, store = site
    recorded = camera.media_files()
    with Listening(store, dock_identity) as bay:
        up = uploader(camera, bay.address, trusted_docks(store))
        assert up.attempt() == "stored", up.last
        wait_until(bay, lambda: bay.sessions == 1)
        assert bay.results[-1]["outcome"] == "stored", bay.results[-1]
    kinds = [r.kind for r in camera.journal.records()]
    assert {"docked", "receipt", "wiped"} <= set(kinds)
    assert stored_files(tmp_path) == recorded
    assert camera.media_files() == set(), "the receipt covers every closed segment"
    store_journal = tmp_path / "dock" / "unit-1" / "cam-001" / "journal.jsonl"
    assert store_journal.read_bytes() == camera.storage.journal_path.read_bytes()
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact


def test_dock_speaks_tls_1_3_only(site):
    _, dock_identity, store = site
    with Listening(store, dock_identity) as bay:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols([ALPN])
        with socket.create_connection(bay.address, timeout=5) as raw:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw).close()
        wait_until(bay, lambda: bay.refusals)
        assert "TLS handshake failed" in bay.refusals[-1][1], bay.refusals


def honest_after(bay, camera, store, tmp_path) -> None:
    """The same running bay then stores an honest camera."""
    before = bay.sessions
    up = uploader(camera, bay.address, trusted_docks(store))
    assert up.attempt() == "stored", up.last
    wait_until(bay, lambda: bay.sessions > before)
    assert camera.media_files() == set()
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact


def test_a_client_that_is_not_tls_is_refused_then_the_next_camera_served(site, tmp_path):
    camera, dock_identity, store = site
    with Listening(store, dock_identity) as bay:
        with socket.create_connection(bay.address, timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                raw.recv(100)  # the dock's TLS alert, or the close
            except OSError:
                pass
        wait_until(bay, lambda: bay.refusals)
        who, reason = bay.refusals[-1]
        assert who.startswith("127.0.0.1:")
        assert reason.startswith("TLS handshake failed:"), reason
        assert bay.sessions == 0, "a refused handshake is no docking"
        honest_after(bay, camera, store, tmp_path)


def test_a_client_that_offers_no_alpn_is_refused(site, tmp_path):
    camera, dock_identity, store = site
    with Listening(store, dock_identity) as bay:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(bay.address, timeout=5) as raw:
            tls = ctx.wrap_socket(raw)
            try:
                tls.recv(1)
            except OSError:
                pass
            tls.close()
        wait_until(bay, lambda: bay.refusals)
        assert "does not speak bodycam-dock/2" in bay.refusals[-1][1], bay.refusals
        honest_after(bay, camera, store, tmp_path)


def test_a_client_that_completes_tls_then_sends_garbage_is_refused(site, tmp_path):
    camera, dock_identity, store = site
    with Listening(store, dock_identity) as bay:
        with socket.create_connection(bay.address, timeout=5) as raw:
            tls = client_context().wrap_socket(raw)
            assert peer_key(tls) == dock_identity.public_key_hex
            tls.sendall(b"\x00garbage, not a frame\xff" * 20)
            decoder, frames = FrameDecoder(), []
            while len(frames) < 2:  # the CHALLENGE, then the REFUSE naming the reason
                data = tls.recv(65536)
                if not data:
                    break
                frames += decoder.feed(data)
            tls.close()
        assert [f.type for f in frames] == [FrameType.CHALLENGE, FrameType.REFUSE]
        assert "bad magic" in frames[1].json()["reason"]
        wait_until(bay, lambda: bay.sessions == 1)
        assert bay.results[-1]["outcome"] == "refused"
        assert "bad magic" in bay.results[-1]["reason"]
        honest_after(bay, camera, store, tmp_path)


def test_a_dock_with_a_key_not_in_the_registry_fails_the_pin(site, tmp_path):
    """The camera refuses a dock whose TLS key is no dock of its registry (an impostor on
    the network), says why, and keeps every file; the real dock then stores it."""
    camera, dock_identity, store = site
    impostor = DeviceIdentity.generate(dock_identity.device_id)  # same id, its own key
    recorded = camera.media_files()
    with Listening(store, impostor) as fake:
        up = uploader(camera, fake.address, trusted_docks(store))
        assert up.attempt() == "refused"
        assert isinstance(up.last, PinError), up.last
        assert "not a dock key of this camera's registry" in str(up.last)
        wait_until(fake, lambda: fake.sessions == 1)
        said = fake.results[-1]
        assert said["outcome"] == "refused" and "not a dock key" in said["reason"], said
    assert camera.media_files() == recorded
    assert "docked" not in [r.kind for r in camera.journal.records()]
    with Listening(store, dock_identity) as bay:
        honest_after(bay, camera, store, tmp_path)


def test_a_revoked_dock_key_fails_the_pin(site, tmp_path):
    camera, dock_identity, store = site
    docks = trusted_docks(store)
    entry = docks[dock_identity.device_id]
    docks[entry.dock_id] = dataclasses.replace(
        entry, revoked_utc="2026-01-01T00:00:00.000000Z", revoked_reason="stolen"
    )
    with Listening(store, dock_identity) as bay:
        up = uploader(camera, bay.address, docks)
        assert up.attempt() == "refused"
        assert "revoked" in str(up.last) and "stolen" in str(up.last)
    assert "docked" not in [r.kind for r in camera.journal.records()]


def test_a_challenge_naming_another_key_than_the_tls_key_is_refused(site, tmp_path):
    """A relay: the TLS end holds a registered dock key, but the protocol speaks for
    another dock (as if the challenge came from elsewhere): the camera refuses."""
    camera, dock_identity, store = site
    other = DeviceIdentity.generate("dock-2")
    key = unit_key(tmp_path)
    register(store.registry_path, key, docks=[DockEntry("dock-2", other.public_key_hex, "unit-1")])
    with Listening(store, dock_identity) as bay:
        bay.identity = other  # TLS answers with dock-1's key, the session is dock-2's
        up = uploader(camera, bay.address, trusted_docks(store))
        assert up.attempt() == "refused"
        assert "(a relay): refused" in str(up.last), up.last
    assert "docked" not in [r.kind for r in camera.journal.records()]
    assert camera.media_files(), "nothing wiped"


def test_a_revoked_camera_is_refused_then_the_next_honest_camera_served(site, tmp_path):
    camera, dock_identity, store = site
    key = unit_key(tmp_path)
    entry = store.registry().get("cam-001")
    register(
        store.registry_path,
        key,
        devices=[dataclasses.replace(entry, revoked_utc="2026-01-01T00:00:00.000000Z")],
    )
    honest, registry2 = make_camera(tmp_path, "cam-002")
    honest.record(2, 30_000)
    register(store.registry_path, key, merge_from=registry2)
    recorded = camera.media_files()
    with Listening(store, dock_identity) as bay:
        up = uploader(camera, bay.address, trusted_docks(store))
        assert up.attempt() == "refused"
        wait_until(bay, lambda: bay.sessions == 1)
        said = bay.results[-1]
        assert said["outcome"] == "refused" and "revoked" in said["reason"], said
        assert camera.media_files() == recorded, "a refused camera keeps its data"
        up2 = uploader(honest, bay.address, trusted_docks(store))
        assert up2.attempt() == "stored", up2.last
    assert honest.media_files() == set()
    assert stored_files(tmp_path, "cam-002")
    flags = store.index.query("SELECT device, kind FROM flags")
    assert {"device": "cam-001", "kind": "revoked"} in [dict(f) for f in flags]
    honest.close()


def test_connections_over_the_limit_are_closed_with_the_reason(site, tmp_path):
    camera, dock_identity, store = site
    with Listening(store, dock_identity, max_connections=1) as bay:
        idle = socket.create_connection(bay.address, timeout=5)  # holds the only slot
        try:
            with socket.create_connection(bay.address, timeout=5) as second:
                assert second.recv(1) == b""
            wait_until(bay, lambda: bay.refusals)
            assert "1 connections already open" in bay.refusals[-1][1]
        finally:
            idle.close()
        wait_until(bay, lambda: len(bay.refusals) == 2)  # the idle one, closed untalked
        honest_after(bay, camera, store, tmp_path)


def test_net_port_reads_writes_and_cancels():
    a, b = socket.socketpair()
    try:
        port = NetPort(a, cancelled=lambda: cancel)  # type: ignore[arg-type]
        cancel = False
        port.timeout = 0.1
        assert port.read(10) == b""  # nothing within the timeout
        b.sendall(encode_frame(FrameType.BYE, 0, b"{}"))
        assert port.read(100)[:2] == b"BK"
        cancel = True
        with pytest.raises(ConnectionAbortedError):
            port.read(1)
        cancel = False
        b.close()
        with pytest.raises(ConnectionResetError):
            port.read(1)
    finally:
        a.close()
