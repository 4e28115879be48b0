"""Broker crashes: mosquitto SIGKILLed (after it has acknowledged alerts, and again while the
supervisor is reconnecting) while a camera raises alerts and reboots, watched by a real
`bodycam-supervisor watch` process. Every alert must be shown exactly once: the camera
resends from its durable outbox until the console's signed receipt comes, not merely until
the broker's PUBACK (which a crash makes worthless).

The figures (alerts raised, shown once, lost, duplicates, reconnect times) are printed:
run ``pytest -m faults -s tests/faults/test_broker_crash.py``. ``FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import Broker
from test_alerts_receipts import camera_settings, make_unit

from alerting.watch import RECONNECT_MAX_S
from evidence.journal import Journal
from firmware.mqtt import AlertLink

ALERTS = 48
KILL_EPISODES = 6


class Lines:
    """A process's output lines, each with the monotonic time it arrived."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: any(text in line for _, line in self.lines), timeout)

    def wait_for_after(self, t0: float, text: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self._after(t0, text) is not None, timeout)

    def _after(self, t0: float, text: str) -> float | None:
        return next((t for t, line in self.lines if t >= t0 and text in line), None)

    def after(self, t0: float, text: str) -> float | None:
        with self.cond:
            return self._after(t0, text)


def kill(broker: Broker) -> None:
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(10)
    broker.proc = None


@pytest.mark.faults
@pytest.mark.slow
def test_broker_sigkills_lose_no_alert_and_show_none_twice(tmp_path):
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10**9))
    rng = random.Random(seed)
    unit = make_unit(tmp_path / "unit")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")  # persistence false: a crash loses all it held
    broker.start()
    config = unit.supervisor_config(broker, tmp_path / "seen.json")
    watch = subprocess.Popen(
        [str(Path(sys.executable).with_name("bodycam-supervisor")), "watch", "--json"]
        + ["--config", str(config), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = Lines(watch.stdout), Lines(watch.stderr)
    journal_path = tmp_path / "camera" / "journal.jsonl"
    journal = Journal(journal_path, unit.camera)
    settings = camera_settings(
        broker, reconnect_max_s=1.0, receipt_resend_s=0.5, receipt_resend_max_s=4.0
    )
    link = AlertLink(journal, settings, consoles=unit.consoles)
    episodes: list[dict] = []
    chaos_done = threading.Event()
    stop_chaos = threading.Event()

    def chaos() -> None:
        """Kill the broker at random points: right after it PUBACKed what the camera sent,
        and in half the episodes again while the supervisor is still reconnecting."""
        try:
            for _ in range(KILL_EPISODES):
                if stop_chaos.wait(rng.uniform(0.4, 1.6)):
                    return
                deadline = time.monotonic() + 1.0
                while link.session.inflight and time.monotonic() < deadline:
                    time.sleep(0.001)  # the broker has acknowledged everything sent
                kill(broker)
                double = rng.random() < 0.5
                time.sleep(rng.uniform(0.05, 1.2))
                restart = time.monotonic()  # from the launch: the console may be back
                broker.start()  # before start() has seen the port open
                if double:
                    time.sleep(rng.uniform(0.05, 0.5))  # the supervisor is reconnecting
                    kill(broker)
                    time.sleep(rng.uniform(0.05, 0.8))
                    restart = time.monotonic()
                    broker.start()
                # The broker stays up until the supervisor is back (or 10 s): that time is
                # the reconnect figure; only then may the next episode begin.
                err.wait_for_after(restart, "connected to", 10)
                episodes.append({"restart": restart, "double": double})
        finally:
            chaos_done.set()

    raised = []
    try:
        assert err.wait_for("waiting for alerts", 20), err.lines
        link.start()
        assert link.wait_connected(10)
        worker = threading.Thread(target=chaos, daemon=True)
        worker.start()
        for i in range(ALERTS):
            kind = ("stoppage", "resumed")[i % 2]
            body = {"reason": "weather", "detail": f"alert {i}"} if kind == "stoppage" else {}
            raised.append(journal.append(kind, body or {"reason": "weather"}))
            if i == ALERTS // 2:  # the camera reboots: the outbox comes back from disk
                link.stop()
                journal.close()
                journal = Journal(journal_path, unit.camera)
                link = AlertLink(journal, settings, consoles=unit.consoles)
                link.start()
            time.sleep(rng.uniform(0.02, 0.3))
        assert chaos_done.wait(60)
        delivered = link.wait_idle(60)  # every alert receipted by the console
        time.sleep(1.0)  # anything shown late would show now
    finally:
        stop_chaos.set()
        chaos_done.wait(30)
        link.stop()
        watch.send_signal(signal.SIGTERM)
        try:
            watch.wait(15)
        except subprocess.TimeoutExpired:
            watch.kill()
        broker.stop()
    out.thread.join(5)
    err.thread.join(5)

    shown = [json.loads(line) for _, line in out.lines]
    verified = Counter(x["seq"] for x in shown if x["genuine"])
    raised_seqs = {r.seq for r in raised}
    reconnects = []
    for e in episodes:
        t = err.after(e["restart"], "connected to")
        reconnects.append(None if t is None else round(t - e["restart"], 2))
    figures = {
        "seed": seed,
        "alerts_raised": len(raised),
        "delivered_once": sum(1 for s in raised_seqs if verified[s] == 1),
        "lost": len(raised_seqs - set(verified)),
        "duplicates_shown": sum(n - 1 for n in verified.values() if n > 1),
        "flagged": sum(1 for x in shown if not x["genuine"]),
        "broker_kills": sum(2 if e["double"] else 1 for e in episodes),
        "kill_episodes": len(episodes),
        "supervisor_reconnect_s": reconnects,
        "camera_resends_after_reboot": link.session.resent,
    }
    print("broker-crash figures:", json.dumps(figures, sort_keys=True))
    t0 = err.lines[0][0] if err.lines else 0.0
    timeline = [
        f"{t - t0:7.2f} watch: {line}"
        for t, line in err.lines
        if "PING" not in line and "PUBLISH" not in line and "PUBACK" not in line
    ]
    timeline += [f"{e['restart'] - t0:7.2f} broker restarted" for e in episodes]
    (tmp_path / "timeline.txt").write_text("\n".join(sorted(timeline)) + "\n")
    assert len(episodes) == KILL_EPISODES, figures
    assert delivered, figures
    assert figures["lost"] == 0 and figures["duplicates_shown"] == 0, figures
    assert figures["flagged"] == 0, (figures, [x for x in shown if not x["genuine"]])
    assert figures["delivered_once"] == ALERTS, figures
    assert all(r is not None and r <= RECONNECT_MAX_S + 3.0 for r in reconnects), figures
    assert set(verified) == raised_seqs, figures
