"""A hostile camera, written by hand: it speaks the cable protocol frame by frame over a pty
end the test holds, signs whatever it likes with a registered (stolen) key, and can break
any rule on purpose. It never uses the firmware's DockLink, so nothing the real camera
checks protects the dock here.

Each hook returns what to send instead of the honest answer; ``run`` reports what the dock
said last (a REFUSE reason, a BYE, or the line closing).
"""

from __future__ import annotations

import hashlib
import os
import select
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from evidence import FORMAT_VERSION
from evidence.canonical import GENESIS_HASH, canonical_bytes, sha256_hex
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from wire.cable import (
    MAX_PAYLOAD,
    CableError,
    FrameType,
    LinkClosed,
    encode_frame,
    response_message,
)
from wire.link import Link

NS = 1_000_000_000
START = 1_795_000_000 * NS  # 2026-11-18, as in dockkit


@dataclass
class DockSaid:
    """What the dock told the hostile camera."""

    refused: str | None = None  # the REFUSE reason
    bye: dict[str, Any] | None = None
    closed: str | None = None  # the line broke or stalled
    frames: list[FrameType] = field(default_factory=list)
    gets: list[dict[str, Any]] = field(default_factory=list)
    receipt: dict[str, Any] | None = None


class HostileCamera:
    """A journal built by hand (any body, any file name) and a scriptable protocol."""

    def __init__(
        self,
        identity: DeviceIdentity,
        after: tuple[int, str] | None = None,
        utc_ns: int = START,
    ) -> None:
        """``after``: the head the chain continues from (a stolen camera's stored head)."""
        self.identity = identity
        self.device = identity.device_id
        self.head: tuple[int, str] | None = after
        self.lines: list[bytes] = []
        self.files: dict[str, bytes] = {}
        self.utc_ns = utc_ns
        self.mono_ns = 1_000 * NS
        # hooks (each None: behave honestly)
        self.response: Callable[[dict[str, Any]], dict[str, Any] | bytes] | None = None
        self.clock_set: dict[str, Any] | None = None
        self.records: Callable[[], Iterable[bytes]] | None = None  # RECORDS payloads
        self.data: Callable[[str, int], Iterable[bytes]] | None = None  # DATA payloads
        self.data_end: Callable[[str, int], dict[str, Any]] | None = None
        self.wiped: dict[str, Any] | None = None
        self.slow_response: float | None = None  # seconds between the RESPONSE's bytes

    # -- the journal --------------------------------------------------------------------
    def sign_line(self, kind: str, body: dict[str, Any], **override: Any) -> bytes:
        """A correctly signed record after the current head, whatever its body says."""
        seq = 0 if self.head is None else self.head[0] + 1
        prev = GENESIS_HASH if self.head is None else self.head[1]
        self.utc_ns += NS
        self.mono_ns += NS
        unsigned = {
            "v": FORMAT_VERSION,
            "device": self.device,
            "seq": seq,
            "prev": prev,
            "utc": format_utc(self.utc_ns),
            "mono_ns": self.mono_ns,
            "kind": kind,
            "body": body,
            **override,
        }
        sig = self.identity.sign(canonical_bytes(unsigned)).hex()
        line = canonical_bytes({**unsigned, "sig": sig})
        self.head = (seq, sha256_hex(line))
        self.lines.append(line)
        return line

    def add_file(
        self,
        file: str,
        data: bytes,
        kind: str = "segment",
        size: int | None = None,
        sha256: str | None = None,
    ) -> bytes:
        """A media record binding ``file`` (sent as ``data`` when the dock asks)."""
        self.files[file] = data
        body: dict[str, Any] = {
            "file": file,
            "size": len(data) if size is None else size,
            "sha256": hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
        }
        if kind == "segment":
            body.update(
                start_utc=format_utc(self.utc_ns),
                end_utc=format_utc(self.utc_ns + 60 * NS),
                frames=1500,
                audio_frames=2820,
                recovered=False,
            )
        return self.sign_line(kind, body)

    def lines_after(self, after: Any) -> list[bytes]:
        """The lines after the dock's ``after`` head (read by position: a hostile line
        need not parse)."""
        if not isinstance(after, dict) or not self.lines:
            return list(self.lines)
        first = self.head[0] - len(self.lines) + 1
        return self.lines[max(0, after["seq"] + 1 - first) :]

    # -- the protocol -------------------------------------------------------------------
    def run(self, port: Any, timeout: float = 10.0) -> DockSaid:
        """Answer one dock on ``port`` until it refuses, says BYE, or the line ends."""
        said = DockSaid()
        link = Link(port, timeout)
        port.write_timeout = 5.0  # a dock that stopped reading has refused: go and hear it
        link.expect_any_first_seq()
        try:
            challenge = link.expect(FrameType.CHALLENGE).json()
            said.frames.append(FrameType.CHALLENGE)
            self._respond(link, challenge)
            while True:
                frame = link.recv("a dock frame")
                said.frames.append(frame.type)
                body = frame.json() if frame.type is not FrameType.DATA else {}
                if frame.type is FrameType.REFUSE:
                    said.refused = str(body.get("reason"))
                    return said
                if frame.type is FrameType.BYE:
                    said.bye = body
                    return said
                if frame.type is FrameType.CLOCK:
                    link.send_json(
                        FrameType.CLOCK_SET,
                        self.clock_set
                        or {"offset_ns": 0, "old_utc": "", "new_utc": "", "set": False},
                    )
                elif frame.type is FrameType.SYNC:
                    payloads = (
                        self.records()
                        if self.records
                        else _batches(self.lines_after(body["after"]))
                    )
                    for payload in payloads:
                        if _readable(link.port, 0):
                            break  # the dock spoke up mid-stream (a refusal): hear it
                        link.send(FrameType.RECORDS, payload)
                    else:
                        link.send_json(FrameType.RECORDS_END, {"head": None, "count": 0})
                elif frame.type is FrameType.GET:
                    said.gets.append(body)
                    self._serve_get(link, body)
                elif frame.type is FrameType.RECEIPT:
                    said.receipt = body
                    link.send_json(
                        FrameType.WIPED,
                        self.wiped or {"files": 0, "wiped_seq": None, "receipt_seq": None},
                    )
        except CableError as exc:
            said.closed = str(exc)
            # A write that timed out because the dock stopped reading: its REFUSE may
            # be waiting on the line.
            try:
                frame = link.recv("a late REFUSE")
                if frame.type is FrameType.REFUSE:
                    said.refused = str(frame.json().get("reason"))
            except CableError:
                pass
        return said

    def _respond(self, link: Link, challenge: dict[str, Any]) -> None:
        head = None if self.head is None else {"seq": self.head[0], "hash": self.head[1]}
        utc = format_utc(self.utc_ns)
        body: dict[str, Any] = {
            "device": self.device,
            "head": head,
            "utc": utc,
            "sig": self.identity.sign(
                response_message(challenge["dock"], challenge["nonce"], self.device, head, utc)
            ).hex(),
            "public_key": self.identity.public_key_hex,
            "camera_nonce": os.urandom(16).hex(),
        }
        answer = self.response(body) if self.response else body
        payload = answer if isinstance(answer, bytes) else canonical_bytes(answer)
        if self.slow_response is None:
            link.send(FrameType.RESPONSE, payload)
            return
        # slow loris: one byte at a time, each well inside the dock's stall timeout,
        # until the dock says something (its REFUSE)
        wire = encode_frame(FrameType.RESPONSE, 0, payload)
        link._send_seq += 1
        for i in range(len(wire)):
            try:
                link.port.write(wire[i : i + 1])
            except OSError as exc:
                raise LinkClosed(f"line closed while crawling: {exc}") from None
            if _readable(link.port, self.slow_response):
                return

    def _serve_get(self, link: Link, body: dict[str, Any]) -> None:
        file, offset = body["file"], body["offset"]
        chunks = self.data(file, offset) if self.data else _chunks(self.files[file][offset:])
        sent = offset
        for chunk in chunks:
            if _readable(link.port, 0):
                return  # the dock spoke up mid-file (a refusal): hear it
            link.send(FrameType.DATA, chunk)
            sent += len(chunk)
        end = self.data_end(file, sent) if self.data_end else {"seq": body["seq"], "size": sent}
        link.send_json(FrameType.DATA_END, end)


def _readable(port: Any, timeout: float) -> bool:
    """Whether the dock has sent something (waits up to ``timeout`` seconds for it)."""
    return bool(select.select([port.fileno()], [], [], timeout)[0])


def _batches(lines: list[bytes]) -> Iterator[bytes]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and size + len(line) + 1 > MAX_PAYLOAD:
            yield b"\n".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield b"\n".join(batch)


def _chunks(data: bytes, size: int = 1 << 18) -> Iterator[bytes]:
    for k in range(0, len(data), size):
        yield data[k : k + size]


# -- the real bay process under attack ---------------------------------------------------


@dataclass
class Snapshot:
    """What the store holds (every stored byte and folder), the dock journal's bytes and
    the last flag and docking ids, to compare after an attack."""

    tree: dict[str, bytes]
    journal: bytes
    flag_id: int
    docking_id: int


class BayRun:
    """A running ``bodycam-dock bay`` on a held cable, an honest camera that docks in it,
    and the stolen key of that camera for a hostile one."""

    def __init__(self, tmp: Any) -> None:
        import subprocess

        from dockkit import BayCable, dock_cmd, make_camera, make_dock

        from simulator.clock import SimClock

        self.tmp = tmp
        clock = SimClock(time.time_ns() - 3600 * NS)  # the bay runs on the real clock
        self.camera, registry = make_camera(tmp, clock=clock)
        self.dock_identity, store = make_dock(tmp, registry)
        store.close()
        self.root = tmp / "dock"
        self.stolen = DeviceIdentity.load(tmp / "cam-001-key" / "device.key")
        self.cable = BayCable(tmp)
        self.log = tmp / "bay.log"
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen(
            dock_cmd(tmp, "bay", str(self.cable.path)), stderr=self._log_file
        )
        self._seed = 0

    # -- observing the dock -------------------------------------------------------------
    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        import sqlite3

        db = sqlite3.connect(f"file:{self.root / 'index.sqlite'}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql, args).fetchall()]
        finally:
            db.close()

    @property
    def journal_path(self) -> Any:
        return self.root / "_docks" / self.dock_identity.device_id / "journal.jsonl"

    def snapshot(self) -> Snapshot:
        tree: dict[str, bytes] = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if rel.parts[0] in (".status", ".partial", ".locks", "_docks"):
                continue
            if rel.name.startswith("index.sqlite"):
                continue  # derived data
            tree[rel.as_posix() + ("/" if p.is_dir() else "")] = (
                b"" if p.is_dir() else p.read_bytes()
            )
        flag = self.query("SELECT MAX(id) AS n FROM flags")[0]["n"] or 0
        # the bay may already have opened the new cable's docking (its row has no end yet)
        docking = (
            self.query("SELECT MAX(id) AS n FROM dockings WHERE ended_utc IS NOT NULL")[0]["n"] or 0
        )
        return Snapshot(tree, self.journal_path.read_bytes(), flag, docking)

    def ended(self, since: Snapshot, timeout: float = 60.0) -> dict[str, Any]:
        """The docking after ``since``, once the dock has recorded its outcome."""
        from dockkit import wait_for

        def row():
            rows = self.query(
                "SELECT * FROM dockings WHERE id > ? AND ended_utc IS NOT NULL ORDER BY id",
                (since.docking_id,),
            )
            return rows[-1] if rows else None

        return wait_for(row, timeout, "the dock to record the docking's outcome")

    def flags_since(self, since: Snapshot) -> list[dict[str, Any]]:
        return self.query("SELECT kind, detail, device FROM flags WHERE id > ?", (since.flag_id,))

    def new_dock_records(self, since: Snapshot) -> list[Any]:
        from evidence.record import Record

        data = self.journal_path.read_bytes()
        assert data.startswith(since.journal), "the dock journal was rewritten"
        return [Record.from_bytes(line) for line in data[len(since.journal) :].splitlines()]

    def store_head(self) -> tuple[int, str]:
        from evidence.record import Record

        last = (self.root / "unit-1" / "cam-001" / "journal.jsonl").read_bytes().splitlines()[-1]
        rec = Record.from_bytes(last)
        return rec.seq, rec.hash

    def vm_hwm_kib(self) -> int:
        """Peak resident memory of the bay process so far (``VmHWM``)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    # -- acting -------------------------------------------------------------------------
    def replug(self) -> None:
        """A new cable behind the same path: the bay serves whoever is on it next."""
        self.cable.plug()

    def honest_docking(self, segments: int = 1, size: int = 30_000) -> dict[str, Any]:
        """The honest camera records and docks; the dock must store it all."""
        self._seed += 1
        files = self.camera.record(segments, size, seed=self._seed)
        before = self.snapshot()
        out = self.camera.link(self.dock_identity, timeout=15).run_session(self.cable.camera)
        row = self.ended(before)
        assert row["outcome"] == "stored", (row, out)
        assert out.outcome == "stored" and sorted(out.wiped) == sorted(files), out
        self.replug()
        return row

    def stop(self) -> int | None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.cable.unplug()
        self.camera.close()
        self._log_file.close()
        return self.proc.returncode
