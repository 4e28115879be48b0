"""SIGKILL during the torn-tail repair (issue 13: "a kill during the torn-tail repair leaves
an orphan ``journal.torn-N``; after that, verify fails forever (4 in 100 kills)").

A helper process imports the journal once, then for each trial forks a child that opens
a torn journal with ``repair_torn=True`` and is killed with a real SIGKILL just before one
of its file-system calls, picked at random; on half the trials the repair at the next
"boot" is killed too; then a last child repairs and appends ``boot``. Every trial's folder
must verify, with the torn bytes kept exactly once and every record before them kept.
The same trials run on a dock's own journal (``dock.journal.DockJournal``, whose start
repairs and journals ``boot``), which shares the camera journal's repair.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dockkit import START, make_dock, store_trust

from evidence.journal import Journal, scan_journal
from evidence.layout import DeviceStorage
from evidence.record import Record
from evidence.verify import verify_path
from simulator.clock import SimClock

pytestmark = pytest.mark.faults
TRIALS = 100

HELPER = r"""
import json, os, random, shutil, signal, sys
from pathlib import Path
from evidence.identity import DeviceIdentity
from evidence.journal import Journal
from simulator.clock import SimClock

which, base, out, key, trials, seed, start = sys.argv[1:]
if which == "dock":
    from dock.journal import DockJournal
identity = DeviceIdentity.load(key)
CALLS = ("open", "write", "ftruncate", "fsync", "replace", "close", "posix_fallocate", "unlink")
real_write = os.write


def run(folder, kill_at, boot=False):
    # Fork a child that repairs ``folder``; it SIGKILLs itself before os call ``kill_at``
    # (0: never). Returns ("killed" | "exited <code>", the calls it made).
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        count = [0]
        for name in CALLS:
            def wrap(*a, _real=getattr(os, name), **k):
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(*a, **k)
            setattr(os, name, wrap)
        clock = SimClock(int(start), start_monotonic_ns=random.randrange(1, 10**9))
        if which == "dock":  # a dock process starts: it repairs, then journals boot
            DockJournal(folder, identity, clock).close()
        else:
            journal = Journal(folder / "journal.jsonl", identity, clock=clock, repair_torn=True)
            if boot:
                body = {"firmware": "test", "boot_id": "9" * 32, "reason": "recovered"}
                journal.append("boot", body)
            journal.close()
        real_write(w, str(count[0]).encode())
        os._exit(0)
    os.close(w)
    calls = os.read(r, 64)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed", None
    return f"exited {os.waitstatus_to_exitcode(status)}", int(calls or 0)


rnd = random.Random(int(seed))
dry = Path(out) / "dry"
shutil.copytree(base, dry)
_, total = run(dry, 0)
print(json.dumps({"calls": total}), flush=True)
for t in range(int(trials)):
    folder = Path(out) / f"trial-{t:03d}"
    shutil.copytree(base, folder)
    first = rnd.randint(1, total)
    outcome = {"trial": t, "kill_at": first, "first": run(folder, first)[0]}
    if t % 2:
        second = rnd.randint(1, total)
        outcome.update(kill_again_at=second, second=run(folder, second)[0])
    outcome["last"] = run(folder, 0, boot=True)[0]
    print(json.dumps(outcome), flush=True)
"""


def kill_trials(which: str, base: Path, tmp_path: Path, key: Path, start_ns: int) -> tuple:
    """Run the helper's trials on copies of ``base``: ``(os calls per repair, outcomes,
    SIGKILLs sent)``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            HELPER,
            which,
            str(base),
            str(tmp_path),
            str(key),
            str(TRIALS),
            "13",
            str(start_ns),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    calls, outcomes = lines[0]["calls"], lines[1:]
    assert calls >= 5 and len(outcomes) == TRIALS
    kills = sum((o["first"] == "killed") + (o.get("second") == "killed") for o in outcomes)
    return calls, outcomes, kills


def test_sigkill_at_random_points_of_the_repair_never_orphans_the_torn_bytes(
    tmp_path, identity, registry_file
):
    base = tmp_path / "base"
    DeviceStorage(base).write_identity(identity)
    with Journal(base / "journal.jsonl", identity, clock=SimClock(START)) as journal:
        for n in range(3):
            journal.append("marker", {"n": n})
    with open(base / "journal.jsonl", "ab") as f:  # a power cut mid-append
        f.write(b'{"body":{"n":3},"device":"cam-test","kind":"mar')
    key = tmp_path / "key" / "device.key"
    calls, outcomes, kills = kill_trials("camera", base, tmp_path, key, START + 3600 * 10**9)
    failures = []
    for o in outcomes:
        folder = tmp_path / f"trial-{o['trial']:03d}"
        if o["last"] != "exited 0":
            failures.append(f"{o}: the repair after the kills {o['last']}")
            continue
        records = Journal(folder / "journal.jsonl", identity, reserve_bytes=0).records()
        kinds = [r.kind for r in records]
        report = verify_path(folder, registry_path=registry_file)
        if kinds != ["marker"] * 3 + ["torn_tail", "boot"]:
            failures.append(f"{o}: records {kinds}")
        elif not report.intact:
            failures.append(f"{o}: {'; '.join(str(p) for p in report.problems)}")
    print(
        f"repair kills: {kills} SIGKILLs in {TRIALS} trials ({calls} os calls per repair), "
        f"{TRIALS - len(failures)} verify, {len(failures)} fail"
    )
    assert kills >= TRIALS
    assert not failures, "\n".join(failures[:10])


def test_sigkill_at_random_points_of_the_dock_journal_repair_never_orphans_the_torn_bytes(
    tmp_path,
):
    """The dock's own journal, torn by a dock process that died mid-append, under the same
    kills: each trial's store verifies, the torn bytes kept once, every record before kept."""
    from dock.journal import DockJournal
    from evidence.dockjournal import flag_body

    dock_identity, store = make_dock(tmp_path, None)
    store.close()
    base = tmp_path / "dock"
    journal = DockJournal(base, dock_identity)
    for n in range(3):
        journal.append("flag", flag_body("cam-001", "bad_record", f"earlier {n}"))
    journal.close()
    before = [r.kind for r in journal.records()]
    torn = b'{"body":{"detail":"x","device":"cam-001","kind":"bad_record"},"device":"dock-sim"'
    with open(journal.path, "ab") as f:  # a dock process died mid-append
        f.write(torn)
    key = tmp_path / "dock-key" / "dock.key"
    calls, outcomes, kills = kill_trials("dock", base, tmp_path, key, time.time_ns() + 10**9)
    unit_keys = store_trust(tmp_path)
    failures = []
    for o in outcomes:
        folder = tmp_path / f"trial-{o['trial']:03d}"
        if o["last"] != "exited 0":
            failures.append(f"{o}: the start after the kills {o['last']}")
            continue
        side = folder / journal.path.relative_to(base).parent
        lines = scan_journal(folder / journal.path.relative_to(base)).lines
        records = [Record.from_bytes(line) for _, line in lines]
        kinds = [r.kind for r in records]
        after = kinds[len(before) :]
        report = verify_path(folder, unit_keys=unit_keys)
        if kinds[: len(before)] != before or after[:2] != ["torn_tail", "boot"]:
            failures.append(f"{o}: records {kinds}")
        elif set(after[1:]) != {"boot"}:  # a start killed after its boot: boots, no more
            failures.append(f"{o}: records {kinds}")
        elif (side / records[len(before)].body["file"]).read_bytes() != torn:
            failures.append(f"{o}: the side file does not hold the torn bytes")
        elif not report.intact:
            failures.append(f"{o}: {'; '.join(str(p) for p in report.problems)}")
    print(
        f"dock journal repair kills: {kills} SIGKILLs in {TRIALS} trials ({calls} os calls "
        f"per start), {TRIALS - len(failures)} verify, {len(failures)} fail"
    )
    assert kills >= TRIALS
    assert not failures, "\n".join(failures[:10])
