"""Fault: the cable is pulled (issue 13). The real ``bodycam-recorder`` (sim backend) keeps
its dock port open on a pty whose other end the test holds as the dock; pulling the cable is
closing that end (the port hangs up). The same running daemon must dock again when a dock
comes back, after a pull between sessions and after a pull in the middle of one.

The camera opens its port by a stable name (``ttyGS0`` here, a symlink the test points at
the current pty's fd it holds, as udev names the gadget port), so a new cable is a new pty pair.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_dock import HostileDock
from recorderkit import Daemon, HeldEnd, cable, short_wav

from dock.session import DockSession
from evidence.identity import DeviceIdentity
from simulator.dockbay import ensure_dock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.faults


def test_the_camera_docks_again_after_the_cable_is_pulled(
    tmp_path: Path, identity: DeviceIdentity, registry_file: Path
) -> None:
    key = tmp_path / "key" / "device.key"
    dock_identity, store = ensure_dock(
        tmp_path / "dock", tmp_path / "dock-key" / "dock.key", registry_file
    )
    config = tmp_path / "recorder.toml"
    config.write_text(
        f'[dock]\nregistry = "{store.registry_path}"\nunit_keys = {sorted(store.unit_keys)}\n'
        f'poll_s = 0.2\n[announcement]\nwav = "{short_wav(tmp_path)}"\n'
    )

    def dock_now(end: HeldEnd):
        return DockSession(store, dock_identity, "test-bay", timeout=10).run(end)

    end, port = cable(tmp_path)
    daemon = Daemon(tmp_path, key, "--config", str(config), "--dock-port", port)
    try:
        daemon.wait_for("dock port")
        first = dock_now(end)
        assert first.outcome == "stored", first.reason
        daemon.wait_for("docking with")

        # 1. Pulled between sessions: the idle port hangs up (it polls readable too).
        end.close()
        daemon.wait_for("hung up (undocked)")
        daemon.wait_for("waiting for a dock")  # the old pty is gone: it waits for the port

        # 2. Pulled in the middle of a session, right after the handshake.
        end, port = cable(tmp_path)
        daemon.wait_for("dock port")
        hostile = HostileDock(end.fd, dock_identity)
        kind, _ = hostile.challenge()
        assert kind.name == "RESPONSE"
        end.close()
        daemon.wait_for("lost during the session (undocked)")

        # 3. A dock again: the same running thread docks, stores and receipts.
        end, port = cable(tmp_path)
        daemon.wait_for("dock port")
        again = dock_now(end)
        assert again.outcome == "stored", again.reason
        assert again.receipt_upto is not None and again.receipt_upto >= first.receipt_upto
        daemon.wait_for("docking with")
        assert daemon.proc.poll() is None
        log = "".join(daemon.log)
        assert "Traceback" not in log and "Exception in thread" not in log, log[-3000:]
        end.close()
        daemon.stop()
    finally:
        daemon.kill()
        end.close()
        store.close()
