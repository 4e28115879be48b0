"""What is on the record for each enforcement act, and what is missing (Art. 6, 18-33,
34, 38-39), as pure decisions over a device's verified journal records.

An *act* is one recording session: from a ``recording_started`` that follows no
fault stop to the ``recording_stopped`` by the officer's button or at shutdown. A stop
for a stoppage and the resume after it stay within the act. The act's procedure is the one
its ``recording_started`` names, and its key moments are the ``marker`` records that name
a moment, read as the dock's latest ``relabel`` of it says (the marker itself is kept as
recorded, and the report shows both). Every finding names its evidence: the device, the sequence numbers and the
times, so that a person can check it against the footage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evidence.clock import format_utc, parse_utc
from evidence.dockjournal import Relabel
from evidence.procedures import OTHER, Procedures
from evidence.record import Record
from evidence.schedule import NS, Schedule, ScheduleError, parse_schedule, uncovered

from .deadlines import HOUR_NS, LIMIT_H

# Finding kind -> (article, zh, en): what the rules require that the act lacks.
FINDINGS: dict[str, tuple[int, str, str]] = {
    "no_procedure": (
        38,
        "未选择执法程序，无法核对重点环节",
        "no procedure chosen: key moments unchecked",
    ),
    "unknown_procedure": (
        38,
        "记录的执法程序不在程序清单中",
        "the recorded procedure is not in the list",
    ),
    "moment_missing": (0, "缺少重点环节记录", "a key moment is not on the record"),
    "announcement_missing": (6, "未告知使用执法记录仪", "the recording was not announced"),
    "announcement_inaudible": (
        6,
        "告知语音未在录音中听到",
        "the announcement was played but is not heard in the recorded audio",
    ),
    "stop_unexplained": (5, "中止记录未说明原因", "recording stopped without a stated reason"),
    "stored_late": (34, "音像记录超过24小时未存储", "stored more than 24 hours after recording"),
    "journal_gap": (38, "记录日志序号不连续", "the journal's sequence numbers have a gap"),
    "hours_not_covered": (
        9,
        "工作时间内未进行全过程音视频记录",
        "working hours not recorded",
    ),
}
COVERAGE_TOLERANCE_S = 60.0
"""A fixed camera's gap shorter than this is a segment boundary or a restart, not a gap."""


@dataclass
class Act:
    """One recording session of one device and what its records show."""

    device: str
    officer: str
    start_seq: int
    start_utc: str
    procedure: str | None
    window: str | None = None  # a fixed camera's working-hours window ("08:30-12:00")
    end_seq: int | None = None
    end_utc: str | None = None
    moments: list[tuple[str, int, str]] = field(default_factory=list)  # (moment, seq, utc)
    announced: int | None = None  # seq of the announcement record
    announced_utc: str | None = None
    audio: dict[str, Any] | None = None  # the dock's announcement_audio answer, if checked
    segments: list[Record] = field(default_factory=list)
    relabelled: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    _stoppages: list[Record] = field(default_factory=list)
    _suspended: bool = False

    def find(self, kind: str, seqs: list[int], utc: str, **detail: Any) -> None:
        article, zh, en = FINDINGS[kind]
        self.findings.append(
            {
                "kind": kind,
                "article": detail.pop("article", article),
                "zh": zh,
                "en": en,
                "device": self.device,
                "seqs": seqs,
                "utc": utc,
                **detail,
            }
        )

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "officer": self.officer,
            "procedure": self.procedure,
            "window": self.window,
            "start_seq": self.start_seq,
            "start_utc": self.start_utc,
            "end_seq": self.end_seq,
            "end_utc": self.end_utc,
            "moments": [{"moment": m, "seq": s, "utc": u} for m, s, u in self.moments],
            "announcement_seq": self.announced,
            "announcement_audio": self.audio_summary(),
            "segments": len(self.segments),
            "relabelled": self.relabelled,
            "findings": self.findings,
        }

    def audio_summary(self) -> dict[str, Any] | None:
        """What the dock found of the announcement in the recorded audio: None without an
        announcement record, ``verdict: unchecked`` until the dock has checked it."""
        if self.announced is None:
            return None
        a = self.audio
        if a is None:
            return {"verdict": "unchecked"}
        return {
            "verdict": a.get("verdict"),
            "start_utc": a.get("start_utc"),
            "file": a.get("file"),
            "offset_s": None if a.get("offset_ms") is None else a["offset_ms"] / 1000,
            "score": a.get("score_milli", 0) / 1000,
            "threshold": a.get("threshold_milli", 0) / 1000,
            "dock": a.get("dock"),
            "dock_seq": a.get("dock_seq"),
        }


def acts_of(
    records: list[Record],
    procedures: Procedures,
    *,
    officer: str = "",
    stored_utc: dict[str, str] | None = None,
    now_ns: int,
    limit_h: float = LIMIT_H,
    relabels: dict[int, list[Relabel]] | None = None,
    audio: dict[int, dict[str, Any]] | None = None,
    tolerance_s: float = COVERAGE_TOLERANCE_S,
) -> list[Act]:
    """Split one device's records (in sequence order) into acts and judge each.

    A fixed camera (one that journals a ``schedule``) is judged by its working hours:
    each window of the schedule in force, up to ``now_ns``, is an act, with an
    ``hours_not_covered`` finding for each part of it longer than ``tolerance_s`` that
    no segment covers, and the findings of the recordings made in it.

    ``stored_utc``: file -> when the dock stored it (files the dock has not stored are
    absent). A segment stored, or still not stored, more than ``limit_h`` hours after it
    closed is ``stored_late``. ``relabels``: marker seq -> the dock's relabellings of it,
    oldest first; one made against another record (its hash differs) is ignored.
    ``audio``: announcement seq -> the dock's ``announcement_audio`` answer
    (:func:`dock.announcements.results`); an announcement the dock has not checked yet is
    shown as unchecked, not passed."""
    stored = stored_utc or {}
    relabels = relabels or {}
    heard = audio or {}
    acts: list[Act] = []
    act: Act | None = None
    cut: Act | None = None  # the act a boot interrupted: its open segment is recovered after
    previous: Record | None = None
    for record in records:
        if previous is not None and record.seq != previous.seq + 1 and act is not None:
            act.find(
                "journal_gap",
                [previous.seq, record.seq],
                record.utc,
                missing=record.seq - previous.seq - 1,
            )
        previous = record
        kind, body = record.kind, record.body
        if kind == "recording_started":
            cut = None
            if act is None or not act._suspended:
                if act is not None:  # a new start without a stop: the old act ended unseen
                    _end(act, record, unexplained=True)
                act = Act(
                    record.device,
                    officer,
                    record.seq,
                    record.utc,
                    body.get("procedure"),
                    window=body.get("schedule"),
                )
                acts.append(act)
            act._suspended = False
        elif act is None:
            if kind == "segment" and record.body.get("recovered") and cut is not None:
                cut.segments.append(record)  # signed at the boot after the cut
            elif kind == "segment":
                cut = None
            continue
        elif kind == "announcement" and act.announced is None:
            act.announced, act.announced_utc = record.seq, record.utc
        elif kind == "marker" and body.get("moment"):
            moment = str(body["moment"])
            made = [r for r in relabels.get(record.seq, []) if r.record_hash == record.hash]
            if made:
                act.relabelled += [
                    {
                        "seq": record.seq,
                        "was": r.was,
                        "moment": r.moment,
                        "by": r.by,
                        "why": r.why,
                        "dock": r.dock,
                        "dock_seq": r.dock_seq,
                        "utc": r.utc,
                    }
                    for r in made
                ]
                moment = made[-1].moment
            act.moments.append((moment, record.seq, record.utc))
        elif kind == "segment":
            act.segments.append(record)
        elif kind == "stoppage":
            act._stoppages.append(record)
        elif kind == "recording_stopped":
            if body.get("by") == "fault":
                if not any(s.body.get("reason") for s in act._stoppages):
                    act.find("stop_unexplained", [record.seq], record.utc, by="fault")
                act._suspended = True
                act._stoppages = []
            else:
                _end(act, record, unexplained=False)
                act = None
        elif kind == "boot":  # the camera restarted inside an act: a power cut or a crash
            _end(act, record, unexplained=not act._suspended)
            act, cut = None, act
    for a in acts:
        a.audio = heard.get(a.announced) if a.announced is not None else None
        _judge(a, procedures, stored, now_ns, limit_h)
    return _working_hours(records, acts, officer, now_ns, int(tolerance_s * NS))


def _working_hours(
    records: list[Record], sessions: list[Act], officer: str, now_ns: int, tolerance_ns: int
) -> list[Act]:
    schedules: list[tuple[Record, Schedule]] = []
    for record in records:
        if record.kind == "schedule":
            try:
                schedules.append((record, parse_schedule(record.body, "schedule record")))
            except ScheduleError:
                continue  # verify reports a malformed body; no hours can be judged by it
    if not schedules:
        return sessions
    covered = sorted(
        (parse_utc(r.body["start_utc"]), parse_utc(r.body["end_utc"]), r.seq)
        for r in records
        if r.kind == "segment"
    )
    stops = [r for r in records if r.kind in ("stoppage", "boot", "recording_stopped")]
    spans = [parse_utc(r.utc) for r, _ in schedules[1:]] + [now_ns]
    windows: list[Act] = []
    for (record, schedule), until in zip(schedules, spans, strict=True):
        for lo, hi, name in schedule.windows_between(parse_utc(record.utc), until):
            act = Act(record.device, officer, record.seq, format_utc(lo), None, window=name)
            act.end_utc = format_utc(hi)
            for gap_lo, gap_hi in uncovered(
                (lo, hi), [(a, b) for a, b, _ in covered], tolerance_ns
            ):
                before = [seq for a, b, seq in covered if b <= gap_lo]
                after = [seq for a, b, seq in covered if a >= gap_hi]
                why = [
                    {
                        "seq": r.seq,
                        "kind": r.kind,
                        "reason": r.body.get("reason") or r.body.get("by"),
                    }
                    for r in stops
                    if gap_lo - tolerance_ns <= parse_utc(r.utc) <= gap_hi
                ]
                act.find(
                    "hours_not_covered",
                    before[-1:] + after[:1] or [record.seq],
                    format_utc(gap_lo),
                    window=name,
                    from_utc=format_utc(gap_lo),
                    to_utc=format_utc(gap_hi),
                    minutes=round((gap_hi - gap_lo) / NS / 60, 1),
                    stops=why,
                )
            windows.append(act)
    merged: list[Act] = []
    for session in sessions:  # a recording in working hours counts in its window's act
        home = next(
            (
                w
                for w in windows
                if w.window == session.window
                and session.start_utc < (w.end_utc or "")
                and (session.end_utc or "~") > w.start_utc
            ),
            None,
        )
        if home is None:
            merged.append(session)
            continue
        home.segments += session.segments
        home.moments += session.moments
        home.relabelled += session.relabelled
        home.findings += session.findings
    return sorted(windows + merged, key=lambda a: a.start_utc)


def _end(act: Act, record: Record, *, unexplained: bool) -> None:
    act.end_seq, act.end_utc = record.seq, record.utc
    if unexplained:
        act.find("stop_unexplained", [record.seq], record.utc, by=record.kind)


def _judge(
    act: Act, procedures: Procedures, stored: dict[str, str], now_ns: int, limit_h: float
) -> None:
    procedure = procedures.get(act.procedure) if act.procedure else None
    fixed = act.window is not None  # a fixed camera records its hours, not one act
    if act.procedure is None:
        if not fixed:
            act.find("no_procedure", [act.start_seq], act.start_utc)
    elif procedure is None:
        act.find("unknown_procedure", [act.start_seq], act.start_utc, procedure=act.procedure)
    if procedure is not None:
        marked = [m for m, _, _ in act.moments if m != OTHER]
        for moment in procedure.missing(marked):
            act.find(
                "moment_missing",
                [act.start_seq] + ([act.end_seq] if act.end_seq is not None else []),
                act.start_utc,
                article=moment.article,
                procedure=procedure.id,
                moment=moment.id,
                moment_zh=moment.zh,
                moment_en=moment.en,
            )
    if not fixed and (procedure is None or procedure.announce) and act.announced is None:
        act.find("announcement_missing", [act.start_seq], act.start_utc)
    if not fixed and (procedure is None or procedure.announce) and act.audio is not None:
        _judge_audio(act, act.audio)
    for segment in act.segments:
        closed = parse_utc(segment.body["end_utc"])
        when = stored.get(segment.body["file"])
        until = parse_utc(when) if when else now_ns
        hours = (until - closed) / HOUR_NS
        if hours > limit_h:
            act.find(
                "stored_late",
                [segment.seq],
                segment.body["end_utc"],
                file=segment.body["file"],
                stored_utc=when,
                hours=round(hours, 1),
            )


def _judge_audio(act: Act, heard: dict[str, Any]) -> None:
    """Played (the record) but not heard in the recorded audio (the dock's answer)."""
    if heard.get("verdict") == "heard":
        return
    act.find(
        "announcement_inaudible",
        [act.announced],
        heard.get("start_utc") or act.announced_utc,
        verdict=heard.get("verdict"),
        file=heard.get("file"),
        files=heard.get("files", []),
        score=heard.get("score_milli", 0) / 1000,
        dock=heard.get("dock"),
        dock_seq=heard.get("dock_seq"),
    )


def relabel_problem(
    record: Record, moment: str, procedures: Procedures, current: str | None = None
) -> str | None:
    """Why the device's ``record`` cannot be relabelled as naming ``moment``, or None.
    ``current``: the moment it names now (after earlier relabellings)."""
    if record.kind != "marker":
        return f"record {record.seq} is a {record.kind} record, not a marked key moment"
    procedure_id = record.body.get("procedure")
    if not procedure_id:
        return (
            f"record {record.seq} was marked with no procedure chosen: "
            "there is no key moment to relabel it as"
        )
    procedure = procedures.get(procedure_id)
    if procedure is None:
        return f"record {record.seq} names procedure {procedure_id!r}, which is not in the list"
    try:
        procedure.moment(moment)
    except KeyError:
        known = ", ".join([m.id for m in procedure.moments] + [OTHER])
        return f"procedure {procedure_id} has no moment {moment!r} (its moments: {known})"
    now = current if current is not None else record.body.get("moment")
    if moment == now:
        return f"record {record.seq} already names {moment}"
    return None


def report(acts: list[Act]) -> dict[str, Any]:
    """Per officer, and per fixed camera (a device with working hours): the acts, the
    findings, and a count per finding kind with its articles."""
    fixed = {a.device for a in acts if a.window is not None}
    groups: dict[str, dict[str, dict[str, Any]]] = {"officers": {}, "fixed_cameras": {}}
    for act in acts:
        if act.device in fixed:
            group, name = groups["fixed_cameras"], act.device
        else:
            group, name = groups["officers"], act.officer or "(no officer)"
        slot = group.setdefault(
            name, {"acts": [], "acts_with_findings": 0, "audio_unchecked": 0, "by_kind": {}}
        )
        slot["acts"].append(act.summary())
        slot["acts_with_findings"] += bool(act.findings)
        slot["audio_unchecked"] += act.announced is not None and act.audio is None
        for f in act.findings:
            count = slot["by_kind"].setdefault(
                f["kind"], {"count": 0, "articles": [], "zh": f["zh"], "en": f["en"]}
            )
            count["count"] += 1
            if f["article"] and f["article"] not in count["articles"]:
                count["articles"].append(f["article"])
    for group in groups.values():
        for slot in group.values():
            for count in slot["by_kind"].values():
                count["articles"].sort()
    return {key: dict(sorted(group.items())) for key, group in groups.items()}
