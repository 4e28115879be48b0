"""Helpers for the archive tests: a real dock store with two acts of one camera (made with
the real journal, media writer and one docking over a pty pair), and an archive over it on
each database backend (``db_url`` from :mod:`pgkit`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dockkit import NS, START, dock_once, make_camera, make_dock, store_trust

from archive.service import Archive
from evidence.clock import format_utc
from evidence.registry import ArchiveEntry, Registry
from simulator.clock import SimClock
from simulator.unit import unit_key

PW = "correct horse battery"
DAY = 86_400 * NS


@dataclass
class World:
    """A dock store with two acts of ``cam-001`` (officer A1024), an hour apart."""

    tmp: Path
    store: Path
    device: str
    acts: list[tuple[int, list[str]]]  # (start seq, segment files)
    act_ends: list[str]
    first_start: str


def build_world(tmp: Path) -> World:
    clock = SimClock(START)
    camera, registry = make_camera(tmp, "cam-001", officer="A1024", clock=clock)
    acts, ends = [], []
    first = format_utc(clock.time_ns())
    for n in (3, 2):
        seq = camera.journal.next_seq
        acts.append((seq, camera.record(n, 3000 + seq)))
        ends.append(format_utc(clock.time_ns()))
        clock.advance(3600 * NS)
    dock_identity, store = make_dock(tmp, registry, clock)
    result, outcome = dock_once(store, dock_identity, camera)
    assert not isinstance(outcome, BaseException), outcome
    store.close()
    camera.close()
    write_dock_toml(tmp)
    return World(tmp, tmp / "dock", "cam-001", acts, ends, first)


def copy_world(template: World, tmp: Path) -> World:
    """A test's own copy of a world (its store, keys and dock.toml)."""
    import shutil

    shutil.copytree(template.tmp, tmp, symlinks=True)
    write_dock_toml(tmp)
    return replace(template, tmp=tmp, store=tmp / "dock")


def write_dock_toml(tmp: Path) -> Path:
    """``tmp/dock.toml``: the dock's store, key and trusted unit keys, as an archive's
    ``dock_config`` names them (its seals and purges are journaled with that key)."""
    path = tmp / "dock.toml"
    fingerprints = ", ".join(f'"{fp}"' for fp in sorted(store_trust(tmp)))
    path.write_text(
        f'[dock]\nstore = "{tmp / "dock"}"\nkey = "{tmp / "dock-key" / "dock.key"}"\n'
        f"unit_keys = [{fingerprints}]\n"
    )
    return path


def make_archive(
    world: World, folder: Path, db_url: str, clock: SimClock, *, dock_config: bool = True
) -> Archive:
    """An archive over the world's store; ``dock_config``: naming the dock's dock.toml, as
    an archive that keeps confidential cases must (archive.sealing)."""
    arch = Archive.create(
        folder, world.store, "archive-1", "admin", PW, database=db_url, clock=clock
    )
    if not dock_config:
        return arch
    arch.close()
    with open(folder / "archive.toml", "a") as f:
        f.write(f'dock_config = "{world.tmp / "dock.toml"}"\n')
    return Archive.open(folder, clock=clock)


STAFF = {
    "wang": "archivist",
    "li": "officer",
    "zhao": "head",
    "qian": "auditor",
    "sun": "supervisor",
}
"""A user of each role that handles material (the administrator is the archive's own)."""


def staff(archive: Archive, roles: dict[str, str] = STAFF, officer: str = "A1024") -> Archive:
    """The archive with a user of each role named (password PW; an officer wears
    ``officer``'s badge), added by its administrator."""
    admin = archive.login("admin", PW)
    for name, role in roles.items():
        if name != "admin":
            archive.add_user(admin, name, role, PW, officer=officer if role == "officer" else "")
    return archive


def register_archive(world: World, archive: Archive) -> str:
    """Add the archive's key to the store's unit-signed registry; the unit key's fingerprint."""
    key = unit_key(world.tmp)
    path = world.store / "registry.json"
    registry = Registry.load(path)
    registry.add_archive(
        ArchiveEntry(archive.identity.device_id, archive.identity.public_key_hex, key.unit),
        replace=True,
    )
    registry.save_signed(path, key, format_utc(START))
    archive.refresh_registry()
    return key.fingerprint
