"""The camera board's buttons for a daemon under test: gpiozero's MockFactory, with a
thread that presses buttons on command.

``GPIOZERO_PIN_FACTORY=fakeboard`` (registered by ``fake_board-0.dist-info``) and
``FAKE_BOARD_FIFO=<path of a FIFO>``; each line written to the FIFO is a command:
``press <NET> <seconds>`` drives the button's pin low (pressed: the buttons are active low
with pull-ups) for that long, then high again. ``NET`` is a ``hw.pinmap.GPIO`` name.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from gpiozero.pins.mock import MockFactory

from hw.pinmap import GPIO

_log = logging.getLogger(__name__)


class FakeBoardFactory(MockFactory):
    def __init__(self) -> None:
        super().__init__()
        path = os.environ.get("FAKE_BOARD_FIFO", "")
        if path:
            threading.Thread(
                target=self._serve, args=(path,), daemon=True, name="fake-board"
            ).start()

    def _serve(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR)  # never sees EOF: the test may open and close it often
        with os.fdopen(fd, "r") as fifo:
            for line in fifo:
                words = line.split()
                if len(words) == 3 and words[0] == "press" and words[1] in GPIO:
                    pin = self.pin(GPIO[words[1]])
                    pin.drive_low()
                    time.sleep(float(words[2]))
                    pin.drive_high()
                    _log.info("fake board: pressed %s for %s s", words[1], words[2])
                else:
                    _log.error("fake board: not a command: %r", line)
