"""What a segment holds back in memory after each hand-off (what a SIGKILL would lose).

The file is read back, as it is on storage, after every frame handed to
:class:`firmware.segment.SegmentFile`: every video frame must be in it (the muxer keeps
back at most the newest sound packet), also when the sound comes late, as on the Pi, and
when it stops. Real H.264 and AAC (PyAV's encoders), a real ffprobe for the file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from firmware.preevent import Frame
from firmware.segment import SegmentFile, VideoFormat

W, H, RATE = 160, 120, 16_000
ORIGIN = 5_000_000  # camera microseconds of the first frame


def video_frames(fps: int, seconds: int) -> list[Frame]:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 1_000_000), Fraction(fps, 1)
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={fps}:bframes=0:repeat-headers=1:annexb=1",
    }
    rng = np.random.default_rng(1)
    packets = []
    for i in range(seconds * fps):
        image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 1_000_000 // fps
        packets += enc.encode(frame)
    packets += enc.encode(None)
    return [Frame(bytes(p), bool(p.is_keyframe), ORIGIN + int(p.pts), False) for p in packets]


def audio_frames(seconds: int) -> tuple[list[Frame], bytes]:
    """Noise, so that no two packets are alike and none is small enough to be kept back."""
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = RATE, "mono", "fltp", 32_000
    enc.time_base = Fraction(1, RATE)
    rng = np.random.default_rng(2)
    out, n = [], 0
    while n < seconds * RATE:
        samples = (rng.standard_normal((1, 1024)) * 0.1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = RATE, n
        n += 1024
        for p in enc.encode(frame):
            ts = ORIGIN + int(p.pts) * 1_000_000 // RATE
            if ts >= ORIGIN:
                out.append(Frame(bytes(p), True, ts, True))
    return out, bytes(enc.extradata)


def handed_in_order(video: list[Frame], audio: list[Frame], lag_us: int) -> list[Frame]:
    """As a camera hands them: before each frame, the sound stamped up to it less ``lag_us``."""
    out, i = [], 0
    for v in video:
        while i < len(audio) and audio[i].timestamp <= v.timestamp - lag_us:
            out.append(audio[i])
            i += 1
        out.append(v)
    return out


def on_file(path: Path) -> tuple[int, int]:
    """(video, audio) packets a demuxer finds in the file as it is now."""
    counts = {"video": 0, "audio": 0}
    try:
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.size:
                    counts[packet.stream.type] += 1
    except av.error.FFmpegError:
        pass
    return counts["video"], counts["audio"]


@pytest.mark.parametrize(
    ("fps", "lag_us", "sound"),
    [(10, 0, True), (30, 0, True), (30, 80_000, True), (10, 200_000, True), (30, 0, False)],
)
def test_every_frame_is_on_file_as_soon_as_it_is_handed(
    tmp_path: Path, fps: int, lag_us: int, sound: bool
) -> None:
    video = video_frames(fps, 2)
    audio, extradata = audio_frames(2)
    stream = handed_in_order(video, audio if sound else [], lag_us)
    seg = SegmentFile(tmp_path, "media/x/a.ts", VideoFormat(W, H, fps, RATE, 1, extradata), ORIGIN)
    path = tmp_path / "media/x/a.ts"
    held_video, held_audio = [], []
    handed_video = handed_audio = 0
    for i, frame in enumerate(stream):
        seg.write(frame)
        handed_audio += frame.audio
        handed_video += not frame.audio
        if frame.audio or i < 6:  # after each frame was handed, past the first few
            continue
        v, a = on_file(path)
        held_video.append(handed_video - v)
        held_audio.append(handed_audio - a)
    seg.close()
    assert on_file(path) == (handed_video, handed_audio)  # close() writes what it held
    if sound:
        assert max(held_video) == 0, held_video
        assert max(held_audio) <= 1, held_audio
    else:  # no sound to hold back: the newest frame only (it was 10 s of video)
        assert max(held_video) == 1, held_video


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (ffmpeg) is not installed")
def test_ffprobe_reads_both_streams_in_sync_and_without_warnings(tmp_path: Path) -> None:
    video = video_frames(30, 2)
    audio, extradata = audio_frames(2)
    seg = SegmentFile(tmp_path, "media/x/a.ts", VideoFormat(W, H, 30, RATE, 1, extradata), ORIGIN)
    for frame in handed_in_order(video, audio, 80_000):
        seg.write(frame)
    seg.close()
    path = tmp_path / "media/x/a.ts"
    run = subprocess.run(
        ["ffprobe", "-v", "warning", "-of", "json", "-count_frames", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stderr == ""
    streams = {s["codec_type"]: s for s in json.loads(run.stdout)["streams"]}
    assert int(streams["video"]["nb_read_frames"]) == len(video)
    assert int(streams["audio"]["nb_read_frames"]) == len(audio)
    # Sync: the first sound and the first frame are as far apart as the camera stamped them.
    apart = float(streams["audio"]["start_time"]) - float(streams["video"]["start_time"])
    assert abs(apart - (audio[0].timestamp - video[0].timestamp) / 1e6) < 1e-4
