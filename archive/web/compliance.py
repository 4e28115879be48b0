"""The compliance report in the console: ``bodycam-dock report compliance`` per officer,
per act and per article, each finding linked to its moment in the player.

The report is the archive's :meth:`~archive.oversight.Oversight.compliance_report` (the
dock's own judgement of the store, after the ``report`` access check, audited); this
module only arranges it three ways and makes the links.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import i18n
from .auth import CurrentSession
from .forms import may, play_url, roles_that_may, seconds_between
from .render import NavItem, render

router = APIRouter()
NAV = [NavItem("compliance", "nav.compliance", roles_that_may("report"))]
VIEWS = ("officer", "act", "article")


def arrange(data: dict[str, Any], link: Callable[[dict[str, Any], str | None], str]):
    """The report three ways. ``link(act, utc)`` makes the player link of an act (``utc``
    None) or of a finding at ``utc`` in it."""
    from dock.compliance_report import _what  # the report's own words for a finding

    groups = [("officer", n, s) for n, s in data.get("officers", {}).items()] + [
        ("fixed_camera", n, s) for n, s in data.get("fixed_cameras", {}).items()
    ]
    acts, articles, withheld = [], {}, []
    for who, name, slot in groups:
        withheld += [dict(w, who=who, name=name) for w in slot.get("withheld", [])]
        for act in slot["acts"]:
            row = dict(act, who=who, name=name)
            row["play"] = link(act, None)
            row["findings"] = []
            for f in act["findings"]:
                item = dict(f, text_zh=_what(f, "zh"), text_en=_what(f, "en"))
                item["play"] = link(act, f["utc"])
                row["findings"].append(item)
                articles.setdefault(f["article"], []).append((row, item))
            acts.append(row)
    acts.sort(key=lambda a: (a["start_utc"], a["device"]))
    return {
        "groups": groups,
        "acts": acts,
        "articles": sorted(articles.items()),
        "findings": sum(len(a["findings"]) for a in acts),
        "withheld": sorted(withheld, key=lambda w: (w["device"], w["start_seq"])),
    }


def player_links(request: Request) -> Callable[[dict[str, Any], str | None], str]:
    """Links into the player (``play_recording``): ``/play/DEVICE/START_SEQ?t=SECONDS``,
    the act by its first record and the finding's time as seconds after the act started,
    by the clock (the player places that on its timeline of segments end to end)."""

    def link(act: dict[str, Any], utc: str | None) -> str:
        device, seq = act["device"], act["start_seq"]
        if utc is None:
            return play_url(request, device, seq)
        return play_url(request, device, seq, seconds_between(act["start_utc"], utc))

    return link


@router.get("/compliance", name="compliance")
def report_page(
    request: Request,
    session: CurrentSession,
    view: str = "officer",
    officer: str = "",
    day_from: str = "",
    day_to: str = "",
) -> Response:
    data = request.app.state.archive.compliance_report(
        session, officer=officer.strip() or None, day_from=day_from, day_to=day_to
    )
    return render(
        request,
        "compliance.html",
        data=data,
        shown=arrange(data, player_links(request)),
        view=view if view in VIEWS else "officer",
        views=VIEWS,
        officer=officer,
        day_from=day_from,
        day_to=day_to,
        may_attach=may(session, "case_change"),  # offered; the archive checks the case
    )


i18n.add(
    {
        # -- the compliance report (archive.web.compliance) ---------------------------
        "nav.compliance": ("合规报告", "Compliance"),
        "compliance.title": ("执法全过程记录合规报告", "Full-process recording: compliance report"),
        "compliance.as_of": ("截至 {when}", "as of {when}"),
        "compliance.view.officer": ("按执法人员", "per officer"),
        "compliance.view.act": ("按执法过程", "per act"),
        "compliance.view.article": ("按条款", "per article"),
        "compliance.officer": ("执法人员编号", "Officer"),
        "compliance.from": ("起始日", "From day"),
        "compliance.to": ("截止日", "To day"),
        "compliance.show": ("显示", "Show"),
        "compliance.none": ("没有执法记录。", "No acts recorded."),
        "compliance.no_findings": ("无问题。", "No findings."),
        "compliance.officer_h": ("执法人员 {name}", "Officer {name}"),
        "compliance.fixed_h": ("固定摄像头 {name}", "Fixed camera {name}"),
        "compliance.acts": ("{n} 次执法，{bad} 次有问题", "{n} act(s), {bad} with findings"),
        "compliance.finding": ("问题", "Finding"),
        "compliance.count": ("次数", "Count"),
        "compliance.articles": ("条款", "Articles"),
        "compliance.article": ("第 {n} 条", "Art. {n}"),
        "compliance.device": ("设备", "Device"),
        "compliance.started": ("执法开始", "Act started"),
        "compliance.procedure": ("程序", "Procedure"),
        "compliance.evidence": ("证据（记录号）", "Evidence (seq)"),
        "compliance.moment": ("时刻", "Moment"),
        "compliance.play": ("在播放器中查看", "See it in the player"),
        "compliance.total": ("共 {n} 个问题", "{n} finding(s) in all"),
        "compliance.withheld_note": (
            "{count} 次执法属于您无权查看的案件，已隐去（不显示时间、问题和关键时刻）。",
            "{count} act(s) belong to a case you may not see and are withheld (no times, "
            "findings or key moments).",
        ),
        "compliance.withheld": (
            "已隐去：属于密级为「{level}」的案件",
            "withheld: held by a case classified {level}",
        ),
    }
)
