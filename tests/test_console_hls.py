"""The player's HLS logic over a real simulated shift's store: where PTS run on and where
they start again, the playlist, the timeline of key moments, and the browser's rendition
of a segment whose sound has holes (every recorded packet unchanged, read back by ffprobe
and PyAV)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from itertools import pairwise
from pathlib import Path

import av
import pytest
from archivekit import Shift, run_shift

from archive.web import hls
from archive.web.player import byte_range
from dock.compliance import acts_of
from evidence.clock import parse_utc
from evidence.procedures import load_procedures


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s", duration="10m")


def acts(shift: Shift) -> list:
    return acts_of(shift.records, load_procedures(), officer="A1024", now_ns=0)


def probe(path: Path) -> list[dict]:
    """Every packet's stream, PTS and DTS as ffprobe reads them."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=codec_type,pts,dts"]
        + ["-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)["packets"]


def packets(data: bytes) -> list[tuple]:
    with av.open(
        __import__("io").BytesIO(data), options={"analyzeduration": "120000000"}
    ) as container:
        return [
            (p.stream.type, p.pts, p.dts, bytes(p))
            for p in container.demux()
            if p.dts is not None and p.size
        ]


def test_pts_run_on_across_a_cut_and_start_again_with_each_recording(shift: Shift) -> None:
    """What the playlist's discontinuities rest on, read from the files by ffprobe."""
    records = {r.seq: r for r in shift.records}
    segs = [r for r in shift.records if r.kind == "segment"]
    cut = seen = 0
    for before, after in pairwise(segs):
        between = [records[s].kind for s in range(before.seq + 1, after.seq) if s in records]
        first = [p for p in probe(shift.folder / after.body["file"]) if p["codec_type"] == "video"]
        last = [p for p in probe(shift.folder / before.body["file"]) if p["codec_type"] == "video"]
        start = min(int(p["pts"]) for p in first)
        end = max(int(p["pts"]) for p in last)
        if "recording_started" in between:
            seen += 1
            assert start == 45_000  # 0.5 s: the firmware's DTS lead, a fresh origin
        else:
            cut += 1
            step = 90_000 // 10  # one frame at the simulated camera's 10 fps
            assert start == end + step, (before.body["file"], after.body["file"])
    assert cut >= 1 and seen >= 1  # the shift has both (the test can fail)


def test_the_playlist_marks_a_discontinuity_only_where_a_recording_starts(shift: Shift) -> None:
    found = acts(shift)
    assert found
    total_cuts = 0
    for act in found:
        playback = hls.playback_of(shift.records, act)
        assert [p.seq for p in playback.pieces] == [s.seq for s in act.segments]
        text = hls.media_playlist(playback, lambda p: f"media/{p.seq}.ts")
        assert text.startswith("#EXTM3U\n") and text.endswith("#EXT-X-ENDLIST\n")
        assert text.count("#EXTINF:") == len(playback.pieces)
        expected = 0
        for prev, piece in pairwise(playback.pieces):
            started = [
                r
                for r in shift.records
                if prev.seq < r.seq < piece.seq and r.kind == "recording_started"
            ]
            assert piece.discontinuity == bool(started)
            expected += bool(started)
            total_cuts += not started
            assert piece.offset_s == pytest.approx(prev.end_s)  # end to end: no gap, no jump
        assert text.count("#EXT-X-DISCONTINUITY") == expected
        assert not playback.pieces[0].discontinuity and playback.pieces[0].offset_s == 0
    assert total_cuts >= 1


def test_key_moments_and_stoppages_land_where_their_frames_are(shift: Shift) -> None:
    for act in acts(shift):
        playback = hls.playback_of(shift.records, act)
        moments = [m for m in playback.marks if m.kind == "moment"]
        assert [m.seq for m in moments] == [s for _, s, _ in act.moments]
        for mark in playback.marks:
            assert 0 <= mark.t <= playback.duration_s
            inside = [
                p
                for p in playback.pieces
                if p.start_utc <= mark.utc < p.end_utc  # the instant is on the record
            ]
            if inside:
                p = inside[0]
                assert p.offset_s <= mark.t < p.end_s
        assert playback.start_of(act.segments[-1].seq) == playback.pieces[-1].offset_s
        if moments:
            assert playback.start_of(moments[0].seq) == moments[0].t
    stops = [m for a in acts(shift) for m in hls.playback_of(shift.records, a).marks]
    assert {m.label for m in stops if m.kind == "stoppage"} >= {"weather", "camera"}


def test_act_containing_finds_the_act_of_any_of_its_records(shift: Shift) -> None:
    found = acts(shift)
    for act in found:
        assert hls.act_containing(found, act.start_seq) is act
        for s in act.segments:
            assert hls.act_containing(found, s.seq) is act
    assert hls.act_containing(found, 10**9) is None


def test_a_missing_segment_is_a_gap_the_player_goes_past(shift: Shift) -> None:
    act = max(acts(shift), key=lambda a: len(a.segments))
    playback = hls.playback_of(shift.records, act)
    gone = playback.pieces[-1].seq
    text = hls.media_playlist(playback, lambda p: f"{p.seq}.ts", gaps=[gone])
    assert f"#EXT-X-GAP\n#EXTINF:{playback.pieces[-1].duration_s:.6f},\n{gone}.ts" in text


def test_the_rendition_fills_the_holes_in_the_sound_and_copies_every_packet(
    shift: Shift,
) -> None:
    """The first segment of a recording holds the pre-event video, which has no sound."""
    first = next(r for r in shift.records if r.kind == "segment")
    path = shift.folder / first.body["file"]
    data = path.read_bytes()
    holes = hls.scan(data)
    assert holes is not None and len(holes.fill_at) > 10
    out = hls.fill_audio_holes(data)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first.body["sha256"]  # unchanged
    before, after = packets(data), packets(out)
    assert set(before) <= set(after)  # every recorded packet, same bytes, PTS and DTS
    added = [p for p in after if p not in set(before)]
    assert len(added) == len(holes.fill_at) and {p[0] for p in added} == {"audio"}
    assert hls.scan(out) is None  # no hole left
    video = [p[1] for p in after if p[0] == "video"]
    audio = sorted(p[1] for p in after if p[0] == "audio")
    assert abs(audio[0] - min(video)) < holes.frame_ticks  # sound from the first frame on
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "null", "-"],
        input=out,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr[-500:]


def test_a_segment_with_sound_throughout_is_served_as_stored(shift: Shift) -> None:
    segs = [r for r in shift.records if r.kind == "segment"]
    whole = [r for r in segs if hls.scan((shift.folder / r.body["file"]).read_bytes()) is None]
    assert whole  # the second segment of a long recording (the test can fail)
    data = (shift.folder / whole[0].body["file"]).read_bytes()
    assert hls.fill_audio_holes(data) is data


def test_bytes_that_are_not_a_segment_are_a_media_error() -> None:
    for junk in (b"", b"\x00" * 4096, b"G" + b"\xff" * 187 * 20):
        with pytest.raises(hls.MediaError):
            hls.scan(junk)
        with pytest.raises(hls.MediaError):
            hls.fill_audio_holes(junk)


def test_adts_header_says_what_the_silence_is() -> None:
    frame = hls.adts_frame(hls.SILENT_AAC_LC[1], 16000, 1)
    assert hls._adts_config(frame) == (16000, 1)
    assert (frame[3] & 3) << 11 | frame[4] << 3 | frame[5] >> 5 == len(frame)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("items=0-1", 100, None),
        ("bytes=0-1,5-6", 100, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=x-y", "bytes=-0"])
def test_byte_range_outside_the_file_is_refused(header: str) -> None:
    with pytest.raises(ValueError):
        byte_range(header, 100)


def test_t_counts_from_the_act_start_by_the_clock_as_findings_do(shift: Shift) -> None:
    for act in acts(shift):
        playback = hls.playback_of(shift.records, act)
        for mark in playback.marks:
            seconds = (parse_utc(mark.utc) - parse_utc(act.start_utc)) / 1e9
            assert playback.time_at(seconds) == pytest.approx(mark.t, abs=1e-6)


def test_the_package_ships_the_consoles_templates_and_static_files() -> None:
    """Every template, style sheet and script of archive/web matches setup.cfg's
    package_data (a wheel without hls.js would serve a player that cannot play)."""
    import configparser

    root = Path(__file__).resolve().parent.parent
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    globs = [g.strip() for g in cfg["options.package_data"]["archive"].split(",")]
    web = root / "archive" / "web"
    files = [
        p.relative_to(root / "archive").as_posix()
        for p in web.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]
    assert any(f.endswith("hls.min.js") for f in files)
    shipped = {
        p.relative_to(root / "archive").as_posix()
        for g in globs
        for p in (root / "archive").glob(g)  # setuptools' globs: no "*" across folders
    }
    assert sorted(set(files) - shipped) == []
