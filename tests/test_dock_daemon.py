"""The dock daemon as a real process: bays in parallel, status, SIGTERM, SIGKILL mid-write."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

from dockkit import (
    NS,
    BayCable,
    HeldTty,
    dock_cmd,
    make_camera,
    make_dock,
    run_docking,
    store_trust,
)

from dock.bay import bay_name
from evidence.unitkey import UnitKey
from evidence.verify import verify_path
from simulator.clock import SimClock
from simulator.unit import register


def wait_for(predicate, timeout=20.0, what="condition"):
    """Poll a file-system condition the daemon produces, with a deadline."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(tmp):
    out = subprocess.run(
        dock_cmd(tmp, "status", "--json"), capture_output=True, text=True, timeout=30
    )
    return {row["bay"]: row for row in json.loads(out.stdout)["bays"]}


class PausingEnd(HeldTty):
    """The camera's end of the cable, holding still after ``pause_at`` bytes (so the test
    can kill the dock while a file is half received)."""

    def __init__(self, fd, pause_at):
        super().__init__(fd)
        self.pause_at = pause_at
        self.sent = 0
        self.paused = threading.Event()
        self.release = threading.Event()

    def write(self, data):
        if self.sent >= self.pause_at:
            self.paused.set()
            self.release.wait(30)
        self.sent += len(data)
        return super().write(data)


def camera_thread(camera, dock_identity, end, results, key, chunk=1 << 18):
    def run():
        try:
            results[key] = camera.link(dock_identity, timeout=5, chunk=chunk).run_session(end)
        except Exception as exc:
            results[key] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_two_bays_at_once_show_progress_and_stop_on_sigterm(tmp_path):
    an_hour_ago = SimClock(time.time_ns() - 3600 * NS)  # the daemon runs on the real clock
    cam_a, reg_a = make_camera(tmp_path, "cam-a", officer="A1", clock=an_hour_ago)
    cam_b, reg_b = make_camera(tmp_path, "cam-b", officer="B2", clock=an_hour_ago)
    files_a = cam_a.record(3, 400_000)
    cam_b.record(2, 300_000, seed=5)
    dock_identity, store = make_dock(tmp_path, reg_a)
    store.close()
    # The head of unit signs a new edition with cam-b; the dock installs it.
    signed = tmp_path / "registry-edition-2.json"
    register(
        signed,
        UnitKey.load(tmp_path / "unit-key/unit.key"),
        merge_from=tmp_path / "dock/registry.json",
    )
    register(signed, UnitKey.load(tmp_path / "unit-key/unit.key"), merge_from=reg_b)
    subprocess.run(
        dock_cmd(tmp_path, "registry", "import", str(signed)),
        check=True,
        capture_output=True,
        timeout=30,
    )
    cable_a, cable_b = BayCable(tmp_path, "ttyACM0"), BayCable(tmp_path, "ttyACM1")
    pa, pb = str(cable_a.path), str(cable_b.path)
    daemon = subprocess.Popen(
        dock_cmd(tmp_path, "serve", "--port", pa, "--port", pb),
        stderr=open(tmp_path / "daemon.log", "w"),
    )
    try:
        wait_for(
            lambda: all(
                status(tmp_path).get(bay_name(p), {}).get("state") == "handshake" for p in (pa, pb)
            ),
            what="both bays to challenge",
        )
        results = {}
        threads = [
            camera_thread(cam_a, dock_identity, cable_a.camera, results, "a"),
            camera_thread(cam_b, dock_identity, cable_b.camera, results, "b"),
        ]
        for t in threads:
            t.join(30)
        rows = wait_for(
            lambda: (s := status(tmp_path)) and all(r.get("last") for r in s.values()) and s,
            what="both bays to finish",
        )
        assert {r["last"]["device"] for r in rows.values()} == {"cam-a", "cam-b"}
        assert all(r["last"]["outcome"] == "stored" for r in rows.values())
        assert results["a"].wiped and sorted(results["a"].wiped) == sorted(files_a)
        text = subprocess.run(
            dock_cmd(tmp_path, "status"), capture_output=True, text=True, timeout=30
        ).stdout
        assert "cam-a stored (3 files" in text and "cam-b stored (2 files" in text
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    report = subprocess.run(
        dock_cmd(tmp_path, "report", "deadlines"), capture_output=True, text=True, timeout=30
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "officer A1: 3 on time, 0 late" in report.stdout
    assert "officer B2: 2 on time, 0 late" in report.stdout


def test_the_dock_killed_mid_write_leaves_a_consistent_store(tmp_path):
    camera, registry = make_camera(tmp_path)
    files = camera.record(4, 2_000_000)
    dock_identity, store = make_dock(tmp_path, registry)
    store.close()
    cable = BayCable(tmp_path)
    path = str(cable.path)
    daemon = subprocess.Popen(dock_cmd(tmp_path, "bay", path), stderr=subprocess.DEVNULL)
    wait_for(
        lambda: status(tmp_path).get(bay_name(path), {}).get("state") == "handshake",
        what="the bay to challenge",
    )
    results = {}
    end = PausingEnd(cable.camera.fd, 5_000_000)
    thread = camera_thread(camera, dock_identity, end, results, "cam", chunk=32768)
    try:
        assert end.paused.wait(30)
        wait_for(
            lambda: (
                sum(
                    p.stat().st_size
                    for p in (tmp_path / "dock").rglob("*")
                    if p.suffix in (".ts", ".part")
                )
                > 4_500_000
            ),
            what="the dock to write 4.5 MB",
        )
        assert any((tmp_path / "dock" / ".partial").rglob("*.part"))
        # An operator sees the bay offloading, with a progress bar.
        text = subprocess.run(
            dock_cmd(tmp_path, "status"), capture_output=True, text=True, timeout=30
        ).stdout
        assert "offloading" in text and "cam-001" in text and "[#" in text, text
        assert "/8.0 MB" in text, text
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        cable.release_dock_end()
        end.release.set()
    thread.join(30)
    assert isinstance(results["cam"], Exception)  # the line died under the camera
    assert camera.media_files() == set(files)  # and it kept everything
    out = subprocess.run(
        dock_cmd(tmp_path, "reconcile"), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    report = verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path))
    assert report.intact, [str(p) for p in report.problems]
    # Re-dock: the store completes, the camera is wiped, the store verifies.
    from dock.store import Store

    store = Store(tmp_path / "dock", identity=dock_identity)
    result, cam = run_docking(store, dock_identity, camera.link(dock_identity))
    assert result.outcome == "stored", result.reason
    assert result.resumed_bytes > 0 and result.bytes < 8_000_000
    assert camera.media_files() == set()
    assert verify_path(tmp_path / "dock", unit_keys=store_trust(tmp_path)).intact
    rows = store.index.query("SELECT COUNT(*) AS n FROM media WHERE stored_utc IS NOT NULL")
    assert rows[0]["n"] == 4


def test_options_work_after_the_subcommand_as_the_systemd_units_write_them(tmp_path, capsys):
    from dock.__main__ import build_parser, main

    args = build_parser().parse_args(["bay", "/dev/ttyACM0", "--config", "/etc/x.toml"])
    assert (args.command, args.port, args.config) == ("bay", "/dev/ttyACM0", "/etc/x.toml")
    config = tmp_path / "dock.toml"
    config.write_text(
        f'[dock]\nstore = "{tmp_path / "store"}"\nkey = "{tmp_path / "k"}"\nid = "dock-9"\n'
    )
    assert main(["init", "--config", str(config)]) == 0
    assert "dock dock-9" in capsys.readouterr().out
    assert main(["status", "--config", str(config)]) == 0
    assert "no bays have reported" in capsys.readouterr().out
    config.write_text("[dock]\nstores = 1\n")
    assert main(["status", "--config", str(config)]) == 2
    assert "unknown setting 'dock.stores'" in capsys.readouterr().err
