"""A dock store with recordings of three ages (for the retention tests): real journals,
real media files, one docking over a pty pair, and a dock.toml naming the dock's key."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dockkit import NS, START, dock_once, make_camera, make_dock, store_trust

from archive.service import Archive
from evidence.dockjournal import DOCK_JOURNALS_DIR
from evidence.journal import JOURNAL_NAME, readable_records
from simulator.clock import SimClock

DAY = 86_400 * NS


@dataclass
class Aged:
    """A store with three acts of ``cam-001`` (unit-1): at START, 30 and 60 days later."""

    tmp: Path
    store: Path
    acts: list[list[str]]  # each act's segment files
    ends: list[list[str]]  # each segment's end (as its signed record says)
    starts: list[list[str]]


def build_aged(tmp: Path, base: int = START) -> Aged:
    clock = SimClock(base)
    camera, registry = make_camera(tmp, "cam-001", officer="A1024", clock=clock)
    acts, ends, starts = [], [], []
    for n, gap in ((2, 30), (2, 30), (1, 0)):
        seq = camera.journal.next_seq
        acts.append(camera.record(n, 2000 + seq))
        segs = [r for r in readable_records(camera.storage.journal_path) if r.kind == "segment"]
        segs = segs[-n:]
        ends.append([r.body["end_utc"] for r in segs])
        starts.append([r.body["start_utc"] for r in segs])
        clock.advance(gap * DAY)
    identity, store = make_dock(tmp, registry, clock)
    _, outcome = dock_once(store, identity, camera)
    assert not isinstance(outcome, BaseException), outcome
    store.close()
    camera.close()
    fingerprints = sorted(store_trust(tmp))
    (tmp / "dock.toml").write_text(
        "[dock]\n"
        f'store = "{tmp / "dock"}"\n'
        f'key = "{tmp / "dock-key" / "dock.key"}"\n'
        f"unit_keys = {fingerprints!r}\n".replace("'", '"')
    )
    return Aged(tmp, tmp / "dock", acts, ends, starts)


def dock_journal(store: Path) -> Path:
    """The store's one dock journal."""
    (folder,) = (store / DOCK_JOURNALS_DIR).iterdir()
    return folder / JOURNAL_NAME


def copy_aged(template: Aged, root: Path) -> Aged:
    """A test's own copy of an aged store (purges and seals change it)."""
    shutil.copytree(template.tmp, root, symlinks=True)
    text = (root / "dock.toml").read_text().replace(str(template.tmp), str(root))
    (root / "dock.toml").write_text(text)
    return Aged(root, root / "dock", template.acts, template.ends, template.starts)


def archive_over(
    world: Aged, db: str, clock: SimClock, extra: str = "", dock_config: bool = True
) -> Archive:
    """An archive over the aged store (``dock_config``: naming the dock's dock.toml), with
    wang (archivist), zhao (head), qian (auditor), sun (supervisor), li (officer A1024);
    its recordings index synced."""
    from corekit import PW

    folder = world.tmp / "archive"
    arch = Archive.create(folder, world.store, "archive-1", "admin", PW, database=db, clock=clock)
    arch.close()
    with open(folder / "archive.toml", "a") as f:
        if dock_config:
            f.write(f'dock_config = "{world.tmp / "dock.toml"}"\n')
        f.write(extra)
    arch = Archive.open(folder, clock=clock)
    admin = arch.login("admin", PW)
    for name, role in (("wang", "archivist"), ("zhao", "head"), ("qian", "auditor")):
        arch.add_user(admin, name, role, PW)
    for name, role in (("sun", "supervisor"), ("li", "officer")):
        arch.add_user(admin, name, role, PW, officer="A1024" if role == "officer" else "")
    assert arch.sync_recordings() == 5
    return arch
