"""The officer's day: a timeline of recordings, key moments, stoppages, photos and dockings.

One page, one query (``Archive.officer_day``): each segment with its verification badge,
which opens to say what was checked, and its link to the player (route ``play_recording``,
``/play/{device}/{seq}``). An officer sees their own day; others choose the officer. A
badge can be checked again now (``POST /recordings/{device}/{seq}/check``).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import stat
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from starlette.routing import NoMatchFound

from evidence.procedures import OTHER_MOMENT, load_procedures

from ..exc import ArchiveError, NotFound
from ..policy import ROLES
from ..timeline import DayView
from . import i18n
from .auth import CSRF, CurrentSession
from .render import NavItem, filesize_filter, local_time, render, request_lang, to_datetime

router = APIRouter()
NAV = [NavItem("officer_day", "nav.day", frozenset(set(ROLES) - {"administrator"}))]

i18n.add(
    {
        "day.title": ("执法日", "Officer's day"),
        "day.officer": ("警号", "Badge"),
        "day.date": ("日期", "Date"),
        "day.show": ("查看", "Show"),
        "day.choose": (
            "请选择执法人员（警号）和日期。",
            "Choose an officer (badge number) and a date.",
        ),
        "day.summary": (
            "{recordings} 段录像，共 {minutes} 分钟；{moments} 个关键节点，{stoppages} 次中断，"
            "{photos} 张照片，{dockings} 次接入基座。",
            "{recordings} segments, {minutes} minutes; {moments} key moments, "
            "{stoppages} stoppages, {photos} photos, {dockings} dockings.",
        ),
        "day.empty": ("这一天没有记录。", "Nothing recorded on this day."),
        "day.withheld_note": (
            "{count} 段录像属于您无权查看的案卷，已隐去（此次拒绝已记入审计日志）。",
            "{count} recordings belong to a case you may not see and are withheld "
            "(the refusal is in the audit log).",
        ),
        "day.removed": (
            "已于 {when} 按保存期限删除（{who}，保存类别 {category}）",
            "Removed under retention on {when} by {who} (kept as {category})",
        ),
        "day.time": ("时间", "Time"),
        "day.what": ("内容", "What"),
        "day.device": ("设备", "Camera"),
        "day.check": ("校验", "Checks"),
        "day.prev": ("前一天", "Previous day"),
        "day.next": ("后一天", "Next day"),
        "kind.segment": ("录像片段", "Recording"),
        "kind.recording_started": ("开始录像", "Recording started"),
        "kind.recording_stopped": ("停止录像", "Recording stopped"),
        "kind.announcement": ("播放告知语", "Announcement played"),
        "kind.marker": ("关键节点", "Key moment"),
        "kind.photo": ("照片", "Photo"),
        "kind.stoppage": ("录像中断", "Stoppage"),
        "kind.resumed": ("恢复录像", "Resumed"),
        "kind.docked": ("接入基座", "Docked"),
        "kind.withheld": ("已隐去", "Withheld"),
        "stopped.button": ("按键停止", "by the button"),
        "stopped.fault": ("因故障停止", "by a fault"),
        "stopped.shutdown": ("关机停止", "at shutdown"),
        "reason.weather": ("天气原因", "weather"),
        "reason.camera": ("摄像头故障", "camera fault"),
        "reason.storage_full": ("存储已满", "storage full"),
        "reason.battery_critical": ("电量耗尽", "battery critical"),
        "reason.overheat": ("设备过热", "overheating"),
        "reason.microphone": ("麦克风故障", "microphone fault"),
        "pre_event": ("含事前缓存 {s} 秒", "with {s} s of pre-event buffer"),
        "play": ("播放", "Play"),
        "play.here": ("从此处播放", "Play from here"),
        "withheld.detail": (
            "所属案卷密级为 {level}，超出您的权限。",
            "In a case classified {level}, above your clearance.",
        ),
        "class.public": ("公开", "public"),
        "class.internal": ("内部", "internal"),
        "class.business_secret": ("商业秘密", "business secret"),
        "class.personal_privacy": ("个人隐私", "personal privacy"),
        "class.state_secret": ("国家秘密", "state secret"),
        "badge.verified": ("已校验", "verified"),
        "badge.problem": ("校验有问题", "problem found"),
        "badge.unchecked": ("未校验", "not checked"),
        "badge.removed": ("已删除", "removed"),
        "check.signature": ("签名", "Signature"),
        "check.chain": ("哈希链", "Chain"),
        "check.stored": ("入库", "Stored"),
        "check.media": ("文件哈希", "File hash"),
        "check.signature.ok": (
            "片段记录的 Ed25519 签名与注册表中该设备的公钥相符。",
            "The segment record's Ed25519 signature verifies under the camera's key in the "
            "registry.",
        ),
        "check.signature.bad": ("签名无法验证。", "The signature does not verify."),
        "check.signature.no_key": (
            "注册表中没有该设备的有效公钥。",
            "The registry holds no usable key for this camera.",
        ),
        "check.signature.key_invalid": (
            "签名时该设备的公钥不在有效期内（或已吊销）。",
            "The camera's key was not valid (or was revoked) when it signed.",
        ),
        "check.chain.ok": (
            "记录的 prev 等于前一条记录的 SHA-256：链未断。",
            "The record's prev is the SHA-256 of the record before it: the chain holds.",
        ),
        "check.chain.broken": (
            "记录与前一条记录不相连：链已断。",
            "The record does not link to the one before it: the chain is broken.",
        ),
        "check.stored.ok": (
            "基座 {dock} 的日志记录了以签名中的大小和 SHA-256 入库（接收时已校验）。",
            "Dock {dock}'s journal records storing it with the signed size and SHA-256 "
            "(hashed while it streamed in).",
        ),
        "check.stored.sealed": (
            "基座 {dock} 入库后已加密封存（涉密案卷）。",
            "Stored by dock {dock}, then sealed (a case above internal).",
        ),
        "check.stored.absent": (
            "没有基座日志记录这个文件入库。",
            "No dock journal records storing this file.",
        ),
        "check.stored.differs": (
            "基座记录的大小或 SHA-256 与签名不符。",
            "The dock recorded another size or SHA-256 than the camera signed.",
        ),
        "check.stored.removed": (
            "已按保存期限从库中删除。",
            "Removed from the store under retention.",
        ),
        "check.media.ok": (
            "{when} 由 {who} 重新计算文件 SHA-256，与签名相符。",
            "Re-hashed by {who} at {when}: the file matches the signed SHA-256.",
        ),
        "check.media.changed": (
            "{when} 由 {who} 重新计算：文件与签名的 SHA-256 或大小不符！",
            "Re-hashed by {who} at {when}: the file does NOT match the signed size or SHA-256!",
        ),
        "check.media.missing": (
            "{when} 由 {who} 检查：文件不在库中。",
            "Checked by {who} at {when}: the file is not in the store.",
        ),
        "check.media.sealed": (
            "{when} 由 {who} 检查：只保留加密文件，由基座记录其哈希。",
            "Checked by {who} at {when}: only the sealed file is kept, hashed by the dock.",
        ),
        "check.media.none": (
            "文件本身尚未重新计算哈希。",
            "The file itself has not been re-hashed yet.",
        ),
        "check.unchecked": (
            "此录像尚未校验：请运行 bodycam-archive sync。",
            "Not checked yet: run bodycam-archive sync.",
        ),
        "check.checked_at": ("{when} 同步时校验。", "Checked at sync, {when}."),
        "check.now": ("立即重新校验（含文件哈希）", "Check again now (hashing the file)"),
        "check.title": ("录像校验", "Recording checks"),
        "check.not_verdict": (
            "这些是档案系统为及早发现问题所做的检查；证据的结论以 bodycam-verify "
            "使用单位公钥指纹的校验为准。",
            "These are the archive's own checks, to find trouble early; the evidence's "
            "verdict is bodycam-verify's, against the unit key you name.",
        ),
        "check.back": ("返回当天时间线", "Back to the day"),
        "photo.open": ("查看照片", "View photo"),
        "moment.other": ("其他", "other"),
        "moment.relabelled": (
            "{now}（由 {by} 重新标注，原为「{was}」：{why}）",
            "{now} (relabelled by {by}, was \u201c{was}\u201d: {why})",
        ),
    }
)


@functools.cache
def _procedures():
    return load_procedures()


def moment_label(body: dict, lang: str) -> str:
    """A key moment's name as the rules word it (the procedure's, then the moment's); for
    a marker the dock relabelled, the moment in force, saying what it was and why."""
    relabelled = body.get("relabelled")
    if isinstance(relabelled, dict) and relabelled.get("moment"):
        now = _moment_name({**body, "moment": relabelled["moment"], "index": None}, lang)
        was = _moment_name({**body, "moment": relabelled.get("was"), "index": None}, lang)
        return i18n.translate(
            "moment.relabelled",
            lang,
            now=now,
            was=was,
            by=str(relabelled.get("by", "")),
            why=str(relabelled.get("why", "")),
        )
    return _moment_name(body, lang)


def _moment_name(body: dict, lang: str) -> str:
    procs = _procedures()
    pid, mid = body.get("procedure"), body.get("moment")
    if not mid:
        return str(body.get("note", ""))
    if pid in procs:
        proc = procs[pid]
        try:
            moment = proc.moment(str(mid))
        except KeyError:
            return f"{proc.zh if lang == 'zh-CN' else proc.en}: {mid}"
        index = f"{body['index']}. " if body.get("index") else ""
        return (
            f"{proc.zh}：{index}{moment.zh}"
            if lang == "zh-CN"
            else f"{proc.en}: {index}{moment.en}"
        )
    if mid == OTHER_MOMENT.id:
        return OTHER_MOMENT.zh if lang == "zh-CN" else OTHER_MOMENT.en
    return str(mid)


def play_url(request: Request, device: str, seq: int) -> str:
    """The player's page of a recording (H3's route ``play_recording``)."""
    return player_links(request)(device, seq)


def player_links(request: Request):
    """``(device, seq) -> URL`` of the player's page, resolving the route once per page
    (``url_path_for`` costs tens of microseconds: a day has a thousand links)."""
    try:
        pattern = request.app.url_path_for("play_recording", device="DEVICE", seq="0")
    except NoMatchFound:
        pattern = "/play/DEVICE/0"
    head, _, tail = pattern.partition("DEVICE")
    middle, _, rest = tail.partition("/0")

    def link(device: str, seq: int) -> str:
        return f"{head}{quote(device, safe='')}{middle}/{int(seq)}{rest}"

    return link


def local_day(request: Request, day: str | None) -> dt.date:
    tz = request.app.state.tz
    if not day:
        return dt.datetime.now(tz).date()
    try:
        return dt.date.fromisoformat(day)
    except ValueError:
        raise ArchiveError(f"date {day[:40]!r}: use YYYY-MM-DD") from None


def utc_range(request: Request, day: dt.date) -> tuple[str, str]:
    """The local day ``[00:00, next 00:00)`` as journal UTC stamps."""
    tz = request.app.state.tz
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.000000Z"
    return start.strftime(fmt), end.strftime(fmt)


BADGE_CLASS = {"verified": "ok", "problem": "bad", "unchecked": "warn", "removed": "muted"}
_WORD_PREFIXES = ("kind.", "badge.", "check.", "class.", "play")


def page_words(lang: str) -> dict[str, str]:
    """The day page's fixed texts in ``lang``, looked up once (a thousand rows each use
    a dozen; placeholders such as ``{dock}`` are filled in the template)."""
    return {
        key: entry.get(lang) or entry["en"]
        for key, entry in i18n.CATALOG.items()
        if key.startswith(_WORD_PREFIXES)
    }


MOMENT_KINDS = ("marker", "stoppage", "announcement", "photo")


def mark_acts(view: DayView) -> None:
    """Mark the key moments, stoppages, announcements and photos recorded during an act
    (``in_act``): the player opens at them (``/play/{device}/{seq}`` of the record)."""
    recording: dict[str, bool] = {}
    for row in view.rows:
        kind = row["kind"]
        if kind == "recording_started":
            recording[row["device"]] = True
        elif kind == "recording_stopped":
            recording[row["device"]] = False
        elif kind in MOMENT_KINDS:
            row["in_act"] = recording.get(row["device"], False)


def segment_rows(view: DayView, words: dict[str, str], links, tz, lang: str) -> None:
    """Each segment row's HTML, made here (``row["html"]``): a day has a thousand, and
    plain formatting with escaping is several times faster than the template's loop."""
    e = escape
    for r in view.rows:
        if r["kind"] != "segment":
            continue
        badge = r["badge"]
        where = f"{e(r['device'])} #{int(r['seq'])}"
        level = r["classification"]
        extra = f" · {e(words['class.' + level])}" if level != "internal" else ""
        if r["signature"] is None:
            checks = f"<li>{e(words['check.unchecked'])}</li>"
        else:
            stored = words.get("check.stored." + r["stored"], r["stored"])
            if r["media"]:
                media = i18n.translate(
                    "check.media." + r["media"],
                    lang,
                    when=local_time(r["media_checked_utc"], tz),
                    who=r["media_checked_by"] or "",
                )
            else:
                media = words["check.media.none"]
            checks = (
                f"<li>{e(words['check.signature'])}: "
                f"{e(words.get('check.signature.' + r['signature'], r['signature']))}</li>"
                f"<li>{e(words['check.chain'])}: "
                f"{e(words.get('check.chain.' + r['chain'], r['chain']))}</li>"
                f"<li>{e(words['check.stored'])}: "
                f"{e(stored.replace('{dock}', r['dock'] or '?'))}</li>"
                f"<li>{e(words['check.media'])}: {e(media)}</li>"
                + (f"<li>{e(r['check_detail'])}</li>" if r["check_detail"] else "")
            )
        checks_url = f"/recordings/{quote(r['device'], safe='')}/{int(r['seq'])}/checks"
        play = f'<a class="play" href="{e(links(r["device"], r["seq"]))}">▶ {e(words["play"])}</a>'
        if r.get("removed_utc"):  # retention removed it: when and under what authority
            said = i18n.translate(
                "day.removed",
                lang,
                when=local_time(r["removed_utc"], tz),
                who=e(r["removed_by"]),
                category=e(r["removed_category"]),
            )  # the catalog's text, its values escaped
            play = f'<span class="removed" data-removed="{e(r["removed_utc"])}">{said}</span>'
        r["html"] = Markup(
            f'<tr class="segment" id="rec-{e(r["device"])}-{int(r["seq"])}">'
            f'<td class="nowrap">{local_time(r["utc"], tz, "time")}–'
            f"{local_time(r['end_utc'], tz, 'time')}</td>"
            f"<td>{e(words['kind.segment'])} "
            f"{play}"
            f' <span class="muted mono">{e(r["file"])} · {filesize_filter(r["size"])}{extra}'
            f"</span></td>"
            f'<td class="nowrap">{where}</td>'
            f'<td><details class="check"><summary><span class="badge {BADGE_CLASS[badge]}" '
            f'data-badge="{badge}">{e(words["badge." + badge])}</span></summary>'
            f'<ul>{checks}</ul><a href="{checks_url}">{e(words["check.now"])}</a>'
            f"</details></td></tr>\n"
        )


def summary(view: DayView) -> dict[str, int]:
    counts = {"recordings": 0, "moments": 0, "stoppages": 0, "photos": 0, "dockings": 0}
    seconds = 0.0
    for row in view.rows:
        kind = row["kind"]
        if kind == "segment":
            counts["recordings"] += 1
            start, end = to_datetime(row["utc"]), to_datetime(row["end_utc"])
            if start and end:
                seconds += max(0.0, (end - start).total_seconds())
        elif kind == "marker":
            counts["moments"] += 1
        elif kind == "stoppage":
            counts["stoppages"] += 1
        elif kind == "photo":
            counts["photos"] += 1
        elif kind == "docked":
            counts["dockings"] += 1
    return counts | {"minutes": round(seconds / 60)}


@router.get("/day", name="officer_day")
def officer_day(
    request: Request,
    session: CurrentSession,
    officer: str = "",
    date: str = "",
) -> Response:
    archive = request.app.state.archive
    if not officer and session.role == "officer":
        officer = session.actor.officer
    day = local_day(request, date)
    officer = officer.strip()[:64]
    if not officer:
        return render(
            request,
            "day.html",
            view=None,
            officer="",
            day=day,
            officers=archive.known_officers(session),
        )
    start, end = utc_range(request, day)
    view = archive.officer_day(session, officer, start, end)
    mark_acts(view)
    lang = request_lang(request)
    words = page_words(lang)
    segment_rows(view, words, player_links(request), request.app.state.tz, lang)
    return render(
        request,
        "day.html",
        view=view,
        officer=officer,
        day=day,
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
        counts=summary(view),
        officers=archive.known_officers(session) if session.role != "officer" else [],
        moment_label=functools.partial(moment_label, lang=request_lang(request)),
        w=words,
        play_url=player_links(request),
    )


@router.get("/recordings/{device}/{seq}/checks", name="recording_checks")
def recording_checks(request: Request, session: CurrentSession, device: str, seq: int) -> Response:
    result = request.app.state.archive.recording_checks_of(session, device, seq)
    return render(request, "checks.html", rec=result, play_url=play_url(request, device, seq))


@router.post("/recordings/{device}/{seq}/check", name="check_recording", dependencies=[CSRF])
def check_recording(request: Request, session: CurrentSession, device: str, seq: int) -> Response:
    result = request.app.state.archive.check_recording(session, device, seq)
    return render(request, "checks.html", rec=result, play_url=play_url(request, device, seq))


@router.get("/photos/{device}/{seq}", name="photo")
def photo(request: Request, session: CurrentSession, device: str, seq: int) -> Response:
    """A photo the camera journaled, after the access check (audited as a view)."""
    archive = request.app.state.archive
    path, body = archive.photo_file(session, device, seq)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise NotFound(f"the photo {body.get('file', '')} is not in the store") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != body.get("size"):
            raise NotFound(f"the photo {body.get('file', '')} is not in the store as recorded")
        data = f.read()
    if hashlib.sha256(data).hexdigest() != body.get("sha256"):
        raise HTTPException(
            409, f"the photo {body.get('file', '')} does not match the camera's signed SHA-256"
        )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
