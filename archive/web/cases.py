"""Case files in the console: the list with its deadlines, opening a case, attaching
recordings (by device and time range, or by act) and documents (uploaded, then hashed into
the archive as ``bodycam-archive case attach-doc`` does), closing, and the case itself
with its later additions, each saying why.

Every action is the archive's own method (:class:`archive.cases.CaseFiles`), which does the
access check and the audit; this module reads forms and shows results.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from ..exc import ArchiveError
from ..policy import CLASSIFICATIONS, Material
from . import i18n
from .auth import CSRF, CurrentSession
from .forms import lines, may, play_url, roles_that_may, utc_of, whole
from .render import NavItem, render

router = APIRouter()
LIST = Material("public", frozenset(), "the list of cases")  # as Archive.list_cases asks
NAV = [NavItem("cases", "nav.cases", roles_that_may("view", LIST))]

STATES = ("overdue", "due_soon", "open", "no_act", "closed_late", "closed")
"""The deadline states of ``Archive.deadline_report``, most urgent first."""
MAX_UPLOAD = 512 * 1024 * 1024  # a written document; larger is refused before storing


def _procedures() -> list[Any]:
    from evidence.procedures import load_procedures

    return list(load_procedures().values())


def case_rows(listed: list[dict[str, Any]], report: dict[str, Any] | None) -> list[dict]:
    """The cases the user may see, each with its deadline state when the user may see the
    deadline report, most urgent first."""
    states = {c["number"]: c for c in (report or {}).get("cases", [])}
    rows = []
    for case in listed:
        row = dict(case)
        due = states.get(case["number"])
        row |= {
            "state": due["state"] if due else "",
            "deadline_utc": due["deadline_utc"] if due else None,
            "days_left": due["days_left"] if due else None,
        }
        rows.append(row)
    order = {s: i for i, s in enumerate(STATES)}
    rows.sort(key=lambda r: (order.get(r["state"], len(STATES)), r["number"]))
    return rows


CSS = Path(__file__).with_name("pages.css")


@router.get("/pages.css", name="pages_css", include_in_schema=False)
def pages_css() -> Response:
    """The style sheet these pages add to console.css (no inline styles: the CSP)."""
    return FileResponse(CSS, media_type="text/css")


@router.get("/cases", name="cases")
def list_page(request: Request, session: CurrentSession, state: str = "") -> Response:
    archive = request.app.state.archive
    listed = archive.list_cases(session)
    report = archive.deadline_report(session) if may(session, "report") else None
    rows = case_rows(listed, report)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if state:
        rows = [r for r in rows if r["state"] == state]
    return render(
        request,
        "cases.html",
        rows=rows,
        counts=counts,
        states=STATES,
        state=state,
        deadlines=report is not None,
        may_open=may(session, "case_open"),
    )


@router.get("/cases/new", name="case_new")
def new_page(request: Request, session: CurrentSession) -> Response:
    return render(
        request,
        "case_new.html",
        procedures=_procedures(),
        classifications=CLASSIFICATIONS,
        form={},
    )


@router.post("/cases/new", name="case_open", dependencies=[CSRF])
def open_case(
    request: Request,
    session: CurrentSession,
    kind_of_act: str = Form(""),
    procedure: str = Form(""),
    parties: str = Form(""),
    officers: str = Form(""),
    classification: str = Form(""),
    act_end: str = Form(""),
) -> Response:
    archive = request.app.state.archive
    act_end_utc = utc_of(request, act_end, "act end") if act_end.strip() else None
    number = archive.open_case(
        session,
        kind_of_act,
        procedure,
        lines(parties),
        lines(officers),
        classification,
        act_end_utc,
    )
    return _to_case(request, number)


def _to_case(request: Request, number: str, anchor: str = "") -> Response:
    url = request.app.url_path_for("case_show", number=number)
    return RedirectResponse(f"{url}{anchor}", status_code=303)


@router.get("/cases/{number}", name="case_show")
def show_page(request: Request, session: CurrentSession, number: str) -> Response:
    archive = request.app.state.archive
    case = archive.show_case(session, number)
    material = Material(case["classification"], frozenset(case["officers"]), f"case {number}")
    for e in case["entries"]:
        if e["kind"] == "recording":
            e["play"] = play_url(request, e["device"], e["seq"])
    # list_copies asks for "view" of no particular material (which an officer lacks).
    copies = archive.list_copies(session, number) if may(session, "view") else []
    return render(
        request,
        "case.html",
        case=case,
        copies=copies,
        may_change=may(session, "case_change", material),
        may_close=may(session, "case_close", material) and case["status"] == "open",
        may_request=may(session, "copy_request", material),
        may_classify=may(session, "classify", material),
        classifications=CLASSIFICATIONS,
        closed=case["status"] == "closed",
    )


@router.post("/cases/{number}/attach-range", name="case_attach_range", dependencies=[CSRF])
def attach_range(
    request: Request,
    session: CurrentSession,
    number: str,
    device: str = Form(""),
    start: str = Form(""),
    end: str = Form(""),
    reason: str = Form(""),
) -> Response:
    archive = request.app.state.archive
    from_utc, to_utc = utc_of(request, start, "from"), utc_of(request, end, "to")
    archive.attach_range(session, number, device.strip(), from_utc, to_utc, reason)
    return _to_case(request, number, "#entries")


@router.post("/cases/{number}/attach-act", name="case_attach_act", dependencies=[CSRF])
def attach_act(
    request: Request,
    session: CurrentSession,
    number: str,
    device: str = Form(""),
    act: str = Form(""),
    reason: str = Form(""),
) -> Response:
    archive = request.app.state.archive
    archive.attach_act(session, number, device.strip(), whole(act, "act"), reason)
    return _to_case(request, number, "#entries")


@router.post("/cases/attach-act", name="case_attach_act_to", dependencies=[CSRF])
def attach_act_to(
    request: Request,
    session: CurrentSession,
    number: str = Form(""),
    device: str = Form(""),
    act: str = Form(""),
    reason: str = Form(""),
) -> Response:
    """Attach an act to the case typed in the form (from the compliance report's acts)."""
    number = number.strip()
    if not number:
        raise ArchiveError("say which case: its number, e.g. 2026-0001")
    return attach_act(request, session, number, device, act, reason)


@router.post("/cases/{number}/documents", name="case_attach_document", dependencies=[CSRF])
async def attach_document(
    request: Request,
    session: CurrentSession,
    number: str,
    document: Annotated[UploadFile, File()],
    title: str = Form(""),
    sha256: str = Form(""),
    reason: str = Form(""),
) -> Response:
    """The upload is written to a private temporary file, its SHA-256 checked against
    the one the sender gave (if any), then handed to ``attach_document``, which copies it
    into the archive durably (and encrypts it above internal); the temporary file goes."""
    archive = request.app.state.archive
    expected = sha256.strip().lower()
    if expected and (len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)):
        raise ArchiveError(f"SHA-256 {sha256[:80]!r}: 64 hexadecimal digits, please")
    name = Path(document.filename or "").name or "document"
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / "upload"
        digest, size = hashlib.sha256(), 0
        with open(path, "wb") as out:
            while chunk := await document.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise ArchiveError(f"{name}: larger than {MAX_UPLOAD >> 20} MiB; not stored")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ArchiveError(f"{name}: the upload is empty (no file chosen, or it broke off)")
        if expected and digest.hexdigest() != expected:
            raise ArchiveError(
                f"{name}: the upload is damaged: its SHA-256 is {digest.hexdigest()}, not the "
                f"{expected} given with it; nothing was stored"
            )
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(
            archive.attach_document, session, number, str(path), title.strip() or name, reason
        )
    return _to_case(request, number, "#entries")


@router.get("/cases/{number}/documents/{sha256}", name="case_document")
def get_document(request: Request, session: CurrentSession, number: str, sha256: str) -> Response:
    """A case's document, through ``read_document`` (access check, audit, hash check)."""
    archive = request.app.state.archive
    case = archive.show_case(session, number)
    entry = next(
        (e for e in case["entries"] if e["kind"] == "document" and e["sha256"] == sha256), None
    )
    tmp = tempfile.mkdtemp(prefix="document-")
    try:
        out = Path(tmp) / "document"
        archive.read_document(session, number, sha256, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    filename = Path((entry or {}).get("title") or sha256).name
    return FileResponse(
        out,
        media_type="application/octet-stream",
        filename=filename,
        background=BackgroundTask(shutil.rmtree, tmp, True),
    )


@router.post("/cases/{number}/classify", name="case_classify", dependencies=[CSRF])
def classify_case(
    request: Request,
    session: CurrentSession,
    number: str,
    classification: str = Form(""),
    reason: str = Form(""),
) -> Response:
    """Change the classification (``classify``: allowed only to who may see both levels,
    with a reason; above internal its documents and recordings are sealed at rest)."""
    request.app.state.archive.classify(session, number, classification, reason)
    return _to_case(request, number)


@router.post("/cases/{number}/close", name="case_close", dependencies=[CSRF])
def close_case(request: Request, session: CurrentSession, number: str) -> Response:
    request.app.state.archive.close_case(session, number)
    return _to_case(request, number)


i18n.add(
    {
        # -- case files (archive.web.cases) -------------------------------------------
        "nav.cases": ("案卷", "Case files"),
        "cases.title": ("案卷", "Case files"),
        "cases.open_new": ("新建案卷", "Open a case"),
        "cases.none": ("没有可查看的案卷。", "No case files you may see."),
        "cases.all": ("全部", "all"),
        "cases.number": ("案卷号", "Case"),
        "cases.kind_of_act": ("执法行为", "Kind of act"),
        "cases.procedure": ("执法程序", "Procedure"),
        "cases.classification": ("密级", "Classification"),
        "cases.status": ("状态", "Status"),
        "cases.opened": ("立卷时间", "Opened"),
        "cases.deadline": ("归档期限", "Deadline"),
        "cases.days_left": ("剩余天数", "Days left"),
        "cases.deadline_note": (
            "执法行为结束后 30 日内须形成案卷（第三十四条）；第 25 日起为即将到期。",
            "A case file is due 30 days after its act ended (Art. 34); due soon from day 25.",
        ),
        "cases.no_deadlines": (
            "您的角色不能查看期限报告，此处不显示期限。",
            "Your role may not see the deadline report, so no deadlines are shown.",
        ),
        "state.overdue": ("已逾期", "overdue"),
        "state.due_soon": ("即将到期", "due soon"),
        "state.open": ("办理中", "open"),
        "state.no_act": ("无执法记录", "no act yet"),
        "state.closed_late": ("逾期结案", "closed late"),
        "state.closed": ("已结案", "closed"),
        "status.open": ("办理中", "open"),
        "status.closed": ("已结案", "closed"),
        "class.public": ("公开", "public"),
        "class.internal": ("内部", "internal"),
        "class.business_secret": ("商业秘密", "business secret"),
        "class.personal_privacy": ("个人隐私", "personal privacy"),
        "class.state_secret": ("国家秘密", "state secret"),
        "case.new_title": ("新建案卷", "Open a case"),
        "case.parties": ("当事人（每行一个）", "Parties (one a line)"),
        "case.officers": ("执法人员编号（每行一个）", "Officers' badge numbers (one a line)"),
        "case.act_end": ("执法结束时间（可选）", "When the act ended (optional)"),
        "case.submit_open": ("立卷", "Open the case"),
        "case.title": ("案卷 {number}", "Case {number}"),
        "case.by": ("操作人 {who}", "by {who}"),
        "case.closed_h": ("结案时间", "Closed"),
        "case.parties_h": ("当事人", "Parties"),
        "case.officers_h": ("执法人员", "Officers"),
        "case.entries": ("案卷内容", "Contents"),
        "case.no_entries": ("尚无内容。", "Nothing attached yet."),
        "case.entry_when": ("加入时间", "Added"),
        "case.entry_by": ("操作人", "By"),
        "case.entry_what": ("内容", "What"),
        "case.recording": ("录像 {device} #{seq}", "Recording {device} #{seq}"),
        "case.document": ("文书《{title}》", "Document “{title}”"),
        "case.sealed": ("已加密存储", "sealed at rest"),
        "case.play": ("播放", "Play"),
        "case.download": ("下载", "Download"),
        "case.after_close": ("结案后补充", "added after closing"),
        "case.reason": ("理由", "reason"),
        "case.attach_range": ("按设备和时间段加入录像", "Attach recordings by device and time"),
        "case.attach_act": ("按执法过程加入录像", "Attach an act's recordings"),
        "case.attach_doc": ("上传文书", "Upload a document"),
        "case.device": ("设备编号", "Device"),
        "case.from": ("开始", "From"),
        "case.to": ("结束", "To"),
        "case.act_seq": (
            "执法过程起始记录号（合规报告中可查）",
            "The act's first record (see the compliance report)",
        ),
        "case.doc_file": ("文件", "File"),
        "case.doc_title": ("标题（可选）", "Title (optional)"),
        "case.doc_sha256": (
            "SHA-256（可选，由发送方提供，用于核对上传是否完整）",
            "SHA-256 (optional, from the sender: the upload is checked against it)",
        ),
        "case.reason_closed": (
            "案卷已结案：补充内容须说明理由",
            "The case is closed: say why this is added now",
        ),
        "case.reason_open": ("理由（可选）", "Reason (optional)"),
        "case.attach": ("加入", "Attach"),
        "case.upload": ("上传并加入", "Upload and attach"),
        "case.close": ("结案", "Close the case"),
        "case.close_note": (
            "结案后案卷不可更改，之后的补充将单独列出并注明理由。",
            "A closed case is immutable: later additions are listed apart, each with its reason.",
        ),
        "case.time_note": (
            "时间按本控制台时区 {tz} 输入。",
            "Times are in this console's zone, {tz}.",
        ),
        "case.copies": ("复制申请", "Copy requests"),
        "case.classify": ("变更密级", "Change the classification"),
        "case.classify_reason": ("变更理由（必填）", "Why (required)"),
        "case.classify_note": (
            "高于“内部”的案卷，其文书和录像均加密存储。",
            "Above internal, the case's documents and recordings are kept encrypted.",
        ),
        "case.find_acts": ("在合规报告中查找执法过程", "Find the acts in the compliance report"),
        "case.to_case": ("加入案卷", "Attach to case"),
        "case.number_placeholder": ("案卷号", "case number"),
    }
)
