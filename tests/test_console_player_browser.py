"""The player in a real browser: Debian's headless Chromium, driven through chromedriver,
against ``bodycam-archive serve`` over the store a simulated shift left.

It logs in, plays an act across a segment cut (PTS running on) and across a restart
after a stoppage (sealed at rest: decrypted for the archivist), checks that the video's
clock passes the boundary with no media error, that sound is decoded and that a frame is
not black, seeks by a key moment and by the timeline, and sees the refusals and the error
pages of bad input. Each page's screenshot is saved to the artifact folder
(``$BODYCAM_ARTIFACTS`` or ``tests/artifacts/``)."""

from __future__ import annotations

import hashlib
import json
from itertools import pairwise
from pathlib import Path

import pytest
from consolekit import (
    BROWSERS,
    Browser,
    Console,
    Firefox,
    World,
    acts,
    build_world,
    copy_world,
    http_login,
    need_browser,
    need_chromium,
    open_browser,
)

from archive.web import hls
from evidence.clock import parse_utc
from evidence.journal import JOURNAL_NAME, readable_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    need_chromium()
    return build_world(tmp_path_factory.mktemp("console") / "w")


@pytest.fixture(scope="module")
def console(world: World):
    with Console(world.archive) as running:
        yield running


@pytest.fixture
def browser(console: Console):
    with Browser(console.base) as b:
        yield b


@pytest.fixture(params=BROWSERS)
def any_browser(request: pytest.FixtureRequest, console: Console):
    """Chromium, then Firefox: playback must work in both with no plugin."""
    need_browser(request.param)
    with open_browser(request.param, console.base) as b:
        yield b


def playback(world: World, index: int) -> hls.Playback:
    return hls.playback_of(world.shift.records, acts(world.shift)[index])


def seconds(start_utc: str, utc: str) -> float:
    return (parse_utc(utc) - parse_utc(start_utc)) / 1e9


def cut_act(world: World) -> int:
    """An act with a plain cut: two segments of one recording (PTS run on)."""
    for i, act in enumerate(acts(world.shift)):
        pieces = hls.playback_of(world.shift.records, act).pieces
        if len(pieces) > 1 and not pieces[1].discontinuity and i != world.sealed_act:
            return i
    raise AssertionError("the shift has no act with a plain cut")


FRAME_STATS = """
var v = window.bodycamPlayer.video, c = document.createElement('canvas');
c.width = v.videoWidth; c.height = v.videoHeight;
var g = c.getContext('2d'); g.drawImage(v, 0, 0);
var px = g.getImageData(0, 0, c.width, c.height).data, sum = 0, sq = 0, n = px.length / 4;
for (var i = 0; i < px.length; i += 4) {
  var y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]; sum += y; sq += y * y;
}
var mean = sum / n;
return {w: c.width, h: c.height, mean: mean, sd: Math.sqrt(Math.max(0, sq / n - mean * mean))};
"""

SOUND = """
var done = arguments[arguments.length - 1], v = window.bodycamPlayer.video;
var ctx = new AudioContext(), an = ctx.createAnalyser();
ctx.createMediaElementSource(v).connect(an); an.connect(ctx.destination);
var buf = new Float32Array(an.fftSize), peak = 0, looks = 0;
function look() {
  an.getFloatTimeDomainData(buf);
  for (var i = 0; i < buf.length; i++) peak = Math.max(peak, Math.abs(buf[i]));
  if (peak > 0.01 || ++looks > 80) done({peak: peak, state: ctx.state, t: v.currentTime});
  else setTimeout(look, 25);
}
ctx.resume();
look();
"""
"""The loudest sample the page hears from the video within about 2 s (Web Audio's
analyser on the element): sound decoded and not silent, in either browser."""

TRACE = """
window.trace = [];
var v = window.bodycamPlayer.video;
v.addEventListener('timeupdate', function () {
  if (!v.seeking) window.trace.push([performance.now() / 1000, v.currentTime]);
});
"""

STATE = """
var p = window.bodycamPlayer, v = p.video;
return {t: v.currentTime, tl: p.timelineTime(v.currentTime), errors: p.state.errors,
        error: v.error && v.error.code, muted: v.muted, volume: v.volume, paused: v.paused,
        audio: 'webkitAudioDecodedByteCount' in v ? v.webkitAudioDecodedByteCount
                                                  : (v.mozHasAudio ? 1 : 0),
        frames: 'webkitDecodedFrameCount' in v ? v.webkitDecodedFrameCount
                                               : v.getVideoPlaybackQuality().totalVideoFrames,
        position: document.getElementById('player-position').textContent};
"""


@pytest.mark.parametrize("which", ["cut", "restart"])
def test_playback_runs_across_a_segment_boundary_with_sound_and_a_picture(
    world: World, any_browser: Browser | Firefox, which: str
) -> None:
    """ "cut": a recording's two segments, PTS running on (served as stored, the first
    with its silent pre-event filled); "restart": a resume after a stoppage, PTS starting
    again, in a case above internal (sealed at rest: decrypted in memory for wang)."""
    browser = any_browser
    index = cut_act(world) if which == "cut" else world.sealed_act
    play = playback(world, index)
    boundary = play.pieces[1]
    assert boundary.discontinuity == (which == "restart")
    browser.login("wang")
    t = seconds(play.start_utc, play.pieces[0].end_utc) - 3  # wall-clock, as findings link
    browser.get(f"/play/{world.device}/{play.start_seq}?t={t:.1f}")  # 3 s before the cut
    browser.wait_event("window.bodycamPlayer.video", "playing")
    browser.js("window.bodycamPlayer.video.pause()")  # until both sides of the cut are in:
    browser.wait_js(  # a stall then is the stream's, not a loaded machine's
        "var p = window.bodycamPlayer, b = p.video.buffered;"
        f"return b.length && b.end(b.length - 1) > p.elementTime({boundary.offset_s}) + 2.5",
        what="both segments buffered",
    )
    browser.js(TRACE + "window.bodycamPlayer.video.play();")
    browser.wait_js(
        f"var p = window.bodycamPlayer; return p.video.currentTime > "
        f"p.elementTime({boundary.offset_s}) + 1.5 || p.state.errors.length",
        what="playback past the segment boundary",
    )
    trace = browser.js("return window.trace")
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(trace)]
    assert len(steps) > 5, trace
    # no jump: the video's clock moves as the wall clock does; no gap: it never stops long
    assert all(abs(media - wall) < 0.5 for wall, media in steps), steps
    assert max(wall for wall, _ in steps) < 2.0, steps
    state = browser.js(STATE)
    assert state["errors"] == [] and state["error"] is None, state
    assert state["tl"] > boundary.offset_s + 1.0  # on the act's timeline too
    # sound: Chromium counts the audio bytes it decoded; Firefox says the stream it decodes
    # has audio (mozHasAudio: its decoder found the AAC track)
    assert not state["muted"] and state["volume"] > 0 and state["audio"] > 0, state
    frame = browser.js(FRAME_STATS)
    assert frame["w"] > 0 and frame["mean"] > 30 and frame["sd"] > 10, frame  # not black
    if which == "cut":  # sound all through the second segment (a restart's is silent yet)
        sound = browser.js_async(SOUND)
        assert sound["peak"] > 0.01, sound  # heard, through the page's own audio graph
    browser.shot(f"player-{which}-{browser.name}")


def test_seek_to_a_key_moment_and_by_the_timeline(
    world: World, any_browser: Browser | Firefox
) -> None:
    browser = any_browser
    index = next(
        i
        for i, a in enumerate(acts(world.shift))
        if a.moments and i != world.sealed_act and len(a.segments) > 1
    )
    play = playback(world, index)
    moment = next(m for m in play.marks if m.kind == "moment")
    browser.login("wang")
    browser.get(f"/play/{world.device}/{play.start_seq}")
    browser.wait_event("window.bodycamPlayer.video", "playing")
    browser.wait_event(
        "window.bodycamPlayer.video",
        "seeked",
        f"document.querySelector('ol.moments button.seek[data-seq=\"{moment.seq}\"]').click();",
    )
    browser.wait_js("return window.bodycamPlayer.video.readyState >= 3", what="the moment's frame")
    state = browser.js(STATE)
    assert abs(state["tl"] - moment.t) < 0.6, (state, moment)
    assert state["errors"] == []
    browser.shot(f"player-seek-moment-{browser.name}")
    # a click on the timeline, a quarter of the way along
    got = browser.wait_event(
        "window.bodycamPlayer.video",
        "seeked",
        """var tl = document.getElementById('player-timeline'), box = tl.getBoundingClientRect();
        tl.dispatchEvent(new MouseEvent('click', {bubbles: true,
          clientX: box.left + box.width / 4, clientY: box.top + box.height / 2}));""",
    )
    tl = browser.js("return window.bodycamPlayer.timelineTime(arguments[0])", got["t"])
    assert abs(tl - play.duration_s / 4) < 0.6, (tl, play.duration_s)
    # a link to the moment's record starts there
    browser.get(f"/play/{world.device}/{moment.seq}")
    browser.wait_event("window.bodycamPlayer.video", "playing")
    assert abs(browser.js(STATE)["tl"] - moment.t) < 1.0
    browser.shot(f"player-moment-link-{browser.name}")


def test_a_sealed_recording_is_refused_to_who_may_not_see_it_and_audited(
    world: World, console: Console, browser: Browser
) -> None:
    play = playback(world, world.sealed_act)
    page = f"/play/{world.device}/{play.start_seq}"
    browser.login("sun")  # a supervisor: material up to internal
    browser.get(page)
    text = browser.js("return document.body.innerText")
    assert "403" in text and "personal_privacy" in text and "Traceback" not in text
    browser.shot("player-refused")
    with http_login(console.base, "sun") as sun:
        for url in (page + "/index.m3u8", f"{page}/media/{play.pieces[0].seq}.ts"):
            got = sun.get(url)
            assert got.status_code == 403 and "personal_privacy" in got.text, url
    refusals = [
        r
        for r in readable_records(world.archive / "audit" / JOURNAL_NAME)
        if r.kind == "refusal" and r.body.get("user") == "sun"
    ]
    assert len(refusals) >= 3 and all(r.body["detail"]["action"] == "view" for r in refusals)
    # the officer sees their own recording outside any case; the view is audited
    other = next(i for i in range(len(acts(world.shift))) if i != world.sealed_act)
    with http_login(console.base, "li") as li:
        assert li.get(f"/play/{world.device}/{playback(world, other).start_seq}").status_code == 200
    views = [
        r
        for r in readable_records(world.archive / "audit" / JOURNAL_NAME)
        if r.kind == "view" and r.body.get("user") == "li"
    ]
    assert views and views[-1].body["detail"]["what"] == "play"


def test_segments_are_served_with_http_range(world: World, console: Console) -> None:
    index = cut_act(world)
    play = playback(world, index)
    stored = play.pieces[1]  # sound throughout: served as stored
    original = (world.shift.folder / stored.file).read_bytes()
    url = f"/play/{world.device}/{play.start_seq}/media/{stored.seq}.ts"
    with http_login(console.base, "wang") as wang:
        whole = wang.get(url)
        assert whole.status_code == 200 and whole.content == original
        assert hashlib.sha256(whole.content).hexdigest() == stored.sha256
        part = wang.get(url, headers={"Range": "bytes=188-375"})
        assert part.status_code == 206 and part.content == original[188:376]
        assert part.headers["content-range"] == f"bytes 188-375/{len(original)}"
        assert wang.get(url, headers={"Range": f"bytes={len(original)}-"}).status_code == 416
        first = play.pieces[0]  # its pre-event has no sound: the browser's rendition
        url0 = f"/play/{world.device}/{play.start_seq}/media/{first.seq}.ts"
        rendition = wang.get(url0).content
        tail = wang.get(url0, headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206 and tail.content == rendition[-1000:]
        assert len(rendition) > first.size  # the silence frames added
        playlist = wang.get(f"/play/{world.device}/{play.start_seq}/index.m3u8")
        assert playlist.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        assert playlist.text.count("#EXTINF:") == len(play.pieces)
        assert "#EXT-X-DISCONTINUITY" not in playlist.text  # a plain cut


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_bad_input_gets_a_page_that_says_what_went_wrong_and_nothing_changes(
    world: World, tmp_path: Path
) -> None:
    """A wrong URL, a record that is no recording, a missing segment and a damaged file."""
    mine = copy_world(world, tmp_path)
    all_acts = acts(mine.shift)
    cut = hls.playback_of(mine.shift.records, all_acts[cut_act(mine)])
    other = next(
        hls.playback_of(mine.shift.records, a)
        for i, a in enumerate(all_acts)
        if i not in (world.sealed_act, cut_act(mine))
    )
    damaged = mine.shift.folder / cut.pieces[1].file
    data = bytearray(damaged.read_bytes())
    data[5000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    gone = mine.shift.folder / other.pieces[-1].file
    gone.unlink()
    before = tree_hashes(mine.shift.store)
    with Console(mine.archive) as running, Browser(running.base) as browser:
        with http_login(running.base, "wang") as wang:
            base = f"/play/{mine.device}"
            bad = wang.get(f"{base}/{cut.start_seq}/media/{cut.pieces[1].seq}.ts")
            assert bad.status_code == 409 and "damaged" in bad.text
            missing = wang.get(f"{base}/{other.start_seq}/media/{other.pieces[-1].seq}.ts")
            assert missing.status_code == 404 and "not in the dock store" in missing.text
            listed = wang.get(f"{base}/{other.start_seq}/index.m3u8").text
            assert f"#EXT-X-GAP\n#EXTINF:{other.pieces[-1].duration_s:.6f}," in listed
            for url, status in (
                ("/play/no-such-camera/1", 404),
                (f"{base}/999999", 404),
                (f"{base}/abc", 400),
                (f"{base}/{cut.start_seq}/media/999999.ts", 404),
            ):
                got = wang.get(url)
                assert got.status_code == status, (url, got.status_code)
            for got in (bad, missing):
                assert "Traceback" not in got.text and 'class="detail"' in got.text
        browser.login("wang")
        at = seconds(cut.start_utc, cut.pieces[1].start_utc) - 1
        browser.get(f"{base}/{cut.start_seq}?t={at:.1f}")
        browser.wait_js(
            "return window.bodycamPlayer.state.errors.length > 0", what="the damaged segment"
        )
        shown = browser.js("return document.getElementById('player-error').innerText")
        assert "409" in shown and "damaged" in shown, shown
        browser.shot("player-damaged")
        browser.get(f"{base}/{other.start_seq}")
        notice = browser.js("return document.querySelector('p.missing').innerText")
        assert Path(other.pieces[-1].file).name in notice
        browser.shot("player-missing")
        browser.get("/play/no-such-camera/1")
        assert "404" in browser.js("return document.body.innerText")
        browser.shot("player-not-found")
    assert tree_hashes(mine.shift.store) == before  # nothing in the store changed
    assert json.loads((mine.shift.root / "summary.json").read_text())  # the shift's own files
