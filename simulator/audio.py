"""The simulated microphone and speaker, and the sound the camera's microphone hears.

- ``open_audio_source(path_or_None, sample_rate, channels)`` -> a source with
  ``read(n) -> float32 array (channels, n)`` in -1..1, looping forever: a synthetic tone
  (a 440 Hz note whose loudness swells twice a second, so the track is not constant) or a
  WAV/any audio file (decoded and resampled with PyAV once, then looped).
  :class:`simulator.camera.SimCamera` reads it and encodes AAC.
- :class:`SimMicrophone` (``firmware.hardware.Microphone``): ``healthy()``; the fault
  ``fail()`` / ``recover()``. While failed, the camera records silence, as a dead I2S
  microphone delivers zeros.
- :class:`SimSpeaker` (``firmware.hardware.Speaker``): ``play_wav(path)`` "plays" a WAV by
  copying it into ``out_dir`` (numbered, so each play is kept) and, given a clock, lets the
  WAV's duration pass in simulated time; ``played`` lists (simulated UTC ns, source path,
  copy path) for each play.
"""

from __future__ import annotations

import logging
import shutil
import threading
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_log = logging.getLogger(__name__)

AAC_FRAME = 1024  # samples per AAC-LC frame


class ToneSource:
    """A looping synthetic tone, precomputed for one loop and sliced per read.

    The loop is ``loop`` samples long (default: about one second, a whole number of AAC
    frames); the note's frequency is nudged so that the loop holds whole cycles, so the
    sound is exactly periodic and the loop seam is inaudible."""

    def __init__(
        self, sample_rate: int, channels: int = 1, frequency: float = 440.0, loop: int | None = None
    ) -> None:
        loop = loop or AAC_FRAME * max(1, round(sample_rate / AAC_FRAME))
        self.loop = loop
        cycles = max(1, round(frequency * loop / sample_rate))
        self.frequency = cycles * sample_rate / loop
        phase = np.arange(loop, dtype=np.float64) / loop
        envelope = 0.15 + 0.15 * (1 - np.cos(2 * np.pi * 2 * phase))  # swells twice a loop
        tone = (envelope * np.sin(2 * np.pi * cycles * phase)).astype(np.float32)
        self._loop = np.tile(tone, (channels, 2))  # two loops, so any read fits unwrapped
        self._period = loop
        self._pos = 0

    def read(self, count: int) -> np.ndarray:
        if count > self._period:
            raise ValueError("read at most one loop at a time")
        start = self._pos
        self._pos = (start + count) % self._period
        return self._loop[:, start : start + count].copy()


class FileSource:
    """An audio file decoded once to float32 at the wanted rate and channel count, looped."""

    def __init__(self, path: Path, sample_rate: int, channels: int = 1) -> None:
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        chunks = []
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        if not chunks:
            raise ValueError(f"{path}: no audio samples")
        self._samples = np.concatenate(chunks, axis=1).astype(np.float32)
        self._pos = 0

    def read(self, count: int) -> np.ndarray:
        total = self._samples.shape[1]
        out = np.empty((self._samples.shape[0], count), dtype=np.float32)
        done = 0
        while done < count:
            take = min(count - done, total - self._pos)
            out[:, done : done + take] = self._samples[:, self._pos : self._pos + take]
            done += take
            self._pos = (self._pos + take) % total
        return out


def open_audio_source(path: str | Path | None, sample_rate: int, channels: int = 1):
    """The sound the microphone hears: a tone, or the given audio file looped."""
    if path is None:
        return ToneSource(sample_rate, channels)
    return FileSource(Path(path), sample_rate, channels)


class AacTrack:
    """The microphone's sound encoded as AAC-LC packets (PyAV's native ``aac`` encoder).

    ``packets_until(sample)`` encodes up to sample index ``sample`` (samples since the
    track's start) and returns the new ``av.Packet`` objects, ``pts`` in samples
    (``time_base`` 1/sample_rate); ``skip_to(sample)`` jumps over samples that were never
    heard (a frozen camera). ``extradata`` is the AudioSpecificConfig a muxer needs.

    Speed: the encoder costs ~0.2 ms per 1024-sample frame here, more than a small video
    frame. The synthetic tone is exactly periodic, so its packets are periodic too: they
    are encoded once at start (three loops, the last one kept, after the encoder has
    settled) and then replayed. A file source is encoded live. While the microphone has
    failed, encoded silence is delivered.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int = 1,
        bitrate: int = 32_000,
        source: str | Path | None = None,
        microphone: SimMicrophone | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.bitrate = bitrate
        self.microphone = microphone if microphone is not None else SimMicrophone()
        self.frame_size = AAC_FRAME
        self.layout = "mono" if channels == 1 else "stereo"
        self._encoder = self._open()
        self.extradata = bytes(self._encoder.extradata or b"")
        self._time_base = Fraction(1, sample_rate)
        self._next = 0  # pts of the next packet to hand out
        self._fed = 0  # live: pts of the next frame to feed the encoder
        self._live: FileSource | None = None
        self._tone: list[bytes] = []
        self._silence: list[bytes] = []
        if source is None:
            tone = ToneSource(sample_rate, channels)
            self._tone = self._encode_loop(tone, tone.loop)
            self._silence = self._encode_loop(None, tone.loop)
        else:
            self._live = FileSource(Path(source), sample_rate, channels)
            self._next = -AAC_FRAME  # the live encoder's priming packet comes first

    def _open(self) -> av.CodecContext:
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate = self.sample_rate
        enc.layout = self.layout
        enc.format = "fltp"
        enc.bit_rate = self.bitrate
        enc.open()
        return enc

    def _frame(self, samples: np.ndarray, pts: int) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.layout)
        frame.sample_rate = self.sample_rate
        frame.pts = pts
        return frame

    def _encode_loop(self, tone: ToneSource | None, loop: int) -> list[bytes]:
        """Packets of the loop's 2nd..3rd repetition: loop/AAC_FRAME of them."""
        enc = self._open()
        count = loop // AAC_FRAME
        out: dict[int, bytes] = {}
        for i in range(3 * count):
            if tone is not None:
                samples = tone.read(AAC_FRAME)
            else:
                samples = np.zeros((self.channels, AAC_FRAME), dtype=np.float32)
            for packet in enc.encode(self._frame(samples, i * AAC_FRAME)):
                out[packet.pts // AAC_FRAME] = bytes(packet)
        for packet in enc.encode(None):
            out[packet.pts // AAC_FRAME] = bytes(packet)
        return [out[2 * count + k] for k in range(count)]

    def skip_to(self, sample: int) -> None:
        """Resume at ``sample`` (rounded up to a whole frame): the gap was never heard."""
        sample = -(-sample // AAC_FRAME) * AAC_FRAME
        self._next = max(self._next, sample)
        self._fed = max(self._fed, sample)

    def packets_until(self, sample: int) -> list[av.Packet]:
        """Packets covering everything before ``sample`` (pts < sample)."""
        packets: list[av.Packet] = []
        if self._live is None:
            healthy = self.microphone.healthy()
            loop = self._tone if healthy else self._silence
            while self._next < sample:
                packet = av.Packet(loop[(self._next // AAC_FRAME) % len(loop)])
                packet.pts = packet.dts = self._next
                packet.duration = AAC_FRAME
                packet.time_base = self._time_base
                packets.append(packet)
                self._next += AAC_FRAME
            return packets
        # Live: the encoder holds one frame back (its first packet is a priming one at
        # pts -1024), so feed until a packet at or past ``sample`` is due.
        while self._next < sample:
            samples = self._live.read(AAC_FRAME)
            if not self.microphone.healthy():
                samples = np.zeros_like(samples)
            frame = self._frame(samples, self._fed)
            self._fed += AAC_FRAME
            for packet in self._encoder.encode(frame):
                packets.append(packet)
                self._next = packet.pts + AAC_FRAME
        return packets


class SimMicrophone:
    """The microphone's health, with a fault switch (thread-safe: an Event)."""

    def __init__(self) -> None:
        self._failed = threading.Event()

    def healthy(self) -> bool:
        return not self._failed.is_set()

    def fail(self) -> None:
        """Fault: the microphone stops delivering sound (recordings carry silence)."""
        _log.info("microphone failed")
        self._failed.set()

    def recover(self) -> None:
        _log.info("microphone recovered")
        self._failed.clear()


def wav_duration(path: str | Path) -> float:
    """Length of a PCM WAV file in seconds (raises ValueError for anything else)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from None


class SimSpeaker:
    """A speaker that keeps a copy of everything it plays."""

    def __init__(self, out_dir: str | Path, clock=None) -> None:
        self.out_dir = Path(out_dir)
        self.clock = clock
        self.played: list[tuple[int | None, Path, Path]] = []
        self._lock = threading.Lock()

    def play_wav(self, path: str | Path) -> None:
        """Play ``path`` to the end: copy it, then let its duration pass on the clock."""
        source = Path(path)
        duration = wav_duration(source)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            copy = self.out_dir / f"played-{len(self.played) + 1:04d}-{source.name}"
            shutil.copyfile(source, copy)
            stamp = self.clock.time_ns() if self.clock is not None else None
            self.played.append((stamp, source, copy))
        _log.info("speaker played %s (%.1f s)", source.name, duration)
        if self.clock is not None:
            self.clock.sleep(duration)
