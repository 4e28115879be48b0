"""``bodycam-dock report compliance``: read the store, judge each act, print the report.

Reading is here; the decisions are :mod:`dock.compliance`. The HTML page is one
self-contained file (no scripts, no links out), in Chinese first with English, for a
supervisor to print.
"""

from __future__ import annotations

import html
from typing import Any

from evidence.clock import parse_utc
from evidence.dockjournal import Relabel
from evidence.journal import JOURNAL_NAME, readable_records
from evidence.procedures import Procedures

from .announcements import results as audio_results
from .compliance import Act, acts_of


def store_acts(
    store: Any,
    procedures: Procedures,
    now_ns: int,
    limit_h: float,
    *,
    officer: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
) -> list[Act]:
    """Every act of every device in the store, filtered by officer and by the UTC day
    (YYYY-MM-DD, inclusive) on which the act started; with what the dock heard of each
    announcement in the audio (its journal's ``announcement_audio`` records)."""
    officers = {e.device_id: e.officer for e in store.registry()}
    heard = audio_results(store.root)
    stored: dict[str, dict[str, str]] = {}
    for row in store.index.query("SELECT device, file, stored_utc FROM media"):
        if row["stored_utc"]:
            stored.setdefault(row["device"], {})[row["file"]] = row["stored_utc"]
    relabels: dict[str, dict[int, list[Relabel]]] = {}
    for (device, seq), made in store.relabels().items():
        relabels.setdefault(device, {})[seq] = made
    acts: list[Act] = []
    for _unit, device, folder in store.device_folders():
        if officer is not None and officers.get(device, "") != officer:
            continue
        journal = folder / JOURNAL_NAME
        if not journal.exists():
            continue
        acts += acts_of(
            readable_records(journal),  # a damaged line shows here as a journal_gap
            procedures,
            officer=officers.get(device, ""),
            stored_utc=stored.get(device, {}),
            now_ns=now_ns,
            limit_h=limit_h,
            relabels=relabels.get(device),
            audio=heard.get(device, {}),
        )
    return [
        a
        for a in acts
        if (day_from is None or a.start_utc[:10] >= day_from)
        and (day_to is None or a.start_utc[:10] <= day_to)
    ]


def _what(f: dict[str, Any], lang: str) -> str:
    text = f[lang]
    if f["kind"] == "moment_missing":
        text += f": {f['moment_' + lang]}"
    if f["kind"] == "stored_late":
        text += f" ({f['file']}, {f['hours']} h)"
    if f["kind"] == "hours_not_covered":
        stops = ", ".join(str(s["reason"]) for s in f["stops"] if s["reason"])
        text += f" ({f['window']}: {f['from_utc']} - {f['to_utc']}, {f['minutes']} min"
        text += f"; {stops})" if stops else ")"
    if f["kind"] == "announcement_inaudible" and f["verdict"] == "no_audio":
        text += " (no audio)"
    elif f["kind"] == "announcement_inaudible":
        text += f" ({f['file']}, score {f['score']:.3f})"
    return text


_HEARD = {
    "heard": ("录音中听到告知语音", "heard in the audio"),
    "not_heard": ("录音中未听到告知语音", "not heard in the audio"),
    "no_audio": ("无录音可核对", "no audio to check"),
    "unchecked": ("尚未核对录音", "audio not checked yet (run `bodycam-dock check announcements`)"),
}


def audio_line(audio: dict[str, Any] | None, lang: str) -> str:
    """The announcement as found in the audio: the verdict, where it starts, the score."""
    if audio is None:
        return ""
    zh, en = _HEARD.get(audio["verdict"], (audio["verdict"], audio["verdict"]))
    text = zh if lang == "zh" else en
    if audio.get("start_utc") and audio["verdict"] != "no_audio":
        where = "最佳匹配" if lang == "zh" else "best match"
        if audio["verdict"] == "heard":
            where = "开始于" if lang == "zh" else "starts"
        text += (
            f", {where} {audio['start_utc']} ({audio['file']} +{audio['offset_s']:.3f} s), "
            f"score {audio['score']:.3f}"
        )
    return text


def _groups(data: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, slot): each officer, then each fixed camera."""
    return [("officer", n, s) for n, s in data["officers"].items()] + [
        ("fixed camera", n, s) for n, s in data.get("fixed_cameras", {}).items()
    ]


def render_text(data: dict[str, Any]) -> str:
    lines = []
    for who, officer, s in _groups(data):
        acts = "window(s)" if who == "fixed camera" else "act(s)"
        lines.append(
            f"{who} {officer}: {len(s['acts'])} {acts}, {s['acts_with_findings']} with findings"
        )
        for kind, c in s["by_kind"].items():
            arts = ", ".join(f"Art. {a}" for a in c["articles"])
            lines.append(f"  {c['count']:>4} x {kind} ({arts})")
        if s.get("audio_unchecked"):
            lines.append(
                f"  {s['audio_unchecked']:>4} act(s): announcement audio not checked yet "
                "(run `bodycam-dock check announcements`)"
            )
        for act in s["acts"]:
            if act.get("announcement_audio"):
                lines.append(
                    f"  {act['device']} act at {act['start_utc']}: announcement "
                    f"seq {act['announcement_seq']} {audio_line(act['announcement_audio'], 'en')}"
                )
            for f in act["findings"]:
                seqs = ",".join(str(n) for n in f["seqs"])
                what = act["procedure"] or act["window"] or "-"
                lines.append(
                    f"  {act['device']} act at {act['start_utc']} ({what}): "
                    f"{_what(f, 'en')} [Art. {f['article']}; seq {seqs}]"
                )
        for act in s["acts"]:
            for r in act["relabelled"]:
                lines.append(
                    f"  {act['device']} seq {r['seq']}: moment {r['was']} relabelled as "
                    f"{r['moment']} by {r['by']} at {r['utc']} (dock {r['dock']} seq "
                    f"{r['dock_seq']}): {r['why']}"
                )
    return "\n".join(lines) or "no acts recorded"


_STYLE = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", sans-serif; margin: 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; margin: .6em 0; }
th, td { border: 1px solid #888; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eee; } .en { color: #555; font-size: .9em; }
@media print { body { margin: 1cm; } }
"""


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    out = [
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        "<title>执法全过程记录合规报告 Compliance report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>执法全过程记录合规报告 <span class='en'>Full-process recording: compliance "
        "report</span></h1>",
        f"<p>截至 {e(data['now_utc'])} <span class='en'>as of</span></p>",
    ]
    groups = _groups(data)
    if not groups:
        out.append("<p>无执法记录 <span class='en'>no acts recorded</span></p>")
    for who, officer, s in groups:
        if who == "fixed camera":
            heading = (
                f"<h2>固定摄像头 {e(officer)} <span class='en'>fixed camera</span>: "
                f"{len(s['acts'])} 个工作时段 <span class='en'>working-hours windows</span>, "
            )
        else:
            heading = (
                f"<h2>执法人员 {e(officer)} <span class='en'>officer</span>: "
                f"{len(s['acts'])} 次执法 <span class='en'>acts</span>, "
            )
        out.append(
            heading
            + f"{s['acts_with_findings']} 次有问题 <span class='en'>with findings</span></h2>"
        )
        if s["by_kind"]:
            out.append(
                "<table><tr><th>问题 <span class='en'>finding</span></th><th>次数 "
                "<span class='en'>count</span></th><th>条款 <span class='en'>articles</span>"
                "</th></tr>"
            )
            for c in s["by_kind"].values():
                arts = "、".join(f"第{a}条" for a in c["articles"])
                out.append(
                    f"<tr><td>{e(c['zh'])}<br><span class='en'>{e(c['en'])}</span></td>"
                    f"<td>{c['count']}</td><td>{e(arts)}</td></tr>"
                )
            out.append("</table>")
        if s.get("audio_unchecked"):
            out.append(
                f"<p>{s['audio_unchecked']} 次执法的告知语音尚未核对录音 <span class='en'>"
                "act(s) whose announcement audio is not checked yet (bodycam-dock check "
                "announcements)</span></p>"
            )
        announced = [a for a in s["acts"] if a.get("announcement_audio")]
        if announced:
            out.append(
                "<table><tr><th>设备 <span class='en'>device</span></th><th>执法开始 "
                "<span class='en'>act started</span></th><th>告知记录 <span class='en'>"
                "announcement record</span></th><th>录音核对 <span class='en'>in the audio"
                "</span></th></tr>"
            )
            for act in announced:
                audio = act["announcement_audio"]
                out.append(
                    f"<tr><td>{e(act['device'])}</td><td>{e(act['start_utc'])}</td>"
                    f"<td>seq {act['announcement_seq']}</td>"
                    f"<td>{e(audio_line(audio, 'zh'))}<br>"
                    f"<span class='en'>{e(audio_line(audio, 'en'))}</span></td></tr>"
                )
            out.append("</table>")
        rows = [(a, f) for a in s["acts"] for f in a["findings"]]
        if rows:
            out.append(
                "<table><tr><th>设备 <span class='en'>device</span></th><th>执法开始 "
                "<span class='en'>act started</span></th><th>程序 <span class='en'>procedure"
                "</span></th><th>问题 <span class='en'>finding</span></th><th>条款 "
                "<span class='en'>article</span></th><th>证据 <span class='en'>evidence (seq, "
                "UTC)</span></th></tr>"
            )
            for act, f in rows:
                seqs = ", ".join(str(n) for n in f["seqs"])
                out.append(
                    f"<tr><td>{e(act['device'])}</td><td>{e(act['start_utc'])}</td>"
                    f"<td>{e(act['procedure'] or act['window'] or '-')}</td>"
                    f"<td>{e(_what(f, 'zh'))}<br><span class='en'>{e(_what(f, 'en'))}</span></td>"
                    f"<td>第{f['article']}条</td><td>seq {e(seqs)}<br>{e(f['utc'])}</td></tr>"
                )
            out.append("</table>")
        changes = [(a, r) for a in s["acts"] for r in a["relabelled"]]
        if changes:
            out.append("<h3>重点环节更正 <span class='en'>relabelled key moments</span></h3>")
            out.append(
                "<table><tr><th>设备 <span class='en'>device</span></th><th>记录 "
                "<span class='en'>seq</span></th><th>原标注 <span class='en'>as marked</span>"
                "</th><th>更正为 <span class='en'>relabelled as</span></th><th>更正人 "
                "<span class='en'>by</span></th><th>理由 <span class='en'>why</span></th>"
                "<th>更正记录 <span class='en'>dock record</span></th></tr>"
            )
            for act, r in changes:
                out.append(
                    f"<tr><td>{e(act['device'])}</td><td>{r['seq']}</td><td>{e(r['was'])}</td>"
                    f"<td>{e(r['moment'])}</td><td>{e(r['by'])}</td><td>{e(r['why'])}</td>"
                    f"<td>{e(r['dock'])} seq {r['dock_seq']}<br>{e(r['utc'])}</td></tr>"
                )
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def check_day(value: str | None, flag: str) -> str | None:
    """A ``--from``/``--to`` day, YYYY-MM-DD; ValueError naming the flag otherwise."""
    if value is None:
        return None
    try:
        parse_utc(f"{value}T00:00:00.000000Z")
    except ValueError:
        raise ValueError(f"{flag}: {value!r} is not a day (YYYY-MM-DD)") from None
    return value
