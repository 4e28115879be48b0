"""The party's copy, made from a real docked shift's segments: ffprobe reads the MP4, the
watermark (the requester's name in Chinese, drawn with the CJK font) is found in decoded
frames by correlation with its rendered mask, and not in a copy made for someone else;
the derivation record verifies and names the sources the camera signed, the full name and
the font."""

from __future__ import annotations

import json
import struct
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
from archivekit import Shift, run_shift

from archive import watermark
from archive.party import Derivation, PartyCopyError, make_party_copy, watermark_lines
from archive.watermark import (
    FONT_ENV,
    FONT_PACKAGE,
    FontMissing,
    WatermarkError,
    find_font,
    render_watermark,
)
from evidence.exc import SignatureError
from evidence.identity import DeviceIdentity
from evidence.media import hash_file


@pytest.fixture(scope="module")
def shift(tmp_path_factory) -> Shift:
    return run_shift(tmp_path_factory.mktemp("shift") / "s")


@pytest.fixture(scope="module")
def archive_key() -> DeviceIdentity:
    return DeviceIdentity.generate("archive-1")


@pytest.fixture(scope="module")
def copies(shift, archive_key, tmp_path_factory):
    """The same three segments copied for 张三 and for 李四 (a name of the same length, so
    the two watermarks are laid out alike and differ only in the name's glyphs)."""
    segments = [r for r in shift.records if r.kind == "segment"][:3]
    paths = [shift.folder / r.body["file"] for r in segments]
    made = {}
    for name in ("张三", "李四"):
        out = tmp_path_factory.mktemp("copy") / "case-1-party.mp4"
        start = time.perf_counter()
        made[name] = make_party_copy(
            paths,
            out,
            requester=name,
            date="2026-12-04",
            by="archivist-wang",
            identity=archive_key,
            expected_sha256=[r.body["sha256"] for r in segments],
            request="req-7",
        )
        seconds = time.perf_counter() - start
        print(
            f"party copy: {made[name].seconds:.1f} s of video in {seconds:.2f} s "
            f"({made[name].seconds / seconds:.0f}x)"
        )
    return made, segments, paths


@pytest.fixture(scope="module")
def copy(copies):
    made, segments, paths = copies
    return made["张三"], segments, paths


def ffprobe(path: Path) -> dict:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def top_boxes(path: Path) -> list[str]:
    boxes, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        offset += size if size else len(data)
    return boxes


def frames(path: Path, picks: tuple[int, ...]) -> list[np.ndarray]:
    """The Y planes of the decoded frames numbered ``picks``."""
    out = []
    with av.open(str(path)) as c:
        for n, frame in enumerate(c.decode(video=0)):
            if n in picks:
                out.append(frame.to_ndarray(format="yuv420p")[: frame.height])
            if n >= max(picks):
                break
    return out


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation: 1 for the same pattern, about 0 for an unrelated one."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_ffprobe_reads_both_streams_and_the_whole_length(copy):
    made, _, paths = copy
    info = ffprobe(made.path)
    codecs = sorted(s["codec_name"] for s in info["streams"])
    assert codecs == ["aac", "h264"]
    assert info["format"]["format_name"].startswith("mov,mp4")
    total = sum(float(ffprobe(p)["format"]["duration"]) for p in paths)
    assert abs(float(info["format"]["duration"]) - total) < 0.5, (info["format"], total)
    boxes = top_boxes(made.path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: plays while downloading


def test_the_watermark_is_in_decoded_frames_and_names_the_requester(copies):
    made, _, paths = copies
    mine, theirs = made["张三"], made["李四"]
    total = mine.frames
    picks = (0, total // 2, total - 1)  # first frame, one in the middle segment, the last
    marked, other = frames(mine.path, picks), frames(theirs.path, picks)
    source = frames(paths[0], (0,))[0]
    height, width = source.shape
    recorded = mine.derivation.body["watermark"]
    font = recorded["font"]["file"]
    lines = watermark_lines("张三", "2026-12-04", "req-7")
    assert lines[0] == "仅供 张三 使用 · 2026-12-04 复制 · 申请 req-7"
    expect = render_watermark(width, height, lines, font)  # drawn again, as anyone can
    foreign = render_watermark(width, height, watermark_lines("李四", "2026-12-04", "req-7"), font)
    assert list(expect.lines) == recorded["lines"] and [expect.x, expect.y] == recorded["position"]
    assert expect.fill.shape == foreign.fill.shape
    region = np.s_[expect.y : expect.y + expect.height, expect.x : expect.x + expect.width]
    pattern = expect.pattern()
    # Where the two names' glyphs differ: the name itself, as the frame shows it.
    names = np.abs(pattern - foreign.pattern()) > 0.5
    assert names.sum() > 40, names.sum()
    for n, (y_mine, y_theirs) in enumerate(zip(marked, other, strict=True)):
        whole, whole_other = ncc(y_mine[region], pattern), ncc(y_theirs[region], pattern)
        name = ncc(y_mine[region][names], pattern[names])
        name_other = ncc(y_theirs[region][names], pattern[names])
        print(f"frame {picks[n]}: ncc whole {whole:.3f} vs {whole_other:.3f}, "
              f"name {name:.3f} vs {name_other:.3f}")  # fmt: skip
        assert whole > 0.8, whole
        assert name > 0.8 and name - name_other > 0.6, (name, name_other)
        # the source frame does not show it
        assert ncc(source[region], pattern) < 0.3
    # glyphs white, outline black, and elsewhere the picture is the source's, re-encoded
    first = marked[0].astype(int)
    assert first[region][expect.fill > 200].mean() > 200
    assert first[region][(expect.edge > 200) & (expect.fill < 20)].mean() < 60
    below = np.s_[expect.y + expect.height + 4 :, :]
    assert np.abs(first[below] - source[below].astype(int)).mean() < 8


def test_the_derivation_record_verifies_and_names_the_sources(copy, archive_key):
    made, segments, _ = copy
    record = Derivation.from_bytes(made.record_path.read_bytes().rstrip(b"\n"))
    record.verify(archive_key.public_key_hex)
    body = record.body
    assert [s["sha256"] for s in body["sources"]] == [r.body["sha256"] for r in segments]
    assert body["requester"] == "张三" and body["by"] == "archivist-wang"
    mark = body["watermark"]
    assert mark["text"] == watermark_lines("张三", "2026-12-04", "req-7")
    assert "".join(mark["lines"]).replace(" ", "") == "".join(mark["text"]).replace(" ", "")
    font = mark["font"]
    assert font["file"] == str(find_font()) and font["family"].startswith("WenQuanYi")
    assert font["package"] == FONT_PACKAGE and font["sha256"] == hash_file(font["file"])[1]
    assert "WenQuanYi" in body["operations"][1] and "张三" in body["operations"][1]
    assert body["output"]["sha256"] == hash_file(made.path)[1]
    assert record.device == "archive-1" and len(body["operations"]) == 3
    forged = json.loads(made.record_path.read_text(encoding="utf-8"))
    forged["body"]["requester"] = "李四"
    with pytest.raises(SignatureError):
        again = Derivation(**forged)
        again.verify(archive_key.public_key_hex)


def test_refusals_are_one_line(shift, archive_key, tmp_path, monkeypatch):
    segment = next(r for r in shift.records if r.kind == "segment")
    path = shift.folder / segment.body["file"]
    args = dict(date="2026-12-04", by="a", identity=archive_key)
    # A code point no font draws (private use): refused before any output is made.
    with pytest.raises(WatermarkError, match=r"has no glyph for .\\U000f0000."):
        make_party_copy([path], tmp_path / "x.mp4", requester="张\U000f0000", **args)
    with pytest.raises(PartyCopyError, match="altered source"):
        make_party_copy(
            [path], tmp_path / "x.mp4", requester="Li", expected_sha256=["0" * 64], **args
        )
    with pytest.raises(PartyCopyError, match="no segments"):
        make_party_copy([], tmp_path / "x.mp4", requester="Li", **args)
    monkeypatch.setenv(FONT_ENV, str(tmp_path / "gone.ttc"))
    with pytest.raises(FontMissing, match=f"install {FONT_PACKAGE}") as missing:
        make_party_copy([path], tmp_path / "x.mp4", requester="张三", **args)
    assert "\n" not in str(missing.value) and FONT_ENV in str(missing.value)
    assert list(tmp_path.iterdir()) == []
    # no variable and none of the packages' files: the package to install, in one line
    monkeypatch.delenv(FONT_ENV)
    monkeypatch.setattr(watermark, "DEFAULT_FONTS", ((str(tmp_path / "wqy.ttc"), FONT_PACKAGE),))
    with pytest.raises(FontMissing, match=f"no CJK font .*apt-get install {FONT_PACKAGE}"):
        make_party_copy([path], tmp_path / "x.mp4", requester="张三", **args)
    assert list(tmp_path.iterdir()) == []


def test_a_latin_font_without_chinese_is_refused_not_drawn_as_boxes(monkeypatch):
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin.is_file():
        pytest.skip("fonts-dejavu-core is not installed")
    monkeypatch.setenv(FONT_ENV, str(latin))
    assert find_font() == latin  # the variable comes before the packages' files
    with pytest.raises(WatermarkError, match="has no glyph for '三张'"):
        render_watermark(640, 480, ["copy for 张三"])
    assert render_watermark(640, 480, ["copy for Zhang San"]).font == latin
