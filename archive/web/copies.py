"""Copy requests in the console (Art. 36): a party's request is entered, the head of unit
approves (withholding recordings, each with a reason) or refuses with a reason, an
archivist exports, and the court bundle (a zip of its folder) and the party's MP4s are
downloaded. Each step shows who took it and when.

Every step is the archive's own method (:class:`archive.copies.CopyRequests`): the access
check (an export and a download only for an archivist cleared for the case, after the
head's approval) and the audit are there. The console exports into the archive's folder
(``Archive.export_folder``) so that the copy can be downloaded afterwards.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from evidence.exc import EvidenceError

from ..exc import ArchiveError, NotFound
from ..policy import Material
from . import i18n
from .auth import CSRF, CurrentSession
from .forms import may, roles_that_may, whole
from .render import NavItem, render

router = APIRouter()
NAV = [NavItem("copies", "nav.copies", roles_that_may("view", Material()))]  # as list_copies


def _request(archive: Any, session: Any, request_id: int) -> dict[str, Any]:
    for row in archive.list_copies(session):
        if row["id"] == request_id:
            return row
    # Not there, or in a case this user may not see: the archive names neither.
    raise NotFound(f"no copy request {request_id} that you may see")


def steps(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's steps so far, in order: who took each and when."""
    out = [
        {
            "step": "requested",
            "utc": row["requested_utc"],
            "by": row["recorded_by"],
            "detail": row["purpose"],
        }
    ]
    if row.get("decided_utc"):
        out.append(
            {
                "step": "refused" if row["status"] == "refused" else "approved",
                "utc": row["decided_utc"],
                "by": row["decided_by"],
                "detail": row["decision_reason"],
            }
        )
    if row.get("exported_utc"):
        out.append(
            {
                "step": "exported",
                "utc": row["exported_utc"],
                "by": row["exported_by"],
                "detail": row["output_sha256"],
            }
        )
    return out


@router.get("/copies", name="copies")
def list_page(request: Request, session: CurrentSession) -> Response:
    rows = request.app.state.archive.list_copies(session)
    return render(request, "copies.html", copies=rows)


@router.post("/cases/{number}/copies", name="copy_request", dependencies=[CSRF])
def enter_request(
    request: Request,
    session: CurrentSession,
    number: str,
    requester: str = Form(""),
    kind: str = Form(""),
    purpose: str = Form(""),
) -> Response:
    rid = request.app.state.archive.request_copy(session, number, requester, kind, purpose)
    return RedirectResponse(request.app.url_path_for("copy_show", request_id=str(rid)), 303)


@router.get("/copies/{request_id}", name="copy_show")
def show_page(request: Request, session: CurrentSession, request_id: str) -> Response:
    archive = request.app.state.archive
    row = _request(archive, session, whole(request_id, "copy request"))
    case = archive.show_case(session, row["number"])
    material = Material(
        case["classification"], frozenset(case["officers"]), f"case {row['number']}"
    )
    recordings = [e for e in case["entries"] if e["kind"] == "recording"]
    exported = row["status"] == "exported"
    approved = replace(material, approved=True)  # as the export's check will see it
    may_take = may(session, "export", approved)
    files: list[str] = []
    if exported and may_take and row["kind"] == "party":
        files = sorted(p.name for p in archive.export_folder(row["id"]).glob("copy-*.mp4"))
    return render(
        request,
        "copy.html",
        row=row,
        case=case,
        steps=steps(row),
        recordings=recordings,
        files=files,
        may_decide=row["status"] == "pending" and may(session, "approve", material),
        may_export=row["status"] == "approved" and may_take,
        may_download=exported and may_take,
    )


def _omit(value: str) -> dict[str, str]:
    """``DEVICE:SEQ=reason`` a line, as ``bodycam-archive copy approve --omit`` takes."""
    omit = {}
    for line in value.splitlines():
        if not line.strip():
            continue
        ref, sep, why = line.partition("=")
        if not sep:
            raise ArchiveError(f"withhold {line.strip()[:60]!r}: write DEVICE:SEQ=why")
        omit[ref.strip()] = why.strip()
    return omit


@router.post("/copies/{request_id}/decide", name="copy_decide", dependencies=[CSRF])
async def decide_request(request: Request, session: CurrentSession, request_id: str) -> Response:
    """Approve (with the recordings ticked to withhold, each with its reason, or typed as
    ``DEVICE:SEQ=reason`` lines) or refuse (the reason required) a pending request."""
    from starlette.concurrency import run_in_threadpool

    rid = whole(request_id, "copy request")
    form = await request.form()
    decision = str(form.get("decision", ""))
    if decision not in ("approve", "refuse"):
        raise ArchiveError("say whether the request is approved or refused")
    reason = str(form.get("reason", ""))
    omit = _omit(str(form.get("omit_lines", "")))
    for ref in form.getlist("withhold"):
        why = str(form.get(f"why:{ref}", "")).strip()
        omit[str(ref)] = why
    await run_in_threadpool(
        request.app.state.archive.decide_copy, session, rid, decision == "approve", reason, omit
    )
    return RedirectResponse(request.app.url_path_for("copy_show", request_id=str(rid)), 303)


@router.post("/copies/{request_id}/export", name="copy_export", dependencies=[CSRF])
def export_request(request: Request, session: CurrentSession, request_id: str) -> Response:
    archive = request.app.state.archive
    rid = whole(request_id, "copy request")
    try:
        archive.export_copy(session, rid, archive.export_folder(rid))
    except EvidenceError as exc:  # the bundle or the party copy could not be made
        raise ArchiveError(str(exc)) from None
    return RedirectResponse(request.app.url_path_for("copy_show", request_id=str(rid)), 303)


class _Chunks:
    """A write-only file that hands what was written to a generator (zip streaming)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        parts, self.parts = self.parts, []
        yield from parts


def zip_stream(folder: Path, files: list[Path], top: str) -> Iterator[bytes]:
    """The files as one zip (stored: media does not compress), made as it is sent."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[arg-type]
        for path in files:
            info = zipfile.ZipInfo.from_file(path, f"{top}/{path.relative_to(folder)}")
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    yield from sink.take()
            yield from sink.take()
    yield from sink.take()


@router.get("/copies/{request_id}/copy.zip", name="copy_zip")
def download_zip(request: Request, session: CurrentSession, request_id: str) -> Response:
    """The exported copy as a zip: the court bundle's folder as ``bodycam-verify`` reads
    it, or the party's MP4s with their signed derivation records."""
    got = request.app.state.archive.exported_copy(session, whole(request_id, "copy request"))
    top = f"{got['kind']}-{got['number']}-request-{int(request_id)}"
    files = got["files"]
    if got["kind"] == "party":
        files = files + [p for p in sorted(got["folder"].glob("*.derivation.json")) if p.is_file()]
    return StreamingResponse(
        zip_stream(got["folder"], files, top),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{top}.zip"'},
    )


@router.get("/copies/{request_id}/files/{name}", name="copy_file")
def download_file(
    request: Request, session: CurrentSession, request_id: str, name: str
) -> Response:
    """One of the party's MP4s."""
    got = request.app.state.archive.exported_copy(session, whole(request_id, "copy request"))
    for path in got["files"]:
        if got["kind"] == "party" and path.name == name:
            return FileResponse(path, media_type="video/mp4", filename=path.name)
    raise NotFound(f"copy request {request_id} has no file {name[:80]!r}")


i18n.add(
    {
        # -- copy requests (archive.web.copies) ---------------------------------------
        "nav.copies": ("复制申请", "Copy requests"),
        "copies.title": ("复制申请", "Copy requests"),
        "copies.none": ("没有可查看的复制申请。", "No copy requests you may see."),
        "copies.id": ("编号", "Request"),
        "copies.case": ("案卷", "Case"),
        "copies.requester": ("申请人", "Requester"),
        "copies.kind": ("类型", "Kind"),
        "copies.status": ("状态", "Status"),
        "copies.requested": ("申请时间", "Requested"),
        "kind.bundle": (
            "证据包（原始录像，可离线核验）",
            "court bundle (the originals, verifiable offline)",
        ),
        "kind.party": ("当事人副本（带水印 MP4）", "party's copy (watermarked MP4)"),
        "copy.status.pending": ("待审批", "pending"),
        "copy.status.approved": ("已批准", "approved"),
        "copy.status.refused": ("已拒绝", "refused"),
        "copy.status.exported": ("已导出", "exported"),
        "copy.title": ("复制申请 {id}", "Copy request {id}"),
        "copy.new": ("登记当事人复制申请", "Enter a party's request for a copy"),
        "copy.purpose": ("用途", "Purpose"),
        "copy.submit_request": ("登记申请", "Enter the request"),
        "copy.steps": ("办理经过", "Steps"),
        "copy.step": ("步骤", "Step"),
        "copy.when": ("时间", "When"),
        "copy.by": ("办理人", "By"),
        "copy.detail": ("说明", "Detail"),
        "step.requested": ("登记申请", "request entered"),
        "step.approved": ("负责人批准", "approved by the head of unit"),
        "step.refused": ("负责人拒绝", "refused by the head of unit"),
        "step.exported": ("档案管理员导出", "exported by the archivist"),
        "copy.withheld": ("不予提供的录像", "Recordings withheld"),
        "copy.decide": ("审批", "Decide"),
        "copy.approve": ("批准", "Approve"),
        "copy.refuse": ("拒绝", "Refuse"),
        "copy.reason": (
            "理由（拒绝时必填，当事人将被告知）",
            "Reason (required to refuse: the party is told)",
        ),
        "copy.withhold": ("不予提供（涉密）", "withhold (confidential)"),
        "copy.withhold_why": ("不予提供的理由", "why it is withheld"),
        "copy.omit_lines": (
            "或逐行填写 设备:记录号=理由",
            "or one a line: DEVICE:SEQ=why",
        ),
        "copy.export": ("导出副本", "Export the copy"),
        "copy.export_note": (
            "导出只能进行一次；导出后可在此下载。",
            "A copy is exported once; it can then be downloaded here.",
        ),
        "copy.download_zip": ("下载（zip）", "Download (zip)"),
        "copy.download_bundle_note": (
            "解压后用 bodycam-verify 核验证据包。",
            "Unpack it and check the bundle with bodycam-verify.",
        ),
        "copy.sha256": ("导出文件 SHA-256", "SHA-256 of the export"),
    }
)
