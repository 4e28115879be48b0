"""Sealing a confidential recording survives every crash state (as :mod:`crashfs` builds
them: unsynced writes lost, kept, torn or reordered; renames lost unless their folder was
fsynced). At a power cut anywhere in the seal, the store must verify, hold the recording
whole (its clear file with the camera's hash, or its recorded sealed file that opens to
it) once the dock has started again (its torn journal line repaired, the store
reconciled), and the next ``bodycam-archive seal`` must finish the job.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import pytest
from archivekit import Shift, run_shift
from corekit import PW
from dockkit import store_trust
from test_archive_sealing import copy_shift, dock_toml

from archive.sealing import SealedMedia
from archive.service import Archive
from archive.vault import Vault
from dock.store import Store
from evidence.dockjournal import key_name, sealed_name
from evidence.identity import DeviceIdentity
from evidence.verify import verify_path
from faults.test_crash_states import explore

pytestmark = pytest.mark.faults


def whole(store: Path, ref, vault: Vault) -> str:
    """What the store holds of ``ref``: clear, sealed (recorded, opening to the camera's
    bytes), or nothing whole."""
    folder = store / ref.unit / ref.device
    clear = folder / ref.file
    if clear.is_file() and hashlib.sha256(clear.read_bytes()).hexdigest() == ref.sha256:
        return "clear"
    opened = Store(store)
    try:
        ledger = opened.ledger(ref.device)
    finally:
        opened.close()
    if not ledger or ref.file not in ledger.sealed:
        return ""
    sealed = folder / sealed_name(ref.file)
    media = SealedMedia(ref, sealed, folder / key_name(sealed_name(ref.file)), vault)
    data = media.open().read()
    return "sealed" if hashlib.sha256(data).hexdigest() == ref.sha256 else ""


def test_a_seal_survives_every_crash_state(tmp_path: Path) -> None:
    shift: Shift = copy_shift(run_shift(tmp_path / "run", duration="2m"), tmp_path / "shift")
    link = tmp_path / "store"  # the archive and the dock name the store through a link,
    link.symlink_to(shift.store)  # pointed at each crash state in turn
    Archive.create(tmp_path / "archive", link, "archive-1", "admin", PW).close()
    toml = tmp_path / "archive" / "archive.toml"
    text = toml.read_text().replace(str(shift.store.resolve()), str(link))
    toml.write_text(text + f'dock_config = "{dock_toml(shift)}"\n')
    dock = shift.root / "dock.toml"
    dock.write_text(dock.read_text().replace(f'store = "{shift.store}"', f'store = "{link}"'))
    arch = Archive.open(tmp_path / "archive")
    admin = arch.login("admin", PW)
    arch.add_user(admin, "wang", "archivist", PW)
    wang = arch.login("wang", PW)
    number = arch.open_case(wang, "raid", "seizure", [], [], "personal_privacy")
    first, _last = shift.acts()[0]
    with mock.patch.object(Archive, "_seal_after", lambda *_: None):  # killed right there
        ref = arch.attach_act(wang, number, shift.device, first)[0]  # in clear until sealed
    vault = Vault(arch.master_key_path)
    trust = store_trust(shift.root)
    dock_key = DeviceIdentity.load(shift.root / "dock-key" / "dock.key")
    finished = 0

    def workload(rec):
        done = arch.seal_pending(wang)
        assert len(done["sealed"]) == 1
        rec.mark("sealed")

    def check(folder: Path, state) -> str:
        nonlocal finished
        for name in ("index.sqlite", "index.sqlite-journal", "index.sqlite-wal"):
            (folder / name).unlink(missing_ok=True)  # derived; rebuilt (not logged here)
        dock = Store(folder, identity=dock_key, unit_keys=trust)  # the dock starts again:
        try:  # a torn dock journal line is repaired, the store reconciled
            dock.reconcile()
        finally:
            dock.close()
        held = whole(folder, ref, vault)
        if not held:
            return "neither the clear file nor a recorded sealed file is whole"
        if "sealed" in state.completed and held != "sealed":
            return "the seal returned, but the store does not hold it sealed"
        report = verify_path(folder, unit_keys=trust)
        if not report.intact:
            return "; ".join(str(p) for p in report.problems)
        link.unlink()
        link.symlink_to(folder)
        arch.seal_pending(wang)  # the next run finishes it
        if os.path.lexists(folder / ref.unit / ref.device / ref.file):
            return "the next seal left the clear file"
        if whole(folder, ref, vault) != "sealed":
            return "the next seal did not leave a whole sealed recording"
        again = verify_path(folder, unit_keys=trust)
        finished += 1
        return "" if again.intact else "after the next seal: " + str(again.problems[0])

    try:
        explored, failures = explore(shift.store, tmp_path, workload, check)
    finally:
        arch.close()
    assert not failures, "\n".join(failures[:10])
    assert explored >= 10 and finished == explored
