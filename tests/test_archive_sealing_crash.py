"""Sealing loses nothing when the process dies: killed at each file-system step of a seal
(every write, fsync, rename and unlink, in turn), the store still holds the clear file or
the complete, recorded sealed file; it verifies; and the next ``seal`` finishes the job,
after which the recording opens to the camera's own bytes.

The crash states a power cut may leave (unsynced writes lost, torn or reordered) are in
``tests/faults/test_crash_states.py`` (``-m faults``)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from archivekit import Shift, run_shift
from corekit import PW
from dockkit import store_trust
from test_archive_sealing import copy_shift, dock_toml

from archive.service import Archive
from evidence.dockjournal import sealed_name
from evidence.verify import verify_path

OPS = ("write", "fsync", "replace", "rename", "unlink")


class Killed(BaseException):
    """The process died here: nothing after it touches the disk."""


class KillSwitch:
    """Raises :class:`Killed` at the ``at``-th file-system operation, and at every one
    after it (a dead process writes nothing more)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        self.at, self.count, self.dead = at, 0, False
        for name in OPS:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real):
        def op(*args, **kwargs):
            if self.dead or self.count == self.at:
                self.dead = True
                raise Killed(f"killed at operation {self.at}")
            self.count += 1
            return real(*args, **kwargs)

        return op


@pytest.fixture(scope="module")
def shift_once(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="2m")


@pytest.fixture(scope="module")
def pending(shift_once: Shift, tmp_path_factory: pytest.TempPathFactory):
    """A store and an archive whose confidential case holds a recording not sealed yet
    (the process died right after the attachment committed); copied for each kill."""
    from unittest import mock

    base = tmp_path_factory.mktemp("pending")
    shift = copy_shift(shift_once, base / "shift")
    Archive.create(base / "archive", shift.store, "archive-1", "admin", PW).close()
    toml = base / "archive" / "archive.toml"
    plain = toml.read_text()
    toml.write_text(plain + f'dock_config = "{dock_toml(shift)}"\n')
    arch = Archive.open(base / "archive")
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        wang = arch.login("wang", PW)
        number = arch.open_case(wang, "raid", "seizure", [], [], "business_secret")
        first, _last = shift.acts()[0]
        with mock.patch.object(Archive, "_seal_after", lambda *_: None):  # killed there
            refs = arch.attach_act(wang, number, shift.device, first)[:1]
    finally:
        arch.close()
    toml.write_text(plain)
    (shift.root / "dock.toml").unlink(missing_ok=True)
    return base, shift, refs[0]


def fresh(pending, into: Path) -> tuple[Shift, Path]:
    base, shift, _ref = pending
    shutil.copytree(base, into, symlinks=True)
    moved = Shift(
        into / "shift",
        into / "shift" / "dock",
        shift.device,
        into / shift.folder.relative_to(base),
        shift.records,
    )
    toml = into / "archive" / "archive.toml"
    text = toml.read_text().replace(str(shift.store), str(moved.store))
    toml.write_text(text + f'dock_config = "{dock_toml(moved)}"\n')
    return moved, into / "archive"


def held(shift: Shift, ref) -> str:
    """What the store holds of ``ref``: "clear", "sealed" (recorded, complete) or ""."""
    from dock.store import Store

    clear = shift.folder / ref.file
    if clear.is_file() and hashlib.sha256(clear.read_bytes()).hexdigest() == ref.sha256:
        return "clear"
    store = Store(shift.store)
    try:
        ledger = store.ledger(ref.device)
    finally:
        store.close()
    sealed = ledger.sealed.get(ref.file) if ledger else None
    path = shift.folder / sealed_name(ref.file)
    if sealed and path.is_file():
        if hashlib.sha256(path.read_bytes()).hexdigest() == sealed.sha256:
            return "sealed"
    return ""


def test_a_seal_killed_at_any_step_loses_nothing_and_is_finished_next_time(
    pending, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _base, _shift, ref = pending
    states: dict[str, int] = {}
    at = 0
    while True:
        shift, folder = fresh(pending, tmp_path / f"kill-{at}")
        arch = Archive.open(folder)
        wang = arch.login("wang", PW)
        with monkeypatch.context() as m:
            switch = KillSwitch(m, at)
            try:
                arch.seal_pending(wang)
                finished = True
            except Killed:
                finished = False
        arch.audit.close()
        arch.engine.dispose()
        state = held(shift, ref)
        assert state, f"killed at operation {at}: neither the clear nor the sealed file is whole"
        states[state] = states.get(state, 0) + 1
        report = verify_path(shift.store, unit_keys=store_trust(shift.root))
        assert report.intact, (at, [str(p) for p in report.problems])
        # the next run (a new process) finishes it
        again = Archive.open(folder)
        try:
            done = again.seal_pending(again.login("wang", PW))
            assert not (shift.folder / ref.file).exists()
            assert held(shift, ref) == "sealed"
            source = again.sealed_source(ref)
            assert hashlib.sha256(source.open().read()).hexdigest() == ref.sha256
            if finished:
                assert done["sealed"] == [] and done["already"] == 1
        finally:
            again.close()
        assert verify_path(shift.store, unit_keys=store_trust(shift.root)).intact
        shutil.rmtree(tmp_path / f"kill-{at}")
        if finished:
            break
        at += 1
    print(f"killed at {at} operations in turn: {states}")
    assert at >= 8 and states.get("clear") and states.get("sealed")
    del switch
