"""Copies for the parties (Art. 36): a request is recorded, the head of unit approves or
refuses it, and only then may an archivist export it, once.

A mixin of :class:`archive.service.Archive`. The head decides what confidential material
is withheld: an approval may name recordings to leave out (``DEVICE:SEQ`` with a reason),
which the court bundle then lists as omitted; or the head refuses the request with the
reason. The export itself is the court bundle (:func:`archive.bundle.build_bundle`,
signed by the archive's key) or the party's watermarked MP4 per act
(:func:`archive.party.make_party_copy`). Each step is audited (``copy_request``,
``approval``, ``export``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evidence.canonical import canonical_bytes

from .exc import ArchiveError, NotFound
from .refs import RecordingRef
from .schema import cases, copies
from .session import Session

KINDS = ("bundle", "party")
EXPORTS = "exports"  # <archive>/exports/copy-<id>: where the web console exports a copy
_REF = re.compile(r"\A([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):([0-9]{1,19})\Z", re.ASCII)
_TEXT = 512


class CopyRequests:
    """Copy-request actions (mixed into :class:`archive.service.Archive`)."""

    def _request_row(self, conn: sa.Connection, request_id: int) -> tuple[dict, dict]:
        row = conn.execute(sa.select(copies).where(copies.c.id == request_id)).mappings().first()
        if row is None:
            raise NotFound(f"no copy request {request_id}")
        case = conn.execute(sa.select(cases).where(cases.c.id == row["case_id"])).mappings().one()
        return dict(row), dict(case)

    def request_copy(
        self, session: Session, number: str, requester: str, kind: str, purpose: str
    ) -> int:
        """Record a party's request for a copy of case ``number``; its id."""
        if kind not in KINDS:
            raise ArchiveError(f"copy kind {kind!r}: use bundle (court bundle) or party (an MP4)")
        requester = requester.strip()
        if not requester or len(requester) > 128 or any(ord(c) < 0x20 for c in requester):
            raise ArchiveError("the requester: a name on one short line, please")
        with self.engine.connect() as conn:
            case = self._case_row(conn, number)
        self.require(session, "copy_request", self.material_of(case))
        with self.engine.begin() as conn:
            done = conn.execute(
                copies.insert().values(
                    case_id=case["id"],
                    requester=requester,
                    kind=kind,
                    purpose=purpose[:_TEXT],
                    requested_utc=self.now_utc(),
                    recorded_by=session.name,
                    status="pending",
                    decision_reason="",
                    omit="{}",
                )
            )
            request_id = int(done.inserted_primary_key[0])
            self._audit(
                conn,
                "copy_request",
                session,
                f"case {number}",
                {"request": request_id, "requester": requester, "kind": kind, "purpose": purpose},
            )
        return request_id

    def decide_copy(
        self,
        session: Session,
        request_id: int,
        approve: bool,
        reason: str = "",
        omit: dict[str, str] | None = None,
    ) -> None:
        """The head of unit approves (withholding ``omit``: ``{"DEVICE:SEQ": reason}``) or
        refuses (``reason`` required) a pending request."""
        omit = dict(omit or {})
        with self.engine.connect() as conn:
            row, case = self._request_row(conn, request_id)
            held = {
                f"{e['device']}:{e['seq']}"
                for e in self._entries(conn, case["id"])
                if e["kind"] == "recording"
            }
        self.require(session, "approve", self.material_of(case))
        if row["status"] != "pending":
            raise ArchiveError(f"copy request {request_id} is already {row['status']}")
        if not approve and not reason.strip():
            raise ArchiveError("a refusal must say why (--reason): the party is told")
        for ref, why in omit.items():
            if not _REF.match(ref) or ref not in held:
                raise ArchiveError(f"--omit {ref}: not a recording of case {case['number']}")
            if not why.strip():
                raise ArchiveError(f"--omit {ref}: say why it is withheld")
        if approve and not held:
            raise ArchiveError(f"case {case['number']} has no recordings to copy yet")
        if approve and omit and len(omit) == len(held):
            raise ArchiveError("every recording would be withheld: refuse the request instead")
        with self.engine.begin() as conn:
            done = conn.execute(
                copies.update()
                .where(copies.c.id == request_id, copies.c.status == "pending")
                .values(
                    status="approved" if approve else "refused",
                    decided_utc=self.now_utc(),
                    decided_by=session.name,
                    decision_reason=reason[:_TEXT],
                    omit=canonical_bytes(omit).decode(),
                )
            )
            if not done.rowcount:
                raise ArchiveError(f"copy request {request_id} was decided meanwhile")
            self._audit(
                conn,
                "approval",
                session,
                f"case {case['number']}",
                {
                    "request": request_id,
                    "decision": "approved" if approve else "refused",
                    "reason": reason,
                    "omit": omit,
                },
            )

    def list_copies(self, session: Session, number: str | None = None) -> list[dict[str, Any]]:
        """Copy requests of the cases this user may see."""
        from .policy import decide

        q = sa.select(copies, cases.c.number).join(cases, cases.c.id == copies.c.case_id)
        if number:
            q = q.where(cases.c.number == number)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q.order_by(copies.c.id)).mappings()]
            shown_cases = {r["number"]: self._case_row(conn, r["number"]) for r in rows}
        self.require(session, "view")
        out = []
        for r in rows:
            if not decide(
                session.actor, "view", self.material_of(shown_cases[r["number"]])
            ).allowed:
                continue
            r["omit"] = json.loads(r["omit"])
            r.pop("case_id")
            out.append(r)
        self.audit_now("view", session, "copy requests", {"shown": len(out)})
        return out

    def export_copy(
        self,
        session: Session,
        request_id: int,
        out: str | Path,
    ) -> dict[str, Any]:
        """Make the approved copy in the new folder ``out`` (an archivist, once)."""
        from .policy import Material

        with self.engine.connect() as conn:
            row, case = self._request_row(conn, request_id)
            items = [e for e in self._entries(conn, case["id"]) if e["kind"] == "recording"]
        material: Material = self.material_of(case)
        material = replace(
            material,
            approved=row["status"] == "approved",
            label=f"case {case['number']} (copy request {request_id}, {row['status']})",
        )
        self.require(session, "export", material)
        omit = json.loads(row["omit"])
        out = Path(out)
        refs = self.case_recordings(session, case["number"], "export", approved=True)
        self.require_sealed_clearance(session, refs, material)  # archive.sealing
        if row["kind"] == "bundle":
            result = self._export_bundle(case, row, items, omit, out)
        else:
            kept = [r for r in refs if f"{r.device}:{r.seq}" not in omit]
            result = self._export_party(session, case, row, items, kept, out)
        with self.engine.begin() as conn:
            done = conn.execute(
                copies.update()
                .where(copies.c.id == request_id, copies.c.status == "approved")
                .values(
                    status="exported",
                    exported_utc=self.now_utc(),
                    exported_by=session.name,
                    output_sha256=result["sha256"],
                )
            )
            if not done.rowcount:
                raise ArchiveError(f"copy request {request_id} was exported meanwhile")
            self._audit(
                conn,
                "export",
                session,
                f"case {case['number']}",
                {"request": request_id, "requester": row["requester"], **result},
            )
        return result

    def export_folder(self, request_id: int) -> Path:
        """Where the web console exports copy request ``request_id`` (in the archive's
        folder, so that the copy can be downloaded from it afterwards)."""
        return self.folder / EXPORTS / f"copy-{int(request_id)}"

    def exported_copy(self, session: Session, request_id: int) -> dict[str, Any]:
        """The files of an exported copy, to download: allowed to whom may export it (an
        archivist cleared for the case and its sealed recordings), checked against the
        SHA-256 its export recorded, audited as a view."""
        from .policy import Material

        with self.engine.connect() as conn:
            row, case = self._request_row(conn, request_id)
        material: Material = replace(
            self.material_of(case),
            approved=row["status"] == "exported",
            label=f"case {case['number']} (copy request {request_id}, {row['status']})",
        )
        if row["status"] != "exported":
            material = replace(material, label=f"{material.label}: not exported yet")
        self.require(session, "export", material)
        refs = self.case_recordings(session, case["number"], "export", approved=True)
        self.require_sealed_clearance(session, refs, material)  # archive.sealing
        folder = self.export_folder(request_id)
        if not folder.is_dir():
            raise NotFound(
                f"copy request {request_id} was exported outside the archive's folder (by the "
                "command line): its copy is in the folder it was written to"
            )
        if row["kind"] == "bundle":
            from evidence.verify_bundle import MANIFEST_NAME

            files = sorted(p for p in folder.rglob("*") if p.is_file())
            digest = hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()
        else:
            files = sorted(
                folder.glob("copy-*.mp4"), key=lambda p: int(p.stem.rpartition("-")[2] or 0)
            )
            digest = hashlib.sha256(canonical_bytes([_sha256_file(p) for p in files])).hexdigest()
        if digest != row["output_sha256"]:
            raise ArchiveError(
                f"{folder}: the copy no longer matches the SHA-256 its export recorded "
                f"({row['output_sha256'][:16]}...): not handing it out"
            )
        self.audit_now(
            "view",
            session,
            f"case {case['number']}",
            {"what": "copy download", "request": request_id, "kind": row["kind"]},
        )
        return {
            "kind": row["kind"],
            "number": case["number"],
            "folder": folder,
            "files": files,
            "sha256": digest,
        }

    def _export_bundle(self, case, row, items, omit, out: Path) -> dict[str, Any]:
        from .bundle import build_bundle

        groups: dict[str, list[dict]] = {}
        for e in items:
            groups.setdefault(e["act"] or f"{e['device']}:{e['seq']}", []).append(e)
        ranges = [
            (g[0]["device"], min(e["seq"] for e in g), max(e["seq"] for e in g))
            for g in groups.values()
        ]
        withheld = {(k.split(":")[0], int(k.split(":")[1])): why for k, why in omit.items()}
        result = build_bundle(
            self.store_root,
            ranges,
            out,
            omit=withheld,
            title=f"case {case['number']}: copy request {row['id']} for {row['requester']}",
            signer=self.identity,
            clock=self.clock,
            sealed=self.sealed_source_of,  # archive.sealing: decrypted into the bundle
        )
        from evidence.verify_bundle import MANIFEST_NAME

        digest = hashlib.sha256((result.path / MANIFEST_NAME).read_bytes()).hexdigest()
        return {
            "kind": "bundle",
            "path": str(result.path),
            "sha256": digest,
            "media_files": result.media_files,
            "omitted": result.omitted,
        }

    def _export_party(
        self, session, case, row, items, refs: list[RecordingRef], out: Path
    ) -> dict[str, Any]:
        from .party import make_party_copy
        from .watermark import find_font

        if out.exists():
            raise ArchiveError(f"{out}: already exists; a copy is written into a new folder")
        font = find_font()  # no font: one line, and no folder made
        act_of = {(e["device"], e["seq"]): e["act"] or f"{e['device']}:{e['seq']}" for e in items}
        acts: dict[str, list[RecordingRef]] = {}
        for r in refs:
            acts.setdefault(act_of[(r.device, r.seq)], []).append(r)
        out.mkdir(parents=True)
        made = []
        for n, (_act, group) in enumerate(acts.items(), 1):
            copy = make_party_copy(
                [self.recording_source(r) for r in group],  # sealed: decrypted, checked
                out / f"copy-{case['number']}-{n}.mp4",
                requester=row["requester"],
                date=self.now_utc()[:10],
                by=session.name,
                identity=self.identity,
                font=font,
                expected_sha256=[r.sha256 for r in group],
                request=str(row["id"]),
                clock=self.clock,
            )
            made.append(copy.derivation.body["output"]["sha256"])
        return {
            "kind": "party",
            "path": str(out),
            "sha256": hashlib.sha256(canonical_bytes(made)).hexdigest(),
            "files": len(made),
        }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["EXPORTS", "KINDS", "CopyRequests"]
