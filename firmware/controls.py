"""Buttons, LEDs and buzzer through gpiozero, on the pins of ``hw.pinmap``.

The pin factory is gpiozero's: the default one on a camera, ``GPIOZERO_PIN_FACTORY=mock``
or an injected ``pin_factory`` in the simulator and tests. Nothing here chooses a factory,
and nothing falls back to another one: gpiozero raises ``BadPinFactory`` when it has none.

Threads: gpiozero calls ``when_pressed``/``when_released`` from its own thread (or, with the
mock factory, from whoever drives the pin). The callbacks here only stamp the edge with the
injected clock and hand it on: holds are measured on those stamps by the state machine, not
with gpiozero's real-time ``hold_time``, so a simulated clock far faster than real time
sees the holds an officer makes.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from gpiozero import LED, Button, Buzzer

from evidence.clock import Clock
from hw.pinmap import GPIO

_log = logging.getLogger(__name__)

BUTTON_PINS = {"record": "BTN_RECORD", "mark": "BTN_MARK", "function": "BTN_FUNCTION"}

# state -> (red, green, amber): True = on, "blink" = blinking, False = off
LED_STATES: dict[str, tuple[Any, Any, Any]] = {
    "ready": (False, True, False),
    "recording": (True, False, False),
    "stopping": ("blink", False, False),
    "fault": (False, False, True),
    "stoppage": (False, False, "blink"),
    "docked": (False, "blink", False),
}
# pattern -> (on seconds, off seconds, count)
BEEPS = {
    "start": (0.3, 0.1, 1),
    "stop": (0.1, 0.1, 2),
    "reminder": (0.05, 0.1, 1),
    "mark": (0.05, 0.05, 1),
    "fault": (0.4, 0.2, 3),
    "ack": (0.05, 0.05, 2),
}
# Counted patterns, "procedure-N" (N = the chosen procedure, 0 = none) and "moment-N" (the
# key moment marked): N // 5 long beeps, then N % 5 short ones, so 7 is long-short-short.
# One long low beep says "none". The green LED blinks with the buzzer.
LONG, SHORT, NONE = (0.6, 0.25), (0.12, 0.2), (1.0, 0.2)


def beep_steps(pattern: str) -> list[tuple[float, float, int]]:
    """``(on s, off s, count)`` steps of a pattern; ValueError for an unknown one."""
    if pattern in BEEPS:
        return [BEEPS[pattern]]
    name, _, number = pattern.rpartition("-")
    if name not in ("procedure", "moment") or not number.isdigit():
        raise ValueError(f"unknown beep pattern {pattern!r}")
    n = int(number)
    if n == 0:
        return [(*NONE, 1)]
    steps = [(*LONG, n // 5)] if n // 5 else []
    return steps + ([(*SHORT, n % 5)] if n % 5 else [])


class Buttons:
    """The three buttons (active low, internal pull-ups). ``on_edge(name, pressed, mono_ns)``
    is called from gpiozero's callback thread and must only enqueue."""

    def __init__(
        self,
        on_edge: Callable[[str, bool, int], None],
        clock: Clock,
        *,
        pin_factory: Any = None,
        bounce_s: float = 0.03,
    ) -> None:
        self._on_edge = on_edge
        self._clock = clock
        self.buttons: dict[str, Button] = {}
        try:
            for name, net in BUTTON_PINS.items():
                button = Button(
                    GPIO[net], pull_up=True, bounce_time=bounce_s or None, pin_factory=pin_factory
                )
                button.when_pressed = self._callback(name, True)
                button.when_released = self._callback(name, False)
                self.buttons[name] = button
        except Exception:
            self.close()
            raise

    def _callback(self, name: str, pressed: bool) -> Callable[[], None]:
        def edge() -> None:  # gpiozero's callback thread: stamp and enqueue only
            self._on_edge(name, pressed, self._clock.monotonic_ns())

        return edge

    def close(self) -> None:
        for button in self.buttons.values():
            button.close()
        self.buttons.clear()


class GpioIndicators:
    """``firmware.hardware.Indicators`` with gpiozero LEDs and a buzzer."""

    def __init__(self, *, pin_factory: Any = None) -> None:
        self.red = LED(GPIO["LED_RED"], pin_factory=pin_factory)
        self.green = LED(GPIO["LED_GREEN"], pin_factory=pin_factory)
        self.amber = LED(GPIO["LED_AMBER"], pin_factory=pin_factory)
        self.buzzer = Buzzer(GPIO["BUZZER"], pin_factory=pin_factory)
        self.state = ""
        # gpiozero's devices are not safe across threads (a blink started in one while
        # another stops it raises in either: once in the recorder's main loop, which
        # ended the recording). The main loop sets the LEDs and one beeper thread plays
        # the patterns; every device call holds this lock.
        self._leds = threading.RLock()
        self._patterns: queue.SimpleQueue = queue.SimpleQueue()
        self._beeper: threading.Thread | None = None
        self._closing = threading.Event()

    def show(self, state: str) -> None:
        if state not in LED_STATES:
            raise ValueError(f"unknown indicator state {state!r}")
        with self._leds:
            self.state = state
            for led, how in zip((self.red, self.green, self.amber), LED_STATES[state], strict=True):
                if how == "blink":
                    led.blink(0.25, 0.25)
                elif how:
                    led.on()
                else:
                    led.off()

    def beep(self, pattern: str) -> None:
        """Queue ``pattern``; the beeper thread plays patterns in turn, so the caller (the
        recorder's main loop) never waits."""
        steps = beep_steps(pattern)  # an unknown pattern raises here, in the caller
        with self._leds:
            if self._beeper is None:
                self._beeper = threading.Thread(target=self._play, name="beeper", daemon=True)
                self._beeper.start()
        self._patterns.put((pattern, steps))

    def _play(self) -> None:
        while (item := self._patterns.get()) is not None:
            pattern, steps = item
            counted = not (len(steps) == 1 and pattern in BEEPS)  # with the green LED
            try:
                for on, off, count in steps:
                    with self._leds:  # started under the lock, waited for outside it
                        if self._closing.is_set():
                            break
                        if counted:
                            self.green.blink(on, off, count, background=True)
                        self.buzzer.beep(on, off, count, background=True)
                    if self._closing.wait((on + off) * count):
                        break
                if counted and not self._closing.is_set():
                    self.show(self.state or "ready")  # the LEDs as they were
            except Exception as exc:  # closed meanwhile (shutdown): the pattern just ends
                _log.debug("beep pattern %s cut short: %s", pattern, exc)

    def close(self) -> None:
        self._closing.set()
        self._patterns.put(None)
        with self._leds:
            for device in (self.red, self.green, self.amber, self.buzzer):
                device.close()
