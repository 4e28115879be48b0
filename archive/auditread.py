"""Reading the audit log, and checking it as ``bodycam-verify`` does (for the console).

A mixin of :class:`archive.service.Archive`. Both need ``audit_read`` (auditors and the
head of unit) through :meth:`Archive.require`, and both are audited as views. The check is
``evidence.verify.verify_path`` on the archive's folder, exactly the command
``bodycam-verify ARCHIVE --unit-key FP --expect-head ARCHIVE:SEQ:HASH``: every entry's
signature under the archive's key from the registry's ``archives``, the chain, no gap or
reordering, and the database's head still in the log (``tail_cut`` otherwise). The
registry is trusted only through a unit key the operator named (``serve --unit-key``);
without one the verdict is untrusted, with the registry's signer shown to compare.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evidence.exc import RecordError
from evidence.record import Record

from .session import Session

_SEQ = re.compile(rb'"prev":"[0-9a-f]{64}","seq":([0-9]+)')


def newest_entries(
    path: Path, limit: int, before: int | None, kind: str, user: str
) -> tuple[int, list[Record]]:
    """``(entries in the log, the newest matching ones)``, reading lines from the end and
    parsing only those that can match (canonical JSON writes ``"kind":"K"`` and
    ``"user":"U"`` exactly), so a page of a long log costs a page, not the log."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, []
    total = data.count(b"\n")
    want_kind = b'"kind":%s' % json.dumps(kind).encode() if kind else b""
    want_user = b'"user":%s' % json.dumps(user, ensure_ascii=False).encode() if user else b""
    chosen: list[Record] = []
    end = data.rfind(b"\n")  # a torn last line is no entry
    while end > 0 and len(chosen) < limit:
        start = data.rfind(b"\n", 0, end) + 1
        line = data[start:end]
        end = start - 1
        if (want_kind and want_kind not in line) or (want_user and want_user not in line):
            continue
        if before is not None:
            found = _SEQ.findall(line)  # the record's own is the last: "body" sorts first
            if found and int(found[-1]) >= before:
                continue
        try:
            record = Record.from_bytes(line)
        except RecordError:
            continue  # bodycam-verify reports it; the check below says so
        if before is not None and record.seq >= before:
            continue
        if (kind and record.kind != kind) or (user and record.body.get("user") != user):
            continue
        chosen.append(record)
    return total, chosen


class AuditReading:
    """Audit log entries and their check (mixed into Archive)."""

    def audit_entries(
        self,
        session: Session,
        *,
        limit: int = 100,
        before: int | None = None,
        kind: str = "",
        user: str = "",
    ) -> dict[str, Any]:
        """The newest entries (before seq ``before``), optionally of one kind or user."""
        self.require(session, "audit_read")
        total, chosen = newest_entries(self.audit.path, limit, before, kind, user)
        rows = [
            {"seq": r.seq, "utc": r.utc, "kind": r.kind, "hash": r.hash, **r.body} for r in chosen
        ]
        self.audit_now(
            "view",
            session,
            "audit log",
            {"what": "entries", "shown": len(rows), "kind": kind, "user": user},
        )
        more = bool(chosen) and chosen[-1].seq > 0 and len(chosen) >= limit
        return {"total": total, "rows": rows, "more": more}

    def verify_audit_log(
        self, session: Session, unit_keys: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """Check the audit log as ``bodycam-verify`` does, against the database's head."""
        from evidence.registry import Registry
        from evidence.verify import CannotCheck, verify_path

        self.require(session, "audit_read")
        head = self.audit_head()
        expect = [(self.identity.device_id, head[0], head[1])] if head else []
        command = f"bodycam-verify {self.folder}" + "".join(
            f" --unit-key {fp}" for fp in sorted(unit_keys)
        )
        if head:
            command += f" --expect-head {self.identity.device_id}:{head[0]}:{head[1]}"
        signer = ""
        try:
            registry = Registry.load(self.folder / "registry.json")
            signer = registry.fingerprint if registry.signature is not None else ""
        except Exception:  # noqa: BLE001 - the check below reports an unreadable registry
            signer = ""
        try:
            report = verify_path(self.folder, unit_keys=unit_keys, expect_heads=expect)
        except CannotCheck as exc:
            result = {
                "checked_utc": self.now_utc(),
                "verdict": "cannot_check",
                "reason": str(exc),
                "command": command,
                "signer": signer,
                "head": head,
            }
        else:
            data = report.to_dict()
            problems = [p for d in data["devices"] for p in d["problems"]]
            notes = [n for d in data["devices"] for n in d["notes"]]
            verdict = "intact" if report.intact else ("problems" if problems else "untrusted")
            result = {
                "checked_utc": self.now_utc(),
                "verdict": verdict,
                "trusted": report.trusted,
                "trust": report.trust,
                "records": sum(d["records"] for d in data["devices"]),
                "problems": problems,
                "notes": notes,
                "command": command,
                "signer": signer,
                "head": head,
            }
        self.audit_now(
            "view",
            session,
            "audit log",
            {
                "what": "verify",
                "verdict": result["verdict"],
                "problems": len(result.get("problems", [])),
            },
        )
        return result
