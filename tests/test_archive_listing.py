"""The recordings index on both backends: synced from the real store's journals once,
listed by officer and time range, an officer only their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import Refused
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


def test_sync_then_list_an_officers_recordings(world: World, db_url: str, tmp_path: Path) -> None:  # noqa: F811
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + DAY))
    try:
        assert arch.sync_recordings() == 5
        assert arch.sync_recordings() == 0
        admin = arch.login("admin", PW)
        arch.add_user(admin, "li", "officer", PW, officer="A1024")
        arch.add_user(admin, "wu", "officer", PW, officer="B2048")
        arch.add_user(admin, "sun", "supervisor", PW)
        li, wu, sun = (arch.login(n, PW) for n in ("li", "wu", "sun"))
        day = world.first_start[:10]
        mine = arch.list_recordings(li, "A1024", day, "2099-01-01")
        assert [r.file for r in mine] == [f for _, files in world.acts for f in files]
        assert all(r.path(world.store).is_file() for r in mine)
        first_act = arch.list_recordings(sun, "A1024", day, world.act_ends[0])
        assert [r.file for r in first_act] == world.acts[0][1]
        with pytest.raises(Refused, match="only their own"):
            arch.list_recordings(wu, "A1024", day, "2099-01-01")
        with pytest.raises(Refused):
            arch.list_recordings(admin, "A1024", day, "2099-01-01")
        assert arch.list_recordings(sun, "B2048", day, "2099-01-01") == []
    finally:
        arch.close()
