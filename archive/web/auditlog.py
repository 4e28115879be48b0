"""The auditor's page: the signed audit log, and its check as ``bodycam-verify`` makes it.

``/audit`` lists the newest entries (by kind or user, a hundred a page); ``/audit/verify``
checks the whole log (signatures under the archive's key, the chain, the database's head)
and shows the verdict, the command that gives the same verdict from a terminal, and whom
the registry was trusted through. Both need ``audit_read`` (auditors, the head of unit).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..audit import KINDS
from . import i18n
from .auth import CurrentSession
from .render import NavItem, render

router = APIRouter()
NAV = [NavItem("audit_log", "nav.audit", frozenset({"auditor", "head"}))]

i18n.add(
    {
        "audit.title": ("审计日志", "Audit log"),
        "audit.total": ("共 {total} 条记录。", "{total} entries in all."),
        "audit.kind": ("类别", "Kind"),
        "audit.user": ("用户", "User"),
        "audit.any": ("全部", "any"),
        "audit.filter": ("筛选", "Filter"),
        "audit.seq": ("序号", "Seq"),
        "audit.time": ("时间", "Time"),
        "audit.target": ("对象", "Target"),
        "audit.detail": ("详情", "Detail"),
        "audit.older": ("更早的记录", "Older entries"),
        "audit.verify": ("校验审计日志", "Check the audit log"),
        "audit.verify.title": ("审计日志校验结果", "Audit log check"),
        "audit.verdict.intact": (
            "完好且可信：所有签名、哈希链和数据库记录的链头均已核对。",
            "Intact and trusted: every signature, the chain and the database's head check out.",
        ),
        "audit.verdict.problems": ("发现问题：", "Problems found:"),
        "audit.verdict.untrusted": (
            "未发现问题，但注册表未经您指定的单位公钥认可（不可信）。",
            "No problem found, but the registry is not trusted through a unit key named "
            "for this console (UNTRUSTED).",
        ),
        "audit.verdict.cannot_check": ("无法校验：", "Could not check:"),
        "audit.records": ("已校验 {n} 条记录。", "{n} entries checked."),
        "audit.head": ("数据库记录的链头：", "The database's head:"),
        "audit.trust": ("信任依据：", "Trusted through:"),
        "audit.signer": (
            "注册表签名单位公钥指纹：{fp}（请与单位负责人提供的指纹核对；启动时用 --unit-key 指定）。",
            "The registry is signed by unit key {fp} (compare it with the head of unit's; "
            "name it with serve --unit-key).",
        ),
        "audit.command": (
            "在终端得到同样结论的命令：",
            "The command that gives the same verdict in a terminal:",
        ),
        "audit.checked_at": ("校验时间：", "Checked at:"),
    }
)


@router.get("/audit", name="audit_log")
def audit_log(
    request: Request,
    session: CurrentSession,
    kind: str = "",
    user: str = "",
    before: int | None = None,
) -> Response:
    data = request.app.state.archive.audit_entries(
        session, before=before, kind=kind[:32], user=user[:64].strip()
    )
    return render(request, "audit.html", data=data, kinds=KINDS, kind=kind, who=user)


@router.get("/audit/verify", name="audit_verify")
def audit_verify(request: Request, session: CurrentSession) -> Response:
    result = request.app.state.archive.verify_audit_log(session, request.app.state.unit_keys)
    return render(request, "audit_verify.html", result=result)
