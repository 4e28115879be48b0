"""What the party copy's CJK watermark costs at 1080p: the same input copied with the
watermark and with its burning switched off, alternating, best of three each; seconds of
work per minute of video and their ratio (pytest -m bench -s prints them)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from archive import watermark
from archive.party import make_party_copy
from evidence.identity import DeviceIdentity

SECONDS = 10


@pytest.mark.bench  # machine-dependent figures: pytest -m bench
def test_the_watermark_costs_little_of_a_1080p_copy(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "in.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", str(SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "mpegts",
         str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    key = DeviceIdentity.generate("archive-1")
    burn = watermark.Watermark.burn
    best: dict[str, float] = {}
    for n in range(3):
        for label in ("watermark", "none"):
            if label == "none":
                monkeypatch.setattr(watermark.Watermark, "burn", lambda self, planes, height: None)
            else:
                monkeypatch.setattr(watermark.Watermark, "burn", burn)
            start = time.perf_counter()
            copy = make_party_copy(
                [source], tmp_path / f"{label}-{n}.mp4", requester="张三", date="2026-12-04",
                by="bench", identity=key, request="7",
            )  # fmt: skip
            per_minute = (time.perf_counter() - start) / copy.seconds * 60
            best[label] = min(best.get(label, per_minute), per_minute)
    ratio = best["watermark"] / best["none"]
    print(
        f"1080p25 party copy: {best['watermark']:.1f} s per minute of video with the CJK "
        f"watermark, {best['none']:.1f} s without; ratio {ratio:.3f}"
    )
    assert ratio < 1.25, best
