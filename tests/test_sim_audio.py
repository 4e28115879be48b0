"""The simulated microphone hears the simulated speaker (simulator.audio): mixed in at
the simulated instant the play started, attenuated by the room, over the noise floor;
muffled when the speaker is covered; nothing at all when the microphone has failed."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from dock.audiomatch import find
from simulator.audio import AAC_FRAME, AacTrack, FileSource, SimMicrophone, SimSpeaker
from simulator.camera import SimCamera
from simulator.clock import NS, SimClock
from simulator.faults import Faults, parse_fault

START = 1_800_000_000 * NS
RATE = 16_000
SHIPPED_WAV = Path(__file__).resolve().parents[1] / "firmware" / "assets" / "announcement.wav"
ANNOUNCEMENT = FileSource(SHIPPED_WAV, RATE).samples[0]


def decode(extradata: bytes, packets: list[tuple[int, bytes]], n: int) -> np.ndarray:
    """Decoded samples laid at their pts (samples since the track's start)."""
    dec = av.CodecContext.create("aac", "r")
    dec.extradata = extradata
    out = np.zeros(n + 4 * AAC_FRAME, dtype=np.float32)
    for pts, data in packets:
        for frame in dec.decode(av.Packet(data)):
            chunk = frame.to_ndarray()[0][: max(0, len(out) - pts)]
            if pts >= 0:
                out[pts : pts + len(chunk)] = chunk
    return out[:n]


def track_with_play(
    tmp: Path, play_at_s: float | None, seconds: float = 20.0, **mic: float
) -> tuple[AacTrack, SimSpeaker, list[tuple[int, bytes]], int | None]:
    """A 16 kHz track whose microphone hears a speaker that plays the announcement at
    ``play_at_s`` (None: never); returns the packets and the first sample of the play."""
    clock = SimClock(START)
    speaker = SimSpeaker(tmp / "speaker", clock=clock)
    track = AacTrack(RATE, microphone=SimMicrophone(speaker, **mic))
    track.origin_ns = clock.monotonic_ns()
    first = None
    if play_at_s is not None:
        clock.sleep(play_at_s)  # no camera drives this clock: the sleeper moves it on
        first = -(-(clock.monotonic_ns() - track.origin_ns) * RATE // NS)
        speaker.play_wav(SHIPPED_WAV)
    packets = [(p.pts, bytes(p)) for p in track.packets_until(int(seconds * RATE))]
    return track, speaker, packets, first


@pytest.mark.parametrize("play_at_s", [0.0, 2.0003, 5.5])
def test_the_microphone_hears_the_speaker_from_the_instant_it_played(tmp_path, play_at_s):
    track, _, packets, first = track_with_play(tmp_path, play_at_s)
    pcm = decode(track.extradata, packets, 20 * RATE)
    match = find(pcm, ANNOUNCEMENT)
    assert match.heard and match.offset == first, (match, first)
    assert 0.15 < match.score < 0.4  # -12 dB under the scene's tone: clear, not pristine


def test_splices_are_seamless_the_tone_before_and_after_is_replayed(tmp_path):
    """Outside the play the packets are the replayed tone, byte for byte, as with no
    speaker at all; a live encoder takes over for the play only."""
    track, _, played, first = track_with_play(tmp_path / "a", 4.0)
    _, _, quiet, _ = track_with_play(tmp_path / "b", None)
    assert [p for p, _ in played] == [p for p, _ in quiet]  # one packet per frame, no gap
    differ = [p for (p, a), (_, b) in zip(played, quiet, strict=True) if a != b]
    assert differ[0] == first // AAC_FRAME * AAC_FRAME
    end = first + len(ANNOUNCEMENT)
    assert end - AAC_FRAME <= differ[-1] <= end + 4 * AAC_FRAME
    a = decode(track.extradata, played, 20 * RATE)
    b = decode(track.extradata, quiet, 20 * RATE)
    assert np.max(np.abs(a[: differ[0]] - b[: differ[0]])) == 0.0
    # After the splice back: no click, and what differs is at the noise floor (the
    # decoder's noise substitution draws other random numbers from here on).
    after = a[differ[-1] + 2 * AAC_FRAME :] - b[differ[-1] + 2 * AAC_FRAME :]
    assert np.max(np.abs(after)) < 0.05 and np.sqrt(np.mean(after**2)) < 10 ** (-45 / 20)


def test_a_covered_speaker_is_not_heard_and_a_far_one_is_weaker(tmp_path):
    track, speaker, _, _ = track_with_play(tmp_path / "clear", 3.0)
    clock = SimClock(START)
    covered = SimSpeaker(tmp_path / "covered", clock=clock)
    faults = Faults(clock, speaker=covered)
    faults.start("speaker_covered")
    assert covered.covered and faults.active == {"speaker_covered"}
    track = AacTrack(RATE, microphone=SimMicrophone(covered))
    track.origin_ns = clock.monotonic_ns()
    clock.sleep(3.0)
    covered.play_wav(SHIPPED_WAV)
    faults.end("speaker_covered")  # too late: the play was muffled when it started
    assert not covered.covered
    pcm = decode(
        track.extradata, [(p.pts, bytes(p)) for p in track.packets_until(20 * RATE)], 20 * RATE
    )
    assert not find(pcm, ANNOUNCEMENT).heard
    far = track_with_play(tmp_path / "far", 3.0, room_gain_db=-24.0)
    near = track_with_play(tmp_path / "near", 3.0, room_gain_db=-6.0)
    scores = [
        find(decode(t.extradata, p, 20 * RATE), ANNOUNCEMENT).score for t, _, p, _ in (far, near)
    ]
    assert scores[0] < 0.1 < 0.3 < scores[1]


def test_a_failed_microphone_records_zeros_even_while_the_speaker_plays(tmp_path):
    clock = SimClock(START)
    speaker = SimSpeaker(tmp_path / "speaker", clock=clock)
    mic = SimMicrophone(speaker)
    track = AacTrack(RATE, microphone=mic)
    track.origin_ns = clock.monotonic_ns()
    first = track.packets_until(2 * RATE)  # the tone, while the microphone works
    mic.fail()
    clock.sleep(2.5)
    speaker.play_wav(SHIPPED_WAV)
    rest = track.packets_until(20 * RATE)
    pcm = decode(track.extradata, [(p.pts, bytes(p)) for p in first + rest], 20 * RATE)
    assert np.sqrt(np.mean(pcm[:RATE] ** 2)) > 0.05
    assert np.max(np.abs(pcm[3 * RATE :])) == 0.0


def test_the_camera_mixes_on_its_own_timeline(tmp_path):
    """Through the SimCamera: packets stamped on the simulated monotonic clock carry the
    announcement from the monotonic instant the speaker started it."""
    clock = SimClock(START)
    speaker = SimSpeaker(tmp_path / "speaker", clock=clock)
    camera = SimCamera(clock, fps=10, audio=True, microphone=SimMicrophone(speaker))
    t0 = clock.monotonic_ns()
    clock.at(t0 + int(3.3 * NS), lambda: speaker.start_wav(SHIPPED_WAV))
    calls: list[tuple[int, bytes]] = []

    class Output:
        def start(self) -> None: ...

        def stop(self) -> None: ...

        def outputframe(self, frame, keyframe, timestamp, packet, audio) -> None:
            if audio:
                calls.append((packet.pts, frame, timestamp))

    camera.start(Output())
    assert camera.wait_frames(200, timeout=120)
    camera.stop()
    first_us = calls[0][2] - calls[0][0] * 1_000_000 // RATE  # the track's sample 0
    pcm = decode(camera.audio_extradata, [(p, f) for p, f, _ in calls], 19 * RATE)
    match = find(pcm, ANNOUNCEMENT)
    played_mono = speaker._plays[0].mono_ns
    assert match.heard
    assert abs(first_us * 1000 + match.offset * NS // RATE - played_mono) < NS // RATE + 1000
    assert speaker.played[0][0] == played_mono + clock.utc_offset_ns()


def test_speaker_covered_is_a_fault_of_the_schedule_and_needs_a_speaker():
    assert str(parse_fault("speaker_covered@50s+30s")) == "speaker_covered@50s+30s"
    with pytest.raises(ValueError, match="needs a simulated speaker"):
        Faults(SimClock(START)).start("speaker_covered")
