"""The fake camera board (tests/fake_picamera2) for in-process tests and for daemons."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from evidence.osd import Overlay

FAKE = Path(__file__).parent / "fake_picamera2"
_MODULES = ("picamera2", "smbus2", "pyaudio", "fake_board")


def on_a_pi() -> bool:
    """True on a Raspberry Pi (the ``hardware``-marked tests run only there)."""
    model = Path("/proc/device-tree/model")
    return model.exists() and model.read_bytes().startswith(b"Raspberry Pi")


@contextlib.contextmanager
def fake_board_imported(**env: str) -> Iterator[object]:
    """``tests/fake_picamera2`` on ``sys.path`` (and its knobs in ``os.environ``) for the
    duration; yields ``picamera2.fake``. Afterwards the fake modules are forgotten, so no
    other test sees a picamera2 or an smbus2."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path.insert(0, str(FAKE))
    try:
        import picamera2.fake as fake

        yield fake
    finally:
        sys.path.remove(str(FAKE))
        for name in list(sys.modules):
            if name.split(".")[0] in _MODULES:
                del sys.modules[name]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def daemon_env(**extra: str) -> dict[str, str]:
    """The environment of a ``bodycam-recorder`` running on the fake board."""
    paths = [str(FAKE), os.environ.get("PYTHONPATH", "")]
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        BODYCAM_CAMERA="pi",
        GPIOZERO_PIN_FACTORY="fakeboard",
        **extra,
    )


def read_osd(frame: av.VideoFrame, id_length: int) -> tuple[str, str]:
    """The two burned-in lines a decoded frame shows."""
    plane = frame.to_ndarray(format="gray")
    return Overlay(frame.width, frame.height).read(plane, id_length)


def decode_audio(path: Path) -> tuple[int, int, np.ndarray]:
    """Every audio frame of a media file, decoded: (sample rate, channels, samples)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        ctx = stream.codec_context
        rate, channels = ctx.sample_rate, ctx.layout.nb_channels
    return rate, channels, np.concatenate(chunks) if chunks else np.zeros(0)
