"""Where retention and sealing meet, on both backends, over a real dock store (real
journals, one docking over a pty pair): a confidential case is never left in clear at rest
(refused when the archive cannot seal); removing a sealed recording removes its sealed
and key files, and verify reports what a removal left behind; an attachment and a purge
of one recording serialise; a purge killed between the dock's removal and the archive's
record is reconciled; the dock journal itself says an archive keeps the store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from corekit import PW
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from retentionkit import DAY, Aged, archive_over, build_aged, copy_aged

from archive.sealing import SealError
from archive.service import Archive
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Aged:
    return build_aged(tmp_path_factory.mktemp("aged"))


@pytest.fixture
def world(template: Aged, tmp_path: Path) -> Aged:
    return copy_aged(template, tmp_path / "w")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by its SHA-256 (what "nothing changed" means on disk)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_archive(world: Aged, user: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=PW)
    env.pop("DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "archive", "--dir", str(world.tmp / "archive"), "--user", user]
        + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def set_dock_config(world: Aged, value: str) -> None:
    toml = world.tmp / "archive" / "archive.toml"
    lines = [ln for ln in toml.read_text().splitlines() if not ln.startswith("dock_config")]
    toml.write_text("\n".join(lines + [f'dock_config = "{value}"']) + "\n")


# -- 1. a confidential case is never left in clear -------------------------------------


def test_a_case_above_internal_that_cannot_be_sealed_is_refused(
    world: Aged,
    db_url: str,  # noqa: F811
) -> None:
    """Without dock_config (or with one that does not load), attaching to a case above
    internal and classifying a case with recordings up are refused: one line, audited,
    nothing changed in the database or the store. With it, the same attachment seals."""
    clock = SimClock(START + 200 * DAY)
    arch = archive_over(world, db_url, clock, dock_config=False)
    folder = world.store / "unit-1" / "cam-001"
    try:
        wang, zhao = arch.login("wang", PW), arch.login("zhao", PW)
        secret = arch.open_case(wang, "raid", "seizure", [], ["A1024"], "business_secret")
        plain = arch.open_case(wang, "inspection", "inspection", [], ["A1024"], "internal")
        arch.attach_range(wang, plain, "cam-001", world.starts[1][0], world.ends[1][0])
        store_before = snapshot(world.store)
        audit_before = len(arch.audit.records())
        with pytest.raises(SealError) as refused:
            arch.attach_range(wang, secret, "cam-001", world.starts[0][0], world.ends[0][0])
        message = str(refused.value)
        assert "\n" not in message and message.startswith("refused: ")
        assert "business_secret" in message and "no dock_config" in message
        assert "nothing changed" in message
        with pytest.raises(SealError, match="no dock_config"):
            arch.classify(zhao, plain, "state_secret", "the court says so")
        new = arch.audit.records()[audit_before:]
        assert [(r.kind, r.body["detail"]["action"]) for r in new] == [
            ("refusal", "case_change"),
            ("refusal", "classify"),
        ]
        assert new[1].body["detail"]["classification"] == "state_secret"
        assert arch.show_case(wang, secret)["entries"] == []
        assert arch.show_case(wang, plain)["classification"] == "internal"
        assert snapshot(world.store) == store_before  # nothing sealed, nothing journaled
        assert (folder / world.acts[1][0]).is_file()
    finally:
        arch.close()

    # a dock_config that does not load is no way to seal either
    set_dock_config(world, str(world.tmp / "no-such-dock.toml"))
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        with pytest.raises(SealError, match="no-such-dock.toml"):
            arch.attach_range(
                arch.login("wang", PW), secret, "cam-001", world.starts[0][0], world.ends[0][0]
            )
    finally:
        arch.close()
    assert snapshot(world.store) == store_before

    # from the command line: exit 2, one line, no traceback
    set_dock_config(world, "")
    cli = run_archive(
        world, "wang", "case", "attach", secret, "--device", "cam-001",
        "--from", world.starts[0][0], "--to", world.ends[0][0],
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    (line,) = cli.stderr.splitlines()
    assert line.startswith("bodycam-archive: error: refused: the recordings of case ")
    cli = run_archive(
        world, "zhao", "case", "classify", plain, "--to", "personal_privacy", "--reason", "x"
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert snapshot(world.store) == store_before

    # with the dock's config the same attachment seals at once
    set_dock_config(world, str(world.tmp / "dock.toml"))
    arch = Archive.open(world.tmp / "archive", clock=clock)
    try:
        wang = arch.login("wang", PW)
        arch.attach_range(wang, secret, "cam-001", world.starts[0][0], world.ends[0][0])
        assert not (folder / world.acts[0][0]).exists()
        assert arch.is_sealed("cam-001", world.acts[0][0])
    finally:
        arch.close()
