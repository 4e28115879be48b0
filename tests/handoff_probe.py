"""Run ``bodycam-recorder`` and tell a pipe every frame the camera hands to the writer.

Usage (by tests, not people): ``python tests/handoff_probe.py FD [recorder args...]``.

Why: a test that SIGKILLs the daemon needs to know which frames the recorder had been
handed before it died, to compare them with what the recovered segment holds. The daemon
cannot say after its death, and timing from the outside (the kill's instant on the device
clock) cannot tell a frame still in the camera's encoder from one in the writer's queue.
So the real ``QueueOutput.outputframe`` is wrapped: before each hand-off one line goes to
the inherited pipe ``FD`` (one ``write(2)`` of less than ``PIPE_BUF``: whole, and kept in
the pipe when the process is killed). Written *before* the frame is handed, so a frame is
never missing from the log; a kill between the line and the hand-off counts a frame that
was not handed yet (the strict side).

Line: ``V|A <timestamp us> <size> <crc32 of the bytes> <keyframe 0|1>``.
"""

from __future__ import annotations

import os
import sys
import zlib

from firmware import __main__ as recorder_main
from firmware.writer import QueueOutput


def install(fd: int) -> None:
    """Wrap ``QueueOutput.outputframe`` (the camera's thread calls it) to log to ``fd``."""
    original = QueueOutput.outputframe

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        data = frame if isinstance(frame, bytes) else bytes(frame)
        kind = "A" if audio else "V"
        line = f"{kind} {timestamp} {len(data)} {zlib.crc32(data)} {int(bool(keyframe))}\n"
        os.write(fd, line.encode())
        return original(self, data, keyframe, timestamp, packet, audio)

    QueueOutput.outputframe = outputframe


def main() -> int:
    fd = int(sys.argv[1])
    install(fd)
    return recorder_main.main(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
