"""Check a dock store as a whole: each device folder against the dock's own journal.

The rules (``docs/journal-format.md`` section 10), each damage reported once, under its
first cause:

- the store has a dock journal (``_docks/<dock>/journal.jsonl``), checked like any journal
  under the registry's dock key;
- every device the dock journal stored is present, at ``<unit>/<device>`` as it recorded
  (``device_missing`` otherwise: deleted, hidden under a dot-name, moved to another unit);
- its journal reaches the head the dock recorded storing (``tail_cut``: a journal emptied,
  cut or replaced);
- every file the dock stored is present unless a dock ``removed`` record says why
  (``media_missing``: a camera's ``wiped`` record does not excuse a store);
- a stored file the dock journal records as ``sealed`` (kept only encrypted, by the
  archive, for a confidential case) is present as its sealed file with the size and
  SHA-256 the record gives, with its key file beside it (the plaintext cannot be checked
  without the archive's keys; ``media_missing`` / ``media_changed`` otherwise);
- every removal is listed with its authority (a note), and one whose record is dated
  before six months after the recording's signed end is ``removed_early``; a file of
  removed media still in the store (its clear file, or its sealed file or wrapped key) is
  ``removal_unfinished`` (a removal cut short: ``bodycam-dock reconcile`` finishes it);
- a file the dock never stored may be absent only under a wipe a valid receipt covers (a
  camera that docked elsewhere first);
- every device folder and record in the store is accounted for by a dock journal
  (``not_in_dock_journal``).

Nothing in a dot-folder counts as evidence; ``_docks`` is the only ``_`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .clock import format_utc, parse_utc
from .dockjournal import (
    DOCK_JOURNALS_DIR,
    RETENTION_FLOOR_DAYS,
    DeviceLedger,
    build_ledger,
    kept_until_ns,
    key_name,
    media_end_utc,
    sealed_name,
)
from .journal import JOURNAL_NAME
from .registry import Registry
from .safefile import is_real_dir
from .verify_folder import DeviceReport, FolderCheck, Hasher, Keys, Problem, hash_regular


def dock_journal_folders(root: Path) -> list[tuple[str, Path, str]]:
    """``(label, folder, dock id)`` of every dock journal folder in a store."""
    base = root / DOCK_JOURNALS_DIR
    if not is_real_dir(base):
        return []
    return [
        (f"{DOCK_JOURNALS_DIR}/{name}", base / name, name)
        for name in sorted(os.listdir(base))
        if is_real_dir(base / name)
    ]


def device_folders(root: Path) -> list[tuple[str, Path, str]]:
    """``(label, folder, device id)`` of every ``<unit>/<device>`` real folder (no links,
    no dot- or ``_``-names)."""
    found = []
    for unit in sorted(os.listdir(root)):
        if unit.startswith((".", "_")) or not is_real_dir(root / unit):
            continue
        for device in sorted(os.listdir(root / unit)):
            if not device.startswith((".", "_")) and is_real_dir(root / unit / device):
                found.append((f"{unit}/{device}", root / unit / device, device))
    return found


class StoreCheck:
    """Runs the folder checks of a store and then the rules above; see :attr:`reports`."""

    def __init__(
        self,
        root: Path,
        registry: Registry | None,
        registry_trust: str,
        expect_heads: dict[str | None, tuple[int, str]],
        keys: Keys,
        hasher: Hasher,
    ) -> None:
        self.root = root
        self.kw = dict(registry_trust=registry_trust, hasher=hasher)
        self.registry = registry
        self.expect_heads = expect_heads
        self.keys = keys
        self.reports: list[DeviceReport] = []

    def run(self) -> list[DeviceReport]:
        ledgers, dock_reports = self._dock_journals()
        self.has_dock_journal = bool(ledgers) or any(
            d.folder != DOCK_JOURNALS_DIR for d in dock_reports
        )
        checks = {}
        for label, folder, device in device_folders(self.root):
            check = FolderCheck(
                folder,
                label,
                self.registry,
                device,
                self.expect_heads,
                self.keys,
                in_store=True,
                **self.kw,
            )
            check.run()
            checks[label] = check
        accounted: set[str] = set()
        for device, ledger in sorted(ledgers.items()):
            label = f"{ledger.unit}/{device}"
            check = checks.get(label)
            if check is None:
                self._report_absent(ledger, checks, dock_reports)
                accounted.update(lbl for lbl, c in checks.items() if c.report.device == device)
                continue
            accounted.add(label)
            self._compare(check, ledger)
            self._judge_removals(check, ledger)
            self._judge_left_by_removals(check, ledger)
        for label, check in checks.items():
            ledger = ledgers.get(check.report.device or "")
            if label not in accounted and self.has_dock_journal:
                check.problem(
                    "not_in_dock_journal",
                    "no dock journal records storing this device folder",
                    file=label,
                )
            self._judge_missing(check, ledger if label in accounted else None)
        self.reports = dock_reports + [c.report for c in checks.values()]
        return self.reports

    def _dock_journals(self) -> tuple[dict[str, DeviceLedger], list[DeviceReport]]:
        reports, records = [], []
        for label, folder, dock in dock_journal_folders(self.root):
            check = FolderCheck(
                folder,
                label,
                self.registry,
                dock,
                self.expect_heads,
                self.keys,
                role="dock",
                **self.kw,
            )
            reports.append(check.run())
            bad: list = []
            trusted = [e.record for e in check.trusted()]
            build_ledger(trusted, bad)
            for record, why in bad:
                check.problem("bad_dock_record", why, seq=record.seq, file=check.journal_file)
            records += trusted
        if not reports:
            report = DeviceReport(DOCK_JOURNALS_DIR, role="dock", trust="none")
            report.problems.append(
                Problem(
                    "dock_journal_missing",
                    "the store has no dock journal: nothing says what "
                    "it must hold, so deleted folders and files cannot be told from absent ones",
                    file=DOCK_JOURNALS_DIR,
                )
            )
            return {}, [report]
        return build_ledger(records), reports

    def _report_absent(
        self, ledger: DeviceLedger, checks: dict[str, FolderCheck], dock_reports: list[DeviceReport]
    ) -> None:
        where = f"{ledger.unit}/{ledger.device}"
        elsewhere = [lbl for lbl, c in checks.items() if c.report.device == ledger.device]
        hidden = os.path.lexists(self.root / f".{ledger.unit}" / ledger.device) or os.path.lexists(
            self.root / ledger.unit / f".{ledger.device}"
        )
        if elsewhere:
            why = f"it was moved: a folder for it is at {elsewhere[0]}"
        elif hidden:
            why = "it is hidden under a dot-name, which is not evidence"
        elif os.path.lexists(self.root / where):
            why = "it is not a real folder (a link, a file)"
        else:
            why = "it was deleted"
        count = len(ledger.files) - len(ledger.removed)
        report = dock_reports[0]
        report.problems.append(
            Problem(
                "device_missing",
                f"the dock stored device {ledger.device} at {where} "
                f"({count} file(s), records up to seq {ledger.upto[0] if ledger.upto else '-'}), "
                f"but {why}",
                ledger.device,
                None,
                None,
                where,
            )
        )

    def _compare(self, check: FolderCheck, ledger: DeviceLedger) -> None:
        if ledger.upto is None or any(p.code == "journal_missing" for p in check.report.problems):
            return
        seq, digest = ledger.upto
        head = check.report.head
        journal = check.journal_file
        if head is None or head[0] < seq:
            ends = "is empty" if head is None else f"ends at seq {head[0]}"
            check.problem(
                "tail_cut",
                f"the journal {ends}, but the dock journal recorded "
                f"storing records up to seq {seq}",
                seq=seq,
                file=journal,
            )
        elif (found := check.hash_at(seq)) is not None and found != digest:
            check.problem(
                "head_mismatch",
                f"record seq {seq} has hash {found[:16]}..., the "
                f"dock journal recorded storing {digest[:16]}...",
                seq=seq,
                file=journal,
            )
        elif head[0] > seq:
            check.problem(
                "not_in_dock_journal",
                f"records seq {seq + 1}..{head[0]} are in the store, but no dock "
                "journal records storing them (run `bodycam-dock reconcile`)",
                seq=seq + 1,
                file=journal,
            )

    def _judge_missing(self, check: FolderCheck, ledger: DeviceLedger | None) -> None:
        for missing in check.missing:
            where = dict(
                seq=missing.entry.record.seq,
                line=missing.entry.line,
                file=check.prefix + missing.relative,
            )
            kind = missing.entry.record.kind
            stored = ledger.files.get(missing.relative) if ledger else None
            sealed = ledger.sealed.get(missing.relative) if ledger else None
            if stored is not None and missing.relative in ledger.removed:
                continue  # removed under retention: listed (and judged) by _judge_removals
            if sealed is not None:
                self._judge_sealed(check, missing.relative, sealed, kind, where)
            elif stored is not None:
                check.problem(
                    "media_missing",
                    f"{kind} file is missing, but dock {stored.dock} recorded "
                    f"storing it (dock journal seq {stored.dock_seq})",
                    **where,
                )
            elif not missing.wiped:
                check.problem("media_missing", f"{kind} file is missing", **where)
        for relative, sealed in sorted(ledger.sealed.items()) if ledger else []:
            if relative not in {m.relative for m in check.missing}:
                check.report.notes.append(
                    f"{check.prefix}{relative}: {sealed.line()}; its clear file is still here "
                    "(a seal cut short: `bodycam-archive seal` finishes it)"
                )

    def _judge_sealed(self, check: FolderCheck, relative: str, sealed, kind: str, where) -> None:
        """Media kept sealed: the sealed file as the dock recorded it, and its key file."""
        found = hash_regular(check.folder / sealed.name, sealed.size)
        where = dict(where, file=check.prefix + sealed.name)
        if isinstance(found, str) and found.startswith("is missing"):
            check.problem(
                "media_missing",
                f"{kind} file {relative} is sealed (dock {sealed.dock} seq {sealed.dock_seq}), "
                "but its sealed file is missing",
                **where,
            )
        elif isinstance(found, str):
            check.problem("media_changed", f"sealed {kind} file {found}", **where)
        elif found != (sealed.size, sealed.sha256):
            check.problem(
                "media_changed",
                f"sealed {kind} file is {found[0]} bytes"
                + (f", sha256 {found[1][:16]}..." if found[1] else "")
                + f"; the dock recorded {sealed.size} bytes, {sealed.sha256[:16]}...",
                **where,
            )
        elif not os.path.isfile(check.folder / sealed.key_file):
            check.problem(
                "media_missing",
                f"sealed {kind} file's wrapped key {sealed.key_file} is missing: it cannot be "
                "opened",
                **dict(where, file=check.prefix + sealed.key_file),
            )
        else:
            check.report.notes.append(f"{check.prefix}{relative}: {sealed.line()}")

    def _judge_left_by_removals(self, check: FolderCheck, ledger: DeviceLedger) -> None:
        """A removed recording's files are gone: its clear file, and the sealed file and
        wrapped key of a sealed one (the files of media not removed are judged above)."""
        for file, removal in sorted(ledger.removals.items()):
            sealed = sealed_name(file)
            for form, what in ((file, "file"), (sealed, "sealed file"), (key_name(sealed), "key")):
                if os.path.lexists(check.folder / form):
                    check.problem(
                        "removal_unfinished",
                        f"the {what} of {file} is still in the store, but dock {removal.dock} "
                        f"recorded removing it (seq {removal.dock_seq}, {removal.utc}): a "
                        "removal cut short (`bodycam-dock reconcile` finishes it)",
                        file=check.prefix + form,
                    )

    def _judge_removals(self, check: FolderCheck, ledger: DeviceLedger) -> None:
        """List each removal with its authority; fail one made before the recording's
        six months ran out (the ``removed`` record's time against the device's signed
        record of the file, never the archive's word)."""
        if not ledger.removals:
            return
        records = {e.record.seq: e.record for e in check.trusted() if e.record.media}
        for file, removal in sorted(ledger.removals.items()):
            where = check.prefix + file
            stored = ledger.files.get(file)
            record = records.get(stored.seq) if stored is not None else None
            if record is None or record.media is None or record.media[0] != file:
                check.report.notes.append(
                    f"{where}: {removal.line()} (its retention cannot be judged: "
                    "no trusted record of the device binds it)"
                )
                continue
            end = media_end_utc(record)
            until = kept_until_ns(parse_utc(end))
            if parse_utc(removal.utc) < until:
                check.problem(
                    "removed_early",
                    f"dock {removal.dock} removed it at {removal.utc} (dock journal seq "
                    f"{removal.dock_seq}), before its {RETENTION_FLOOR_DAYS}-day retention ran "
                    f"out at {format_utc(until)} (the recording ended {end})",
                    seq=record.seq,
                    file=where,
                )
            else:
                check.report.notes.append(f"{where}: {removal.line()}")


__all__ = ["StoreCheck", "device_folders", "dock_journal_folders", "JOURNAL_NAME"]
