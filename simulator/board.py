"""The GPIO twin: buttons pressed and LEDs/buzzer read on gpiozero's MockFactory.

The recorder builds its gpiozero devices (``Button``, ``LED``, ``Buzzer``) on the pins of
``hw.pinmap.GPIO`` exactly as on the device; with ``GPIOZERO_PIN_FACTORY=mock`` (or
``Device.pin_factory = MockFactory()``) they sit on mock pins, and :class:`Board` plays
the officer's fingers and eyes on those same pins, by net name::

    board = Board(clock)            # make it BEFORE the recorder's gpiozero devices
    board.press("BTN_RECORD")       # drive the pin low (active low, pull-up): pressed
    board.release("BTN_RECORD")
    board.click("BTN_MARK")         # press + release
    board.press("BTN_FUNCTION", hold_s=3)   # held for 3 *simulated* seconds, then released
    board.hold_real("BTN_FUNCTION", 2.5)    # held for 2.5 *real* seconds (gpiozero timing)
    board.is_on("LED_RED"); board.outputs() # {"LED_RED": False, ..., "BUZZER": True}
    board.history("BUZZER")         # [(simulated utc ns, state), ...] of every change
    board.wait_for("LED_RED", True, timeout=5)  # real seconds; True once the LED is on
    board.set_input("FUEL_ALERT", active=True)  # any other active-low input net

Buttons: gpiozero calls ``when_pressed``/``when_released`` synchronously from
``drive_low``/``drive_high``, i.e. in the thread that calls ``press``/``release``.

Holds and a fast clock: gpiozero measures ``hold_time``/``when_held`` in *real* time on
its own thread. With a SimClock running e.g. 1000x, ``press(name, hold_s=3)`` keeps the
pin low for 3 simulated seconds, which is 3 ms of real time, so a ``Button(hold_time=2)``
will not see it as held. Either detect holds on the simulated clock (note
``clock.monotonic_ns()`` at ``when_pressed`` and compare at ``when_released``, or wait
with ``clock.wait_event``), or use ``hold_real`` to hold for real seconds.

Output history: :class:`Board` makes the factory build its pins as :class:`TwinPin`
(:class:`TwinPWMPin` for PWM), which report every change with the simulated time. Pins
made before the Board existed are still read correctly, but only their gpiozero
``states`` (real-time) history is available: ``history`` then raises LookupError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from hw.pinmap import GPIO

_log = logging.getLogger(__name__)

BUTTONS = ("BTN_RECORD", "BTN_MARK", "BTN_FUNCTION")
OUTPUTS = ("LED_RED", "LED_GREEN", "LED_AMBER", "BUZZER")
INPUTS = (*BUTTONS, "FUEL_ALERT", "RTC_INT")  # active low, pulled up


class _Reporting:
    """Mixin: tell the factory's boards about each state change of this pin."""

    def _change_state(self, value):  # called by gpiozero under its own locking
        changed = super()._change_state(value)
        if changed:
            for board in getattr(self._factory, "sim_boards", ()):
                board._changed(self, value)
        return changed

    def _set_pull(self, value):
        # Opening a Button sets the pull-up, which would read "released" even while the
        # twin's finger is on it; a held input stays low, as a real pressed button does.
        super()._set_pull(value)
        if any(board._holds(self) for board in getattr(self._factory, "sim_boards", ())):
            self._change_state(False)


class TwinPin(_Reporting, MockPin):
    """A MockPin whose changes the Board records with simulated time."""


class TwinPWMPin(_Reporting, MockPWMPin):
    """A MockPWMPin whose changes the Board records with simulated time."""


class Board:
    """The officer's side of the GPIO header, on gpiozero's mock pins."""

    def __init__(
        self,
        clock=None,
        factory: MockFactory | None = None,
        pins: Mapping[str, int] = GPIO,
    ) -> None:
        if factory is None:
            factory = Device.pin_factory
            if factory is None:
                Device.ensure_pin_factory()
                factory = Device.pin_factory
        if not isinstance(factory, MockFactory):
            raise TypeError(
                f"the GPIO twin needs gpiozero's MockFactory (GPIOZERO_PIN_FACTORY=mock), "
                f"not {type(factory).__name__}"
            )
        self.clock = clock
        self.factory = factory
        self.pins = dict(pins)
        if factory.pin_class is MockPin:
            factory.pin_class = TwinPin
        elif factory.pin_class is MockPWMPin:
            factory.pin_class = TwinPWMPin
        boards = getattr(factory, "sim_boards", None)
        if boards is None:
            boards = factory.sim_boards = []
        boards.append(self)
        self._by_gpio = {gpio: name for name, gpio in self.pins.items()}
        self._cond = threading.Condition()
        self._active: set[int] = set()  # input GPIOs the twin holds low
        self._history: dict[str, list[tuple[int | None, float]]] = {}

    def close(self) -> None:
        """Stop recording output changes."""
        boards = getattr(self.factory, "sim_boards", [])
        if self in boards:
            boards.remove(self)

    # -- pins ---------------------------------------------------------------------------

    def _gpio(self, name: str) -> int:
        try:
            return self.pins[name]
        except KeyError:
            raise ValueError(f"no net {name!r} in the pin map") from None

    def _existing_pin(self, name: str) -> MockPin | None:
        """The mock pin of ``name`` if a device (or we) made it; never makes one."""
        gpio = self._gpio(name)
        for _header, info in self.factory.board_info.find_pin(gpio):
            return self.factory.pins.get(info)
        return None

    def _input_pin(self, name: str) -> MockPin:
        if name not in INPUTS:
            raise ValueError(f"{name} is not an input the officer or a chip drives")
        pin = self._existing_pin(name)
        if pin is None:
            # The recorder has not opened it yet: make it so the level is there when it does.
            pin = self.factory.pin(self._gpio(name))
        return pin

    # -- inputs ---------------------------------------------------------------------------

    def set_input(self, name: str, active: bool) -> None:
        """Drive an active-low input: active=True pulls it low."""
        pin = self._input_pin(name)
        if pin.function != "input":
            raise RuntimeError(f"{name} is configured as an output")
        gpio = self._gpio(name)
        if active:
            self._active.add(gpio)
            pin.drive_low()
        else:
            self._active.discard(gpio)
            pin.drive_high()

    def _holds(self, pin: MockPin) -> bool:
        label = pin.info.name
        return label.startswith("GPIO") and int(label[4:]) in self._active

    def press(self, name: str, hold_s: float | None = None) -> None:
        """Press a button; with ``hold_s``, keep it down that many *simulated* seconds and
        release it (this blocks on the clock until then)."""
        if name not in BUTTONS:
            raise ValueError(f"{name} is not a button (one of {', '.join(BUTTONS)})")
        _log.debug("press %s", name)
        self.set_input(name, True)
        if hold_s is not None:
            if self.clock is None:
                raise ValueError("hold_s needs a clock (Board(clock))")
            self.clock.sleep(hold_s)
            self.release(name)

    def release(self, name: str) -> None:
        if name not in BUTTONS:
            raise ValueError(f"{name} is not a button (one of {', '.join(BUTTONS)})")
        _log.debug("release %s", name)
        self.set_input(name, False)

    def click(self, name: str) -> None:
        """Press and release at once (a short press)."""
        self.press(name)
        self.release(name)

    def hold_real(self, name: str, seconds: float) -> None:
        """Hold a button for ``seconds`` of *real* time (for gpiozero's hold_time)."""
        self.press(name)
        try:
            threading.Event().wait(seconds)  # the point is to let real time pass
        finally:
            self.release(name)

    def is_pressed(self, name: str) -> bool:
        pin = self._existing_pin(name)
        return pin is not None and not pin.state

    # -- outputs --------------------------------------------------------------------------

    def level(self, name: str) -> float:
        """An output's level: 0.0/1.0, or the duty cycle of a PWM pin (0.0 if unopened)."""
        pin = self._existing_pin(name)
        if pin is None or pin.function != "output":
            return 0.0
        return float(pin.state)

    def is_on(self, name: str) -> bool:
        return self.level(name) > 0

    def outputs(self) -> dict[str, bool]:
        """Every LED and the buzzer, on or off."""
        return {name: self.is_on(name) for name in OUTPUTS}

    def _changed(self, pin: MockPin, value: float) -> None:
        label = pin.info.name  # "GPIO17"
        name = self._by_gpio.get(int(label[4:])) if label.startswith("GPIO") else None
        if name is None:
            return
        stamp = self.clock.time_ns() if self.clock is not None else None
        with self._cond:
            self._history.setdefault(name, []).append((stamp, float(value)))
            self._cond.notify_all()

    def history(self, name: str) -> list[tuple[int | None, float]]:
        """Every change of ``name`` since the Board was made: (simulated UTC ns, level)."""
        self._gpio(name)
        pin = self._existing_pin(name)
        if pin is not None and not isinstance(pin, _Reporting):
            raise LookupError(f"{name} was opened before the Board; use its pin.states")
        with self._cond:
            return list(self._history.get(name, ()))

    def wait_for(self, name: str, on: bool, timeout: float = 5.0) -> bool:
        """Wait (real seconds) until output ``name`` is on (or off); True if it got there."""
        self._gpio(name)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.is_on(name) != on:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Twin pins notify at once; the short timeout covers pins made earlier.
                self._cond.wait(min(left, 0.05))
            return True
