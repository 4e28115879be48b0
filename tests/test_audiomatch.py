"""The announcement finder (dock.audiomatch): pure numpy, so properties over random
offsets, gains and noise, against the real announcement WAV's speech."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dock.audiomatch import MIN_TEMPLATE, THRESHOLD, correlation, find

WAV = Path(__file__).resolve().parents[1] / "firmware" / "assets" / "announcement.wav"
RATE = 16_000


def _speech() -> np.ndarray:
    with wave.open(str(WAV), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


SPEECH = _speech()
# 1.5 s of the sentence (its second word group): short enough for many examples.
TEMPLATE = SPEECH[2 * RATE : 2 * RATE + 3 * RATE // 2]
LENGTH = 4 * RATE


def street(seed: int, noise_db: float, n: int = LENGTH) -> np.ndarray:
    """A loud 440 Hz tone (as the simulator's scene) and white noise at ``noise_db``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    tone = 0.2 * np.sin(2 * np.pi * 440 * t + rng.uniform(0, 2 * np.pi))
    return (tone + rng.standard_normal(n) * 10 ** (noise_db / 20)).astype(np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offset=st.integers(0, LENGTH - len(TEMPLATE)),
    gain_db=st.floats(-30, 0),
    noise_db=st.floats(-60, -30),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_offset_found_is_the_offset_inserted(offset, gain_db, noise_db, seed) -> None:
    x = street(seed, noise_db)
    x[offset : offset + len(TEMPLATE)] += TEMPLATE * 10 ** (gain_db / 20)
    match = find(x, TEMPLATE)
    if match.heard:
        assert match.offset == offset
    if gain_db >= -12 and noise_db <= -35:  # the speaker as a camera hears it: always found
        assert match.heard and match.offset == offset, match


@settings(max_examples=40, deadline=None)
@given(noise_db=st.floats(-60, -20), seed=st.integers(0, 2**32 - 1))
def test_no_announcement_scores_below_the_threshold(noise_db, seed) -> None:
    assert not find(street(seed, noise_db), TEMPLATE).heard


@settings(max_examples=30, deadline=None)
@given(gain=st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_the_score_does_not_depend_on_the_recording_level(gain, seed) -> None:
    x = street(seed, -40)
    x[RATE : RATE + len(TEMPLATE)] += TEMPLATE * 0.25
    a, b = find(x, TEMPLATE), find(x * np.float32(gain), TEMPLATE)
    assert a.offset == b.offset and b.score == pytest.approx(a.score, rel=1e-4)


def test_the_template_itself_scores_one_and_other_speech_does_not() -> None:
    x = np.zeros(LENGTH, dtype=np.float32)
    x[5000 : 5000 + len(TEMPLATE)] = TEMPLATE
    match = find(x, TEMPLATE)
    assert match.offset == 5000 and match.score == pytest.approx(1.0, abs=1e-6)
    # The same voice saying other things (the sentence backwards: the same spectrum),
    # as loud as the officer's own voice, is not the announcement.
    other = street(1, -45, len(SPEECH) + 6 * RATE)
    other[3 * RATE : 3 * RATE + len(SPEECH)] += SPEECH[::-1]
    assert find(other, SPEECH).score < THRESHOLD / 2


def test_silence_and_short_recordings_match_nowhere() -> None:
    assert find(np.zeros(LENGTH, dtype=np.float32), TEMPLATE).score == 0.0
    assert find(TEMPLATE[:-1], TEMPLATE) == find(np.zeros(10), TEMPLATE)
    assert find(TEMPLATE[:-1], TEMPLATE).score == 0.0
    assert len(correlation(TEMPLATE, TEMPLATE)) == 1
    with pytest.raises(ValueError, match="at least"):
        find(np.zeros(LENGTH), np.ones(MIN_TEMPLATE - 1))
    with pytest.raises(ValueError, match="silent"):
        find(np.zeros(LENGTH), np.zeros(RATE))


def test_the_whole_announcement_in_five_minutes_is_found_quickly() -> None:
    """Overlap-save blocks: the cost grows with the recording, memory stays bounded."""
    x = street(7, -45, 5 * 60 * RATE)
    at = 3 * 60 * RATE + 12345
    x[at : at + len(SPEECH)] += SPEECH * 10 ** (-12 / 20)
    t0 = time.perf_counter()
    match = find(x, SPEECH)
    took = time.perf_counter() - t0
    assert match.offset == at and match.heard
    assert took < 20, f"{took:.1f} s for 5 minutes"  # ~1 s here; generous under load
