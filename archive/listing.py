"""The recordings index: the dock store's segments, listed by officer and time.

A mixin of :class:`archive.service.Archive`. :meth:`sync_recordings` reads the store's
device journals (only their ``segment`` lines, ``evidence.journal.records_of_kind``) and
adds the segments it has not seen to the ``recordings`` table, with the officer the
unit-signed registry names for the camera. It is derived data for finding recordings:
nothing in it is evidence (``bodycam-verify`` checks the store itself), and it can be
rebuilt from the journals at any time. A recording outside any case counts as
``internal`` for the access check; an officer lists only their own.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from evidence.journal import JOURNAL_NAME

from .policy import Material
from .refs import RecordingRef, Removal
from .schema import device_events, recording_checks, recordings, removals
from .session import SYSTEM, Session

_BATCH = 5000


class Listing:
    """Recording listing (mixed into :class:`archive.service.Archive`)."""

    def sync_recordings(self) -> int:
        """Index the store's segments not indexed yet, with the cameras' other records of
        the day and each new segment's checks (archive.timeline); how many segments were
        added. Segments indexed before the checks existed are checked now, once."""
        from dock.store import Store

        from .refs import _open_store
        from .timeline import _Signer

        store: Store = _open_store(self.store_root)
        try:
            entries = {e.device_id: e for e in store.registry()}
            folders = store.device_folders()
            relabels = store.relabels()
        finally:
            store.close()
        with self.engine.connect() as conn:
            have = dict(
                conn.execute(
                    sa.select(recordings.c.device, sa.func.max(recordings.c.seq)).group_by(
                        recordings.c.device
                    )
                ).all()
            )
            have_events = dict(
                conn.execute(
                    sa.select(device_events.c.device, sa.func.max(device_events.c.seq)).group_by(
                        device_events.c.device
                    )
                ).all()
            )
            unchecked: dict[str, set[int]] = {}
            for device, seq in conn.execute(
                sa.select(recordings.c.device, recordings.c.seq)
                .select_from(
                    recordings.outerjoin(
                        recording_checks,
                        sa.and_(
                            recording_checks.c.device == recordings.c.device,
                            recording_checks.c.seq == recordings.c.seq,
                        ),
                    )
                )
                .where(recording_checks.c.seq.is_(None))
            ):
                unchecked.setdefault(device, set()).add(seq)
        added = events = 0
        now = self.now_utc()
        for unit, device, folder in folders:
            journal = folder / JOURNAL_NAME
            if not journal.exists():
                continue
            entry = entries.get(device)
            with self.engine.begin() as conn:
                rows, found = self._index_timeline(
                    conn,
                    unit,
                    device,
                    journal,
                    entry.officer if entry is not None else "",
                    _Signer(entry) if entry is not None else None,
                    have.get(device, -1),
                    have_events.get(device, -1),
                    unchecked.get(device, set()),
                    now,
                )
                for i in range(0, len(rows), _BATCH):
                    conn.execute(recordings.insert(), rows[i : i + _BATCH])
            added += len(rows)
            events += found
        self._apply_relabels(relabels)
        if added or events:
            self.audit_now(
                "view",
                SYSTEM,
                "recordings index",
                {"what": "sync", "added": added, "events": events},
            )
        self.reconcile_removals()  # archive.retention: what the dock removed, recorded
        return added

    def list_recordings(
        self, session: Session, officer: str, from_utc: str, to_utc: str
    ) -> list[RecordingRef]:
        """The officer's segments that start in ``[from_utc, to_utc)``, in time order, each
        removed one with its :class:`~archive.refs.Removal` (one query, joined)."""
        from .cases import _utc

        start, end = _utc(from_utc, "--from"), _utc(to_utc, "--to")
        label = f"the recordings of officer {officer}"
        self.require(session, "view", Material("internal", frozenset({officer}), label))
        gone = removals
        q = (
            sa.select(recordings, gone.c.removed_utc, gone.c.by_user, gone.c.category)
            .select_from(
                recordings.outerjoin(
                    gone,
                    sa.and_(gone.c.device == recordings.c.device, gone.c.seq == recordings.c.seq),
                )
            )
            .where(
                recordings.c.officer == officer,
                recordings.c.start_utc >= start,
                recordings.c.start_utc < end,
            )
            .order_by(recordings.c.start_utc, recordings.c.device, recordings.c.seq)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        found = [_ref(r) for r in rows]
        self.audit_now(
            "view",
            session,
            label,
            {
                "what": "recordings",
                "from": start,
                "to": end,
                "shown": len(found),
                "removed": sum(r.removed is not None for r in found),
            },
        )
        return found


def _ref(r: Any) -> RecordingRef:
    return RecordingRef(
        r["device"],
        r["unit"],
        r["seq"],
        r["file"],
        r["sha256"],
        r["size"],
        r["start_utc"],
        r["end_utc"],
        Removal(r["removed_utc"], r["by_user"], r["category"])
        if r.get("removed_utc") is not None
        else None,
    )
