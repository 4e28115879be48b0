"""The LEDs and the buzzer are driven from the recorder's main loop and from the thread
that plays counted patterns; gpiozero's devices are not safe across threads, and a race
between them once killed the main loop (`cannot join thread before it is started`) and
with it the recording. Every LED call now holds one lock and one thread plays the buzzer,
and an indicator that fails is logged, never fatal."""

from __future__ import annotations

import threading

from gpiozero.pins.mock import MockFactory

from firmware.controls import LED_STATES, GpioIndicators


def test_shows_and_counted_patterns_from_two_threads_raise_nowhere() -> None:
    errors: list[BaseException] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    factory = MockFactory()
    indicators = GpioIndicators(pin_factory=factory)
    states = [s for s in LED_STATES if s != "docked"] * 40
    try:
        for i, state in enumerate(states):
            if i % 3 == 0:
                indicators.beep(f"procedure-{1 + i % 9}")  # the green LED blinks N times
            indicators.show(state)  # ... while the main loop sets it on, off, blinking
    finally:
        indicators.close()
        factory.close()
        threading.excepthook = hook
    assert errors == []
