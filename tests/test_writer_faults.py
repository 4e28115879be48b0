"""The writer thread's known faults (issue 11), on the hardware twin at real speed.

1. The SD card stalls: the main loop must not block on the writer's full queue, the
   watchdog keeps being pinged, and the stall is a stoppage of its own
   (``storage_stalled``) that clears when the card answers again.
2. The writer thread dies of an unexpected exception: that is a ``writer_fault``, not
   ``storage_full``; the writer is restarted (journaled), and recording resumes.
3. A writer that dies again and again is restarted a bounded number of times.

The storage is injected at the seam the writer writes through (``SegmentFile``): a real
segment file whose ``write`` blocks on an Event or raises on demand. The watchdog is a
real ``NOTIFY_SOCKET`` datagram socket under ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dockkit import wait_for
from gpiozero.pins.mock import MockFactory
from recorderkit import short_wav

from evidence.media import hash_file
from evidence.record import Record
from firmware import writer as writer_module
from firmware.recorder import Recorder
from firmware.segment import SegmentFile
from simulator.scenario import Scenario
from simulator.shift import recorder_on, shift_config, sim_hardware

RESTARTS = 3


class Storage:
    """What the writer writes through: ``stall`` makes the next frame write block until
    ``release``; ``fail`` makes the next ``n`` frame writes raise a bug (not an OSError)."""

    def __init__(self) -> None:
        self.stalled = threading.Event()
        self.blocked = threading.Event()  # a write is waiting on the card
        self.gate = threading.Event()
        self.failures = 0
        self.lock = threading.Lock()

    def stall(self) -> None:
        self.gate.clear()
        self.stalled.set()

    def release(self) -> None:
        self.stalled.clear()
        self.gate.set()

    def fail(self, n: int) -> None:
        with self.lock:
            self.failures = n

    def segment_file(self) -> type:
        storage = self

        class SeamFile(SegmentFile):
            def write(self, frame) -> None:
                with storage.lock:
                    failing = storage.failures > 0
                    if failing:
                        storage.failures -= 1
                if failing:
                    raise RuntimeError("injected bug in the muxer")
                if storage.stalled.is_set():
                    storage.blocked.set()
                    storage.gate.wait(60)
                super().write(frame)

        return SeamFile


class Journaled:
    """Every record the journal takes, as it takes it (a journal listener)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.cond = threading.Condition()

    def __call__(self, record: Record) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def wait(self, what: str, pred, timeout: float = 20.0) -> Record:
        """The first record (in order) for which ``pred`` holds, waiting for it."""
        with self.cond:
            found: list[Record] = []

            def look() -> bool:
                found[:] = [r for r in self.records if pred(r)]
                return bool(found)

            assert self.cond.wait_for(look, timeout), (
                f"no {what} within {timeout} s: {[r.kind for r in self.records]}"
            )
            return found[0]

    def after(self, seq: int, kind: str, timeout: float = 20.0, **body: Any) -> Record:
        return self.wait(
            f"{kind} {body or ''} after seq {seq}",
            lambda r: (
                r.seq > seq and r.kind == kind and all(r.body.get(k) == v for k, v in body.items())
            ),
            timeout,
        )

    def kinds(self) -> list[str]:
        with self.cond:
            return [r.kind for r in self.records]


@dataclass
class Live:
    recorder: Recorder
    storage: Storage
    journal: Journaled
    notify: NotifySocket
    root: Path
    loop: threading.Thread

    def press_record(self) -> None:
        self.recorder.button("record", True)
        self.recorder.button("record", False)

    def pings(self, n: int, timeout: float = 10.0) -> int:
        """Wait for ``n`` watchdog pings sent from now on; how many came in time."""
        return self.notify.wait_pings(n, timeout)


class NotifySocket:
    """A bound ``NOTIFY_SOCKET`` read on a thread, as systemd reads it (a socket nobody
    reads fills up and blocks the sender)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.pings = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except OSError:
                return
            if "WATCHDOG=1" in message.split("\n"):
                with self.cond:
                    self.pings += 1
                    self.cond.notify_all()

    def wait_pings(self, n: int, timeout: float) -> int:
        with self.cond:
            start = self.pings
            self.cond.wait_for(lambda: self.pings - start >= n, timeout)
            return self.pings - start

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def live(tmp_path: Path, identity, monkeypatch: pytest.MonkeyPatch):
    storage = Storage()
    monkeypatch.setattr(writer_module, "SegmentFile", storage.segment_file())
    sock_path = tmp_path / "notify.sock"
    notify = NotifySocket(sock_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    overlay = {
        "recording": {
            "segment_max_s": 1,
            "pre_event_s": 0,
            "queue_frames": 8,
            "queue_put_timeout_s": 0.05,
            "flush_interval_s": 0.5,
        },
        "controls": {"stop_hold_s": 0.3},
        "health": {
            "poll_s": 0.1,
            "writer_stall_s": 1.0,
            "writer_restart_s": 0.2,
            "writer_restarts": RESTARTS,
        },
        "announcement": {"wav": str(short_wav(tmp_path))},
    }
    config = shift_config(tmp_path, Scenario(config=overlay))
    factory = MockFactory()
    hw = sim_hardware(
        config, tmp_path, speed=1.0, device_id=identity.device_id, pin_factory=factory
    )
    recorder = recorder_on(hw, config, identity, buttons=False)
    journaled = Journaled()
    recorder.open()
    recorder.journal.add_listener(journaled)
    loop = threading.Thread(target=recorder.run, name="recorder-main", daemon=True)
    loop.start()
    assert recorder.ready.wait(30)
    yield Live(recorder, storage, journaled, notify, tmp_path / "device", loop)
    storage.release()
    storage.fail(0)
    recorder.request_stop()
    loop.join(60)
    assert not loop.is_alive(), "the recorder did not stop"
    notify.close()
    hw["indicators"].close()
    factory.close()


def segments_verify(live: Live) -> list[Record]:
    segs = [r for r in live.journal.records if r.kind == "segment"]
    for r in segs:
        assert hash_file(live.root / r.body["file"]) == (r.body["size"], r.body["sha256"])
    return segs


def test_a_stalled_card_is_a_stoppage_and_the_main_loop_and_watchdog_go_on(live: Live) -> None:
    live.press_record()
    first = live.journal.wait("a segment", lambda r: r.kind == "segment")
    live.storage.stall()
    assert live.storage.blocked.wait(10), "the writer never reached the stalled card"
    stop = live.journal.after(first.seq, "stoppage", reason="storage_stalled")
    assert "no progress" in stop.body["detail"], stop.body
    assert "storage_full" not in [r.body.get("reason") for r in live.journal.records]
    # The writer is still stuck in its write; the main loop answers and pings the watchdog.
    assert live.storage.stalled.is_set() and not live.storage.gate.is_set()
    assert live.recorder.sync(5), "the main loop is blocked"
    assert live.pings(3, timeout=10) == 3, "the watchdog stopped being pinged"
    assert live.recorder.writer.output.dropped > 0  # the camera did not wait for the card
    # The card answers again: the stall clears and recording resumes on its own.
    live.storage.release()
    resumed = live.journal.after(stop.seq, "resumed", reason="storage_stalled")
    started = live.journal.after(resumed.seq - 1, "recording_started")
    live.journal.after(started.seq, "segment")
    segments_verify(live)


def test_the_stop_button_does_not_block_the_main_loop_on_a_full_queue(live: Live) -> None:
    """Without the stall stoppage (a long threshold), the officer's stop while the queue
    is full must still leave the main loop running (it used to wait forever in put)."""
    machine = live.recorder.machine
    machine.settings = dataclasses.replace(machine.settings, writer_stall_s=3600.0)
    live.press_record()
    first = live.journal.wait("a segment", lambda r: r.kind == "segment")
    live.storage.stall()
    assert live.storage.blocked.wait(10)
    wait_for(live.recorder.writer.queue.full, timeout=10, what="a full writer queue")
    live.recorder.button("record", True)  # hold to stop
    assert live.pings(2, timeout=10) == 2, "the watchdog stopped being pinged"
    live.recorder.button("record", False)
    assert live.recorder.sync(5), "the main loop is blocked on the writer's queue"
    assert live.recorder.machine.state == "stopping"  # waiting for the writer, not blocked
    live.storage.release()
    stopped = live.journal.after(first.seq, "recording_stopped")
    assert stopped.body == {"by": "button"}
    segments_verify(live)


def test_a_dead_writer_is_a_writer_fault_restarted_and_recording_resumes(live: Live) -> None:
    live.press_record()
    first = live.journal.wait("a segment", lambda r: r.kind == "segment")
    live.storage.fail(1)
    stop = live.journal.after(first.seq, "stoppage", reason="writer_fault")
    assert "injected bug in the muxer" in stop.body["detail"], stop.body
    restarted = live.journal.after(stop.seq, "writer_restarted")
    assert restarted.body["attempt"] == 1 and "RuntimeError" in restarted.body["error"]
    resumed = live.journal.after(restarted.seq, "resumed", reason="writer_fault")
    started = live.journal.after(resumed.seq, "recording_started")
    live.journal.after(started.seq, "segment")
    reasons = [r.body["reason"] for r in live.journal.records if r.kind == "stoppage"]
    assert reasons == ["writer_fault"], reasons
    assert live.recorder.writer.alive
    segs = segments_verify(live)
    assert not any(s.body["recovered"] for s in segs)  # the open segment was signed too


def test_a_writer_that_keeps_dying_is_restarted_a_bounded_number_of_times(live: Live) -> None:
    live.press_record()
    first = live.journal.wait("a segment", lambda r: r.kind == "segment")
    live.storage.fail(1_000_000)
    last = first
    for attempt in range(1, RESTARTS + 1):
        stop = live.journal.after(last.seq, "stoppage", reason="writer_fault")
        last = live.journal.after(stop.seq, "writer_restarted")
        assert last.body["attempt"] == attempt
    final = live.journal.after(last.seq, "stoppage", reason="writer_fault")
    assert "gave up" not in final.body["detail"]
    # Given up: the stoppage stays (no resumed), the main loop and watchdog go on.
    given_up = live.journal.after(final.seq, "writer_gave_up")
    assert given_up.body["attempts"] == RESTARTS
    assert live.recorder.sync(5)
    assert live.pings(2, timeout=10) == 2
    kinds = live.journal.kinds()
    assert kinds.count("writer_restarted") == RESTARTS, kinds
    assert kinds[kinds.index("writer_gave_up") :].count("resumed") == 0
    assert live.recorder.machine.state == "fault"


def test_a_journal_that_refuses_segment_records_stops_recording_until_it_takes_them(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal refuses segment records (as a journal keeping its last room for the
    stoppage records does) while the free space looks fine: a storage_full stoppage, and
    no resume (no stop/resume storm) until the journal takes the kept record, which is
    then signed as it was closed, not as recovered."""
    from evidence.exc import JournalError

    journal = live.recorder.journal
    append = journal.append
    refusing = threading.Event()
    refused: list[str] = []

    def refuse_segments(kind: str, body: dict) -> Record:
        if refusing.is_set() and kind == "segment":
            refused.append(body["file"])
            raise JournalError("short write (200 of 600 bytes)")
        return append(kind, body)

    monkeypatch.setattr(journal, "append", refuse_segments)
    live.press_record()
    first = live.journal.wait("a segment", lambda r: r.kind == "segment")
    refusing.set()
    stop = live.journal.after(first.seq, "stoppage", reason="storage_full")
    assert "journal" in stop.body["detail"], stop.body
    stopped = live.journal.after(stop.seq, "recording_stopped")
    # Free space is plentiful, yet nothing resumes while the journal refuses the segment:
    # the writer is asked again at every health poll (0.1 s) and refused again.
    wait_for(lambda: len(refused) >= 5, timeout=10, what="retries of the kept segment")
    assert live.recorder.sync(5)
    assert [r.kind for r in live.journal.records if r.seq > stopped.seq] == []
    refusing.clear()
    signed = live.journal.after(stopped.seq, "segment")
    assert signed.body["file"] == refused[0] and not signed.body["recovered"]
    resumed = live.journal.after(signed.seq, "resumed", reason="storage_full")
    live.journal.after(resumed.seq, "recording_started")
    kinds = live.journal.kinds()
    assert kinds.count("stoppage") == 1 and kinds.count("resumed") == 1, kinds
    segments_verify(live)
