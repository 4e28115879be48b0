"""Live status in the console: device statuses and alerts as they happen (server-sent
events fed from MQTT), verified exactly as ``bodycam-supervisor watch`` verifies them, and
acknowledged from the page.

:class:`LiveFeed` is one MQTT subscription per console process: :class:`alerting.watch.
Watcher` with :class:`alerting.judge.AlertJudge`, the supervisor's own code (no second
judgement), over the unit-signed registry trusted by the unit key the operator names. It
keeps the recent events and hands each new one to every open event stream. Threads: paho's
network thread calls :meth:`LiveFeed._on_verdict` and :meth:`LiveFeed._on_status` (under the
watcher's lock); each stream is a coroutine on the server's event loop, woken through
``loop.call_soon_threadsafe``.

Acknowledging is :meth:`archive.oversight.Oversight.acknowledge_alert` (the access check
``acknowledge``: the supervisor and the head; audited), for an alert this console has shown
as genuine, then the supervisor's own :func:`alerting.watch.send_ack`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from alerting.judge import AlertJudge, SeenState, Verdict
from alerting.watch import BrokerSettings, StatusEvent, Watcher, send_ack
from evidence.clock import format_utc
from evidence.identity import DeviceIdentity
from evidence.registry import Registry

from ..exc import ArchiveError
from . import i18n
from .auth import CSRF, SESSION_COOKIE, CurrentSession, account_of, csrf_token
from .forms import may, roles_that_may, whole
from .render import NavItem, render, request_lang

_log = logging.getLogger(__name__)

router = APIRouter()
NAV = [NavItem("live", "nav.live", roles_that_may("report"))]
KEEP = 200  # recent events a newly opened page is sent
KEEPALIVE_S = 15.0
SCRIPT = Path(__file__).with_name("live.js")

SCRIPT_LABELS = (
    *("live.ack", "live.acked", "live.online", "live.offline"),
    *("live.connected", "live.disconnected"),
    *("alert.stoppage", "alert.resumed", "alert.battery_low", "alert.journal_damaged"),
    *("alert.reserve_spent", "alert.dock_alert", "alert.archive_alert"),
    *("verdict.verified", "verdict.forged", "verdict.replay", "verdict.invalid"),
    *("verdict.unknown-device", "verdict.revoked-key", "verdict.wrong-unit", "verdict.stale"),
)
"""The words live.js needs for rows it adds (sent with the page, in its language)."""


@dataclass(frozen=True)
class Event:
    id: int
    type: str  # alert, status, ack
    data: dict[str, Any]

    def sse(self) -> str:
        payload = json.dumps(self.data, ensure_ascii=False, sort_keys=True)
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n"


class LiveFeed:
    """The console's MQTT side: verdicts and statuses in, events out."""

    def __init__(
        self,
        settings: BrokerSettings,
        registry: Registry,
        *,
        client_id: str,
        state_path: str | Path | None = None,
        console: DeviceIdentity | None = None,
        refresh: Any = None,
    ) -> None:
        self.settings = settings
        self.judge = AlertJudge(registry, SeenState(state_path))
        self._refresh = refresh
        self.watcher = Watcher(
            settings,
            self.judge,
            self._on_verdict,
            client_id=client_id,
            console=console,
            on_status=self._on_status,
            refresh=self._reload if refresh else None,
        )
        self._lock = threading.Lock()
        self._events: collections.deque[Event] = collections.deque(maxlen=KEEP)
        self._next = 1
        self._streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self.devices: dict[str, dict[str, Any]] = {
            e.device_id: {"device": e.device_id, "unit": e.unit, "officer": e.officer}
            for e in registry
        }
        self.acked: dict[tuple[str, int], dict[str, str]] = {}
        self.stopped = False

    # -- running (the command's thread) -------------------------------------------------

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.stopped = True
        self.watcher.stop()
        self._publish(None)  # ends every open stream

    @property
    def connected(self) -> bool:
        return self.watcher.subscribed.is_set()

    def _reload(self) -> None:  # paho's thread, under the watcher's lock
        registry = self._refresh()
        if registry is not None:
            self.judge.registry = registry

    # -- paho's thread ------------------------------------------------------------------

    def _on_verdict(self, v: Verdict) -> None:
        """A verdict worth showing (genuine or flagged): an ``alert`` event."""
        data = {
            "verdict": v.verdict,
            "genuine": v.genuine,
            "problem": v.problem,
            "topic": v.topic[:200],
            "unit": v.unit,
            "device": v.device,
            "officer": v.officer,
            "seq": v.seq,
            "kind": v.kind,
            "level": str(v.body.get("level", ""))[:40] if isinstance(v.body, dict) else "",
            "detail": _detail(v),
            "utc": v.utc,
            "received_utc": format_utc(time.time_ns()),
            "ackable": v.genuine and v.seq is not None,
        }
        self.judge.state.save()  # what was shown is kept before the receipt goes out
        self._publish(("alert", data))

    def _on_status(self, s: StatusEvent) -> None:
        data = {
            "device": s.device,
            "unit": s.unit,
            "officer": s.officer,
            "online": s.online,
            "state": s.state,
            "utc": s.utc,
            "text": s.text,
        }
        with self._lock:
            self.devices[s.device] = data
        self._publish(("status", data))

    # -- any thread ---------------------------------------------------------------------

    def _publish(self, item: tuple[str, dict[str, Any]] | None) -> None:
        with self._lock:
            event = None
            if item is not None:
                event = Event(self._next, item[0], item[1])
                self._next += 1
                self._events.append(event)
            streams = list(self._streams)
        for loop, queue in streams:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # that stream's loop is closed
                pass

    def recent(self, after: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._events if e.id > after]

    def alerts(self) -> list[dict[str, Any]]:
        """The recent alerts, newest first, each with its acknowledgement if any."""
        out = []
        for e in reversed(self.recent()):
            if e.type == "alert":
                data = dict(e.data)
                data["ack"] = self.acked.get((data["device"], data["seq"]))
                out.append(data)
        return out

    def subscribe(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        with self._lock:
            self._streams.add((loop, queue))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        with self._lock:
            self._streams.discard((loop, queue))

    def acknowledge(self, unit: str, device: str, seq: int, by: str) -> None:
        """Send the camera the acknowledgement (the supervisor's ``send_ack``)."""
        send_ack(self.settings, unit, device, seq, by)
        data = {"device": device, "seq": seq, "by": by, "utc": format_utc(time.time_ns())}
        with self._lock:
            self.acked[(device, seq)] = data
        self._publish(("ack", data))


def _detail(v: Verdict) -> str:
    """What the alert's body says, in its own words (reason, detail, percent, case...)."""
    body = v.body if isinstance(v.body, dict) else {}
    parts = []
    for key in ("reason", "detail", "percent", "minutes_left", "case", "day", "text"):
        if key in body and body[key] not in (None, ""):
            parts.append(f"{key}: {str(body[key])[:160]}")
    return "; ".join(parts)[:400]


def feed_of(request: Request) -> LiveFeed | None:
    return getattr(request.app.state, "live", None)


# -- pages --------------------------------------------------------------------------------


@router.get("/live", name="live")
def live_page(request: Request, session: CurrentSession) -> Response:
    request.app.state.archive.watch_live(session)
    feed = feed_of(request)
    return render(
        request,
        "live.html",
        feed=feed,
        devices=sorted((feed.devices if feed else {}).values(), key=lambda d: d["device"]),
        alerts=feed.alerts() if feed else [],
        last_id=feed.recent()[-1].id if feed and feed.recent() else 0,
        may_ack=may(session, "acknowledge"),
        csrf=csrf_token(request),
        labels={k: i18n.translate(k, request_lang(request)) for k in SCRIPT_LABELS},
    )


@router.get("/live/live.js", name="live_js", include_in_schema=False)
def live_script() -> Response:
    return FileResponse(SCRIPT, media_type="text/javascript")


@router.get("/live/events", name="live_events")
async def events(request: Request, session: CurrentSession, after: int = 0) -> Response:
    """The event stream: what came after ``Last-Event-ID`` (or ``?after=``), then each new
    event as it arrives, and a comment line every 15 s to keep proxies from closing it."""
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(request.app.state.archive.watch_live, session)
    feed = feed_of(request)
    if feed is None:
        raise ArchiveError("live status is off: the console was started without --mqtt")
    try:
        after = int(request.headers.get("last-event-id", after))
    except ValueError:
        after = 0
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    feed.subscribe(loop, queue)
    sessions, sid = request.app.state.sessions, request.cookies.get(SESSION_COOKIE)

    def ended() -> bool:
        """A logout, an expired session or a changed account (a deactivated user) ends
        the stream too, not just new requests."""
        web = sessions.get(sid, touch=False)
        return web is None or account_of(request.app.state.archive, web.session.name) != web.account

    async def stream():
        sent = after
        try:
            yield "retry: 2000\n\n"
            for event in feed.recent(after):
                sent = event.id
                yield event.sse()
            while not feed.stopped:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected() or ended():
                        return
                    yield ": keepalive\n\n"
                    continue
                if event is None or ended():
                    return
                if event.id > sent:
                    sent = event.id
                    yield event.sse()
        finally:
            feed.unsubscribe(loop, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/live/ack", name="live_ack", dependencies=[CSRF])
def acknowledge(
    request: Request,
    session: CurrentSession,
    device: str = Form(""),
    seq: str = Form(""),
) -> Response:
    """Acknowledge an alert shown here as genuine: the archive's check and audit, then the
    acknowledgement to the camera (QoS 1, the broker's PUBACK awaited)."""
    feed = feed_of(request)
    if feed is None:
        raise ArchiveError("live status is off: the console was started without --mqtt")
    number = whole(seq, "alert")
    device = device.strip()
    with feed.watcher.lock:  # the seen-state is paho's thread's, under this lock
        shown = feed.judge.state.was_shown(device, number)
    if not shown:
        raise ArchiveError(
            f"no alert #{number} of {device[:64]!r} has been shown on this console as "
            "genuine; not acknowledging it"
        )
    entry = feed.judge.registry.get(device)
    unit = entry.unit if entry else ""
    if not unit:
        raise ArchiveError(f"the registry gives no unit for {device!r}")

    def send() -> None:
        try:
            feed.acknowledge(unit, device, number, session.name)
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"the acknowledgement was not sent: {exc}") from None

    request.app.state.archive.acknowledge_alert(session, device, number, send)
    return RedirectResponse(request.app.url_path_for("live"), status_code=303)


i18n.add(
    {
        # -- live status (archive.web.live) -------------------------------------------
        "nav.live": ("实时状态", "Live status"),
        "live.title": ("实时状态", "Live status"),
        "live.off": (
            "未连接消息服务器：控制台启动时未指定 --mqtt。",
            "Not connected: the console was started without --mqtt.",
        ),
        "live.connected": ("已连接", "connected"),
        "live.disconnected": ("未连接（正在重试）", "not connected (retrying)"),
        "live.devices": ("设备状态", "Devices"),
        "live.device": ("设备", "Device"),
        "live.officer": ("执法人员", "Officer"),
        "live.state": ("状态", "State"),
        "live.since": ("时间", "Since"),
        "live.online": ("在线", "online"),
        "live.offline": ("离线", "offline"),
        "live.unknown": ("未上报", "never reported"),
        "live.alerts": ("告警", "Alerts"),
        "live.no_alerts": ("尚无告警。", "No alerts yet."),
        "live.verdict": ("核验", "Verified"),
        "live.kind": ("类型", "Kind"),
        "live.detail": ("内容", "Detail"),
        "live.ack": ("确认", "Acknowledge"),
        "live.acked": ("{by} 已确认", "acknowledged by {by}"),
        "verdict.verified": ("签名有效", "verified"),
        "verdict.forged": ("伪造", "forged"),
        "verdict.replay": ("重放", "replay"),
        "verdict.invalid": ("无效", "invalid"),
        "verdict.unknown-device": ("未登记设备", "unknown device"),
        "verdict.revoked-key": ("密钥已吊销", "revoked key"),
        "verdict.wrong-unit": ("非本单位", "wrong unit"),
        "verdict.stale": ("过期", "stale"),
        "alert.stoppage": ("中止录像", "stoppage"),
        "alert.resumed": ("恢复录像", "resumed"),
        "alert.battery_low": ("电量低", "battery low"),
        "alert.journal_damaged": ("日志损坏", "journal damaged"),
        "alert.reserve_spent": ("存储空间耗尽", "storage full"),
        "alert.dock_alert": ("基站告警", "dock alert"),
        "alert.archive_alert": ("案卷期限告警", "case deadline alert"),
    }
)
