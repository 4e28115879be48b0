"""Where a known sound (the Art. 6 announcement) starts in a recording, and how clearly.

Pure: numpy arrays in, a :class:`Match` out; no files, no decoding (that is
:mod:`dock.audiocheck`). Both signals are mono, at the same sample rate.

The method is normalised cross-correlation, computed with FFTs (overlap-save, so memory
stays bounded and a 5-minute recording takes a fraction of a second):

- both signals are pre-emphasised first (``y[n] = x[n] - 0.97 x[n-1]``), as speech
  front-ends do: speech's identity sits in its formants (0.5-4 kHz) while a street's
  energy (traffic, wind, hum; the simulator's 440 Hz tone) sits low, and would otherwise
  dominate the recording's energy and pull the score down;
- the score at each lag is the Pearson correlation between the template and the
  recording's window of the same length at that lag: 1.0 is the template itself at any
  gain, about 0 is unrelated sound. The gain at which the speaker reached the microphone
  does not matter; what matters is how much of the window's energy is the announcement.

Threshold (``THRESHOLD``), measured by ``scripts/bench-announcement`` through the simulated
microphone and its AAC encoder (16 kHz, 32 kbit/s) over one-minute recordings, 20 each
(figures in docs/dock.md): the announcement heard at -12 dB over the street scores
0.20-0.22 (0.10 in a street 20 dB noisier); a covered speaker (-40 dB, low-passed) and
no announcement at all score 0.005 (what chance alone gives over a minute of lags);
other speech in the same voice scores 0.010-0.013, 0.026-0.031 when as loud as the
officer's own voice. 0.08 sits near the geometric middle of the strongest non-match
(0.031) and the nominal clear case (0.20): a factor of 2.5 each way. It is crossed at a
room gain of about -21 dB: an announcement more than 9 dB weaker than a camera's normal
is "not heard".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.08
PRE_EMPHASIS = 0.97
MIN_TEMPLATE = 256  # samples: shorter templates match anything


@dataclass(frozen=True)
class Match:
    """The best lag: the template starts ``offset`` samples into the recording."""

    offset: int
    score: float

    @property
    def heard(self) -> bool:
        return self.score >= THRESHOLD


def pre_emphasis(x: np.ndarray, alpha: float = PRE_EMPHASIS) -> np.ndarray:
    """``x[n] - alpha x[n-1]`` in float64 (the first sample kept as it is)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    if len(x):
        y[0] = x[0]
        y[1:] = x[1:] - alpha * x[:-1]
    return y


def correlation(recording: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The normalised cross-correlation at every lag ``0..len(recording)-len(template)``
    (pre-emphasised signals; 0 where the recording's window is silent)."""
    x = pre_emphasis(recording)
    t = pre_emphasis(template)
    m, n = len(t), len(x)
    if m < MIN_TEMPLATE:
        raise ValueError(f"template of {m} samples: at least {MIN_TEMPLATE} are needed")
    if n < m:
        return np.zeros(0)
    t = t - t.mean()
    t_norm = float(np.linalg.norm(t))
    if t_norm == 0.0:
        raise ValueError("the template is silent")
    lags = n - m + 1
    # FFT blocks of 4x the template (rounded up to a power of 2): the fastest per lag here
    # (2x wastes half of each block on the overlap, 8x pays for its larger FFTs).
    size = 1 << max(int(np.ceil(np.log2(4 * m))), 12)
    hop = size - m + 1
    spectrum = np.conj(np.fft.rfft(t, size))
    raw = np.empty(lags)
    for start in range(0, lags, hop):
        block = x[start : start + size]
        c = np.fft.irfft(np.fft.rfft(block, size) * spectrum, size)
        take = min(hop, lags - start)
        raw[start : start + take] = c[:take]
    # The window's energy about its mean, from running sums (float64: exact enough for
    # hours of 16-bit audio).
    s1 = np.concatenate(([0.0], np.cumsum(x)))
    s2 = np.concatenate(([0.0], np.cumsum(x * x)))
    total = s1[m:] - s1[:-m]
    energy = (s2[m:] - s2[:-m]) - total * total / m
    floor = 1e-12 * m  # below this the window is digital silence (rounding of zeros)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = raw / (np.sqrt(np.maximum(energy, 0.0)) * t_norm)
    score[energy <= floor] = 0.0
    return score


def find(recording: np.ndarray, template: np.ndarray) -> Match:
    """Where ``template`` fits ``recording`` best, and how well (see the module's text).
    A recording shorter than the template matches nowhere: offset 0, score 0."""
    score = correlation(recording, template)
    if len(score) == 0:
        return Match(0, 0.0)
    best = int(np.argmax(score))
    return Match(best, float(score[best]))
