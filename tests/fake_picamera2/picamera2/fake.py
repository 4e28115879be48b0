"""The board behind the fake picamera2: the microphone, faults, and a log of encoder calls.

Set from the environment (a daemon under test is configured from outside, see README.md)
or, in-process, through the module attributes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

#: ``tone`` | ``silent`` | ``missing``: what the board's I2S microphone delivers.
MIC = os.environ.get("FAKE_PICAMERA2_MIC", "tone")
#: ALSA device names that exist on the board (asound.conf's PCMs).
ALSA_DEVICES = set(filter(None, os.environ.get("FAKE_PICAMERA2_ALSA", "bodycam_mic").split(",")))
#: A folder in which a file ``hang`` hangs the running camera (see README.md).
CONTROL = os.environ.get("FAKE_PICAMERA2_CONTROL", "")

#: When a list, every ``Encoder.outputframe`` call is appended to it (tests only).
CALL_LOG: list[dict[str, Any]] | None = None
_hang_requests = threading.Event()
opened_audio: list[dict[str, Any]] = []


def hang() -> None:
    """In-process: make the running camera stop delivering frames until restarted."""
    _hang_requests.set()


def take_hang() -> bool:
    """Called by the camera loop once per frame: whether a hang was asked for."""
    if _hang_requests.is_set():
        _hang_requests.clear()
        return True
    if CONTROL:
        path = Path(CONTROL) / "hang"
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
    return False


def open_audio_input(file: str, format: str | None = None, options: dict | None = None, **kw):
    """``av.open(**audio_input)`` on the board. An ALSA device that exists is the I2S
    microphone: s16 at the requested ``sample_rate``/``channels`` (ALSA's defaults 48000 and
    2), in periods of 512 frames paced in real time, pts in wall-clock time as ALSA's
    demuxer stamps them. Any other input is opened for real (and fails on a PC)."""
    import av

    opts = dict(options or {})
    opened_audio.append({"file": file, "format": format, "options": opts})
    if format != "alsa" or file not in ALSA_DEVICES or MIC == "missing":
        return av.open(file, format=format, options=opts, **kw)
    rate = int(opts.get("sample_rate", 48000))
    channels = int(opts.get("channels", 2))
    layout = "mono" if channels == 1 else "stereo"
    if MIC == "silent":
        source = f"anullsrc=r={rate}:cl={layout}:nb_samples=512,aformat=sample_fmts=s16"
    else:
        source = (
            f"sine=frequency=440:sample_rate={rate}:samples_per_frame=512,"
            f"aformat=sample_fmts=s16:channel_layouts={layout}"
        )
    graph = f"{source},arealtime,asetpts=RTCTIME*SR/1000000"
    return av.open(graph, format="lavfi")


def record_call(encoder: Any, frame, keyframe, timestamp, packet, audio) -> None:
    if CALL_LOG is not None:
        CALL_LOG.append(
            {
                "encoder": id(encoder),
                "thread": threading.current_thread().name,
                "frame": type(frame).__name__,
                "keyframe": keyframe,
                "timestamp": timestamp,
                "packet": type(packet).__name__,
                "audio": audio,
            }
        )
