"""The party's copy, made from a real docked shift's segments: ffprobe reads the MP4, the
watermark is read back from a decoded frame, the derivation record verifies and names
the sources the camera signed."""

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

from archive.party import Derivation, PartyCopyError, make_party_copy, watermark_layout
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
def copy(shift, archive_key, tmp_path_factory):
    segments = [r for r in shift.records if r.kind == "segment"][:3]
    paths = [shift.folder / r.body["file"] for r in segments]
    out = tmp_path_factory.mktemp("copy") / "case-1-party.mp4"
    start = time.perf_counter()
    made = make_party_copy(
        paths,
        out,
        requester="张三",
        watermark_name="Zhang San",
        date="2026-12-04",
        by="archivist-wang",
        identity=archive_key,
        expected_sha256=[r.body["sha256"] for r in segments],
        request="req-7",
    )
    seconds = time.perf_counter() - start
    print(
        f"party copy: {made.seconds:.1f} s of video in {seconds:.2f} s ({made.seconds / seconds:.0f}x)"
    )
    return made, segments, paths


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


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format="yuv420p")[: frame.height]


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


def test_the_watermark_is_in_a_decoded_frame(copy):
    made, _, paths = copy
    marked, source = first_frame(made.path), first_frame(paths[0])
    height, width = marked.shape
    lines = made.derivation.body["watermark"]
    assert lines == ["COPY FOR ZHANG SAN", "2026-12-04"]
    burner, x, ys = watermark_layout(width, height, lines)
    for line, y in zip(lines, ys, strict=True):
        assert burner.read(marked, x, y, len(line)) == line
        region = np.s_[y : y + burner.line_height, x : x + burner.width_of(line)]
        # the source frame does not show it there: the copy differs where it was burned
        assert burner.read(source, x, y, len(line)) != line
        diff = np.abs(marked[region].astype(int) - source[region].astype(int)).mean()
        assert diff > 20, diff
    # elsewhere the picture is the source's, re-encoded
    below = np.s_[ys[-1] + 2 * burner.line_height :, :]
    assert np.abs(marked[below].astype(int) - source[below].astype(int)).mean() < 8


def test_the_derivation_record_verifies_and_names_the_sources(copy, archive_key):
    made, segments, _ = copy
    record = Derivation.from_bytes(made.record_path.read_bytes().rstrip(b"\n"))
    record.verify(archive_key.public_key_hex)
    body = record.body
    assert [s["sha256"] for s in body["sources"]] == [r.body["sha256"] for r in segments]
    assert body["requester"] == "张三" and body["by"] == "archivist-wang"
    assert body["output"]["sha256"] == hash_file(made.path)[1]
    assert record.device == "archive-1" and len(body["operations"]) == 3
    forged = json.loads(made.record_path.read_text(encoding="utf-8"))
    forged["body"]["requester"] = "李四"
    with pytest.raises(SignatureError):
        again = Derivation(**forged)
        again.verify(archive_key.public_key_hex)


def test_refusals_are_one_line(shift, archive_key, tmp_path):
    segment = next(r for r in shift.records if r.kind == "segment")
    path = shift.folder / segment.body["file"]
    args = dict(date="2026-12-04", by="a", identity=archive_key)
    with pytest.raises(PartyCopyError, match="no glyph for '三张'"):
        make_party_copy([path], tmp_path / "x.mp4", requester="张三", **args)
    with pytest.raises(PartyCopyError, match="altered source"):
        make_party_copy(
            [path], tmp_path / "x.mp4", requester="Li", expected_sha256=["0" * 64], **args
        )
    with pytest.raises(PartyCopyError, match="no segments"):
        make_party_copy([], tmp_path / "x.mp4", requester="Li", **args)
    assert list(tmp_path.iterdir()) == []
