"""SIGKILL during the torn-tail repair (issue 13: "a kill during the torn-tail repair leaves
an orphan ``journal.torn-N``; after that, verify fails forever (4 in 100 kills)").

A helper process imports the journal once, then for each trial forks a child that opens
a torn journal with ``repair_torn=True`` and is killed with a real SIGKILL just before one
of its file-system calls, picked at random; on half the trials the repair at the next
"boot" is killed too; then a last child repairs and appends ``boot``. Every trial's folder
must verify, with the torn bytes kept exactly once and every record before them kept.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dockkit import START

from evidence.journal import Journal
from evidence.layout import DeviceStorage
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

base, out, key, trials, seed, start = sys.argv[1:]
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
        journal = Journal(folder / "journal.jsonl", identity, clock=clock, repair_torn=True)
        if boot:
            journal.append("boot", {"firmware": "test", "boot_id": "9" * 32, "reason": "recovered"})
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
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            HELPER,
            str(base),
            str(tmp_path),
            str(tmp_path / "key" / "device.key"),
            str(TRIALS),
            "13",
            str(START + 3600 * 10**9),  # the next boot, an hour later
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    calls, outcomes = lines[0]["calls"], lines[1:]
    assert calls >= 5 and len(outcomes) == TRIALS
    kills = sum((o["first"] == "killed") + (o.get("second") == "killed") for o in outcomes)
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
