"""The simulated microphone and speaker, and the sound the camera's microphone hears.

- ``open_audio_source(path_or_None, sample_rate, channels)`` -> a source with
  ``read(n) -> float32 array (channels, n)`` in -1..1, looping forever: a synthetic tone
  (a 440 Hz note whose loudness swells twice a second, so the track is not constant) or a
  WAV/any audio file (decoded and resampled with PyAV once, then looped).
  :class:`simulator.camera.SimCamera` reads it and encodes AAC.
- :class:`SimMicrophone` (``firmware.hardware.Microphone``): ``healthy()``; the fault
  ``fail()`` / ``recover()``. While failed, the camera records silence, as a dead I2S
  microphone delivers zeros (the room noise and the speaker too). It also stands for the
  room: it hears the camera's own speaker (``speaker=``), attenuated by ``room_gain_db``
  (default -12 dB: the speaker a hand's width from the microphone, the sound reflected
  off the body and the street), over a noise floor of ``noise_db`` dBFS RMS (default
  -45: a quiet street).
- :class:`SimSpeaker` (``firmware.hardware.Speaker``): ``start_wav(path)`` "plays" a WAV by
  copying it into ``out_dir`` (numbered, so each play is kept); given a clock, the
  playback's ``wait()`` lets the WAV's duration pass in simulated time; ``played`` lists
  (simulated UTC ns, source path, copy path) for each play. ``sound(mono_ns, count, rate)`` is what it emits from that
  monotonic instant on (resampled to ``rate``), so the microphone hears each play from the
  instant it started. The fault ``cover()`` / ``uncover()`` (a hand or a pocket over the
  grille): a play started while covered comes out muffled, low-passed at 300 Hz and 28 dB
  quieter (with the room's -12 dB, about -40 dB at the microphone).
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
NS = 1_000_000_000
ROOM_GAIN_DB = -12.0  # speaker -> microphone on the officer's chest
NOISE_DB = -45.0  # the room's noise floor at the microphone, dBFS RMS
COVERED_DB = -28.0  # a covered speaker: this much quieter ...
COVERED_HZ = 300.0  # ... and nothing much above this frequency


def db(gain_db: float) -> float:
    """Amplitude factor of a gain in dB."""
    return float(10.0 ** (gain_db / 20.0))


def muffle(samples: np.ndarray, rate: int) -> np.ndarray:
    """What a covered speaker lets through: a low pass (second order, zero phase, in the
    frequency domain) at ``COVERED_HZ`` and ``COVERED_DB`` less."""
    spectrum = np.fft.rfft(samples.astype(np.float64))
    freq = np.fft.rfftfreq(len(samples), 1.0 / rate)
    spectrum *= 1.0 / (1.0 + (freq / COVERED_HZ) ** 4)
    return (np.fft.irfft(spectrum, len(samples)) * db(COVERED_DB)).astype(np.float32)


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

    @property
    def samples(self) -> np.ndarray:
        """The whole file, (channels, n) float32."""
        return self._samples

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
    track's start, which is the monotonic instant ``origin_ns``; the camera sets it) and
    returns the new ``av.Packet`` objects, ``pts`` in samples (``time_base``
    1/sample_rate); ``skip_to(sample)`` jumps over samples that were never heard (a frozen
    camera). ``extradata`` is the AudioSpecificConfig a muxer needs.

    Speed: the encoder costs ~0.2 ms per 1024-sample frame here, more than a small video
    frame. The synthetic tone (with the room's noise floor, one loop of it) is exactly
    periodic, so its packets are periodic too: they are encoded once at start (three
    loops, the last one kept, after the encoder has settled) and then replayed. While the
    microphone hears the speaker, a live encoder takes over: started two frames early on
    the same tone (so the decoder's overlap with the replayed packets is seamless), fed
    the tone, fresh noise and the speaker, and dropped three frames after the speaker went
    quiet. A file source is encoded live throughout. While the microphone has failed,
    encoded silence is delivered.
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
        self.origin_ns = 0  # monotonic time of sample 0
        self._encoder = self._open()
        self.extradata = bytes(self._encoder.extradata or b"")
        self._time_base = Fraction(1, sample_rate)
        self._next = 0  # pts of the next packet to hand out
        self._fed = 0  # live: pts of the next frame to feed the encoder
        self._live: FileSource | None = None
        self._tone: list[bytes] = []
        self._silence: list[bytes] = []
        self._mixer: av.CodecContext | None = None  # live encoder while the speaker is heard
        self._quiet = 0  # frames fed to the mixer since the speaker was last heard
        if source is None:
            tone = ToneSource(sample_rate, channels)
            self._scene = tone.read(tone.loop)  # one loop, (channels, loop)
            self._floor = self.microphone.floor((channels, tone.loop))
            self._tone = self._encode_loop(self._scene + self._floor)
            self._silence = self._encode_loop(None)
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
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=self.layout
        )
        frame.sample_rate = self.sample_rate
        frame.pts = pts
        return frame

    def _encode_loop(self, loop: np.ndarray | None) -> list[bytes]:
        """Packets of the loop's 2nd..3rd repetition: one per AAC frame of the loop."""
        enc = self._open()
        count = self._scene.shape[1] // AAC_FRAME
        out: dict[int, bytes] = {}
        for i in range(3 * count):
            k = i % count
            if loop is not None:
                samples = loop[:, k * AAC_FRAME : (k + 1) * AAC_FRAME]
            else:
                samples = np.zeros((self.channels, AAC_FRAME), dtype=np.float32)
            for packet in enc.encode(self._frame(samples, i * AAC_FRAME)):
                out[packet.pts // AAC_FRAME] = bytes(packet)
        for packet in enc.encode(None):
            out[packet.pts // AAC_FRAME] = bytes(packet)
        return [out[2 * count + k] for k in range(count)]

    def _room(self, pts: int) -> np.ndarray | None:
        """What the microphone hears of the speaker in the frame at ``pts``, or None."""
        mono = self.origin_ns + pts * NS // self.sample_rate
        return self.microphone.room(mono, AAC_FRAME, self.sample_rate)

    def _scene_at(self, pts: int) -> np.ndarray:
        k = (pts // AAC_FRAME) % (self._scene.shape[1] // AAC_FRAME)
        return self._scene[:, k * AAC_FRAME : (k + 1) * AAC_FRAME]

    def skip_to(self, sample: int) -> None:
        """Resume at ``sample`` (rounded up to a whole frame): the gap was never heard."""
        sample = -(-sample // AAC_FRAME) * AAC_FRAME
        if sample > self._next:
            self._mixer = None  # a gap: the live encoder's overlap would be wrong
        self._next = max(self._next, sample)
        self._fed = max(self._fed, sample)

    def packets_until(self, sample: int) -> list[av.Packet]:
        """Packets covering everything before ``sample`` (pts < sample)."""
        if self._live is None:
            return self._tone_until(sample)
        packets: list[av.Packet] = []
        # Live: the encoder holds one frame back (its first packet is a priming one at
        # pts -1024), so feed until a packet at or past ``sample`` is due.
        while self._next < sample:
            samples = self._live.read(AAC_FRAME)
            room = self._room(self._fed)
            if room is not None:
                samples = samples + room
            if not self.microphone.healthy():
                samples = np.zeros_like(samples)
            frame = self._frame(samples, self._fed)
            self._fed += AAC_FRAME
            for packet in self._encoder.encode(frame):
                packets.append(packet)
                self._next = packet.pts + AAC_FRAME
        return packets

    def _tone_until(self, sample: int) -> list[av.Packet]:
        packets: list[av.Packet] = []
        while self._next < sample:
            if self._mixer is None:
                if self._room(self._next) is None:
                    healthy = self.microphone.healthy()
                    loop = self._tone if healthy else self._silence
                    packet = av.Packet(loop[(self._next // AAC_FRAME) % len(loop)])
                    packet.pts = packet.dts = self._next
                    packet.duration = AAC_FRAME
                    packet.time_base = self._time_base
                    packets.append(packet)
                    self._next += AAC_FRAME
                    continue
                self._start_mixer()
            packets += self._mix_one()
        return packets

    def _start_mixer(self) -> None:
        """A live encoder, warmed up on the two replayed frames before ``_next``."""
        self._mixer = self._open()
        self._quiet = 0
        for pts in (self._next - 2 * AAC_FRAME, self._next - AAC_FRAME):
            samples = self._scene_at(pts) + self._floor_at(pts)
            if not self.microphone.healthy():
                samples = np.zeros_like(samples)
            list(self._mixer.encode(self._frame(samples, pts)))  # already delivered
        self._fed = self._next

    def _floor_at(self, pts: int) -> np.ndarray:
        k = (pts // AAC_FRAME) % (self._floor.shape[1] // AAC_FRAME)
        return self._floor[:, k * AAC_FRAME : (k + 1) * AAC_FRAME]

    def _mix_one(self) -> list[av.Packet]:
        """Feed the mixer one frame: the tone, fresh noise and what the speaker emits."""
        assert self._mixer is not None
        pts = self._fed
        room = self._room(pts)
        self._quiet = 0 if room is not None else self._quiet + 1
        samples = self._scene_at(pts) + self.microphone.noise((self.channels, AAC_FRAME))
        if room is not None:
            samples = samples + room
        if not self.microphone.healthy():
            samples = np.zeros_like(samples)
        self._fed += AAC_FRAME
        out = []
        for packet in self._mixer.encode(self._frame(samples, pts)):
            if packet.pts >= self._next:
                out.append(packet)
                self._next = packet.pts + AAC_FRAME
        if self._quiet >= 3 and self._next == self._fed - 2 * AAC_FRAME:
            # The speaker's last sound is out. The encoder holds two frames back (it
            # needs the next frame's samples for the current packet); those and the one
            # before them are the plain tone, which the replayed packets carry from here.
            self._mixer = None
            self._fed = self._next
        return out


class SimMicrophone:
    """The microphone's health, with a fault switch (thread-safe: an Event), and the room
    it hears: the speaker (attenuated by ``room_gain_db``) over a noise floor."""

    def __init__(
        self,
        speaker: SimSpeaker | None = None,
        *,
        room_gain_db: float = ROOM_GAIN_DB,
        noise_db: float = NOISE_DB,
        seed: int = 0,
    ) -> None:
        self._failed = threading.Event()
        self.speaker = speaker
        self.room_gain_db = room_gain_db
        self.noise_db = noise_db
        self._rng = np.random.default_rng(seed)
        self._seed = seed

    def healthy(self) -> bool:
        return not self._failed.is_set()

    def fail(self) -> None:
        """Fault: the microphone stops delivering sound (recordings carry silence)."""
        _log.info("microphone failed")
        self._failed.set()

    def recover(self) -> None:
        _log.info("microphone recovered")
        self._failed.clear()

    def room(self, mono_ns: int, count: int, rate: int) -> np.ndarray | None:
        """The speaker as heard here for ``count`` samples from ``mono_ns``, or None."""
        if self.speaker is None:
            return None
        sound = self.speaker.sound(mono_ns, count, rate)
        return None if sound is None else sound * np.float32(db(self.room_gain_db))

    def noise(self, shape: tuple[int, int]) -> np.ndarray:
        """Fresh noise at the floor's level (white, Gaussian)."""
        scale = db(self.noise_db)
        return (self._rng.standard_normal(shape) * scale).astype(np.float32)

    def floor(self, shape: tuple[int, int]) -> np.ndarray:
        """One loop of noise for the replayed tone (the same for every track)."""
        rng = np.random.default_rng(self._seed + 1)
        return (rng.standard_normal(shape) * db(self.noise_db)).astype(np.float32)


def wav_duration(path: str | Path) -> float:
    """Length of a PCM WAV file in seconds (raises ValueError for anything else)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from None


class _Play:
    """One play of a WAV: when it started (monotonic) and its sound per sample rate."""

    def __init__(self, mono_ns: int, path: Path, duration_s: float, covered: bool) -> None:
        self.mono_ns = mono_ns
        self.path = path
        self.end_ns = mono_ns + int(duration_s * NS)
        self.covered = covered
        self._pcm: dict[int, np.ndarray] = {}

    def pcm(self, rate: int) -> np.ndarray:
        """Mono float32 at ``rate`` (decoded and resampled once per rate)."""
        if rate not in self._pcm:
            pcm = FileSource(self.path, rate, 1).samples[0]
            self._pcm[rate] = muffle(pcm, rate) if self.covered else pcm
        return self._pcm[rate]


class _Playback:
    """A ``firmware.hardware.Playback`` on the twin: the play ends when the clock gets there."""

    def __init__(self, clock, end_ns: int | None) -> None:
        self.clock = clock
        self.end_ns = end_ns

    def wait(self) -> None:
        if self.end_ns is not None:
            self.clock.sleep_until(self.end_ns)


class SimSpeaker:
    """A speaker that keeps a copy of everything it plays, and what it emits when."""

    def __init__(self, out_dir: str | Path, clock=None) -> None:
        self.out_dir = Path(out_dir)
        self.clock = clock
        self.played: list[tuple[int | None, Path, Path]] = []
        self._plays: list[_Play] = []
        self._covered = threading.Event()
        self._dead = threading.Event()
        self._lock = threading.Lock()

    @property
    def covered(self) -> bool:
        return self._covered.is_set()

    def cover(self) -> None:
        """Fault: the grille is covered; what plays from now on comes out muffled."""
        _log.info("speaker covered")
        self._covered.set()

    def uncover(self) -> None:
        _log.info("speaker uncovered")
        self._covered.clear()

    def fail(self) -> None:
        """Fault: the speaker is dead (a broken coil, a cut wire): plays raise OSError."""
        _log.info("speaker failed")
        self._dead.set()

    def recover(self) -> None:
        _log.info("speaker recovered")
        self._dead.clear()

    def play_wav(self, path: str | Path) -> None:
        """Play ``path`` to the end (tests' shorthand for ``start_wav(path).wait()``)."""
        self.start_wav(path).wait()

    def start_wav(self, path: str | Path) -> _Playback:
        """Start playing ``path`` at this simulated instant, without waiting for its end:
        quick enough for the recorder's main loop and for a ``SimClock.at`` timer, which a
        fast clock stands still for."""
        if self._dead.is_set():
            raise OSError("the speaker gives no sound (simulated fault)")
        source = Path(path)
        with self._lock:
            # The instant first: reading and copying release the GIL, and a fast clock
            # moves on meanwhile.
            mono = self.clock.monotonic_ns() if self.clock is not None else None
            duration = wav_duration(source)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            stamp = None if mono is None else mono + self.clock.utc_offset_ns()
            copy = self.out_dir / f"played-{len(self.played) + 1:04d}-{source.name}"
            shutil.copyfile(source, copy)
            self.played.append((stamp, source, copy))
            if mono is not None:
                self._plays.append(_Play(mono, copy, duration, self.covered))
        _log.info("speaker played %s (%.1f s%s)", source.name, duration, ", covered" * self.covered)
        end = None if mono is None else mono + int(duration * NS)
        return _Playback(self.clock, end)

    def sound(self, mono_ns: int, count: int, rate: int) -> np.ndarray | None:
        """What the speaker emits for ``count`` samples at ``rate`` from ``mono_ns``
        (mono float32), or None while it is silent. Called from the camera's thread."""
        end_ns = mono_ns + count * NS // rate
        with self._lock:
            plays = [p for p in self._plays[-4:] if p.mono_ns < end_ns and p.end_ns > mono_ns]
        if not plays:
            return None
        out = np.zeros(count, dtype=np.float32)
        for play in plays:
            pcm = play.pcm(rate)
            first = (mono_ns - play.mono_ns) * rate // NS  # sample of the play at out[0]
            lo, hi = max(0, -first), min(count, len(pcm) - first)
            if hi > lo:
                out[lo:hi] += pcm[first + lo : first + hi]
        return out
