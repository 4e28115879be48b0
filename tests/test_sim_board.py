"""The GPIO twin: presses seen by gpiozero Buttons, LEDs and buzzer read from the mock pins."""

from __future__ import annotations

import threading

import pytest
from gpiozero import LED, PWMLED, Button, Buzzer
from gpiozero.pins.mock import MockPWMPin

from evidence.clock import parse_utc
from hw.pinmap import GPIO
from simulator.board import Board
from simulator.clock import NS, SimClock

START = parse_utc("2026-11-27T06:00:00.000000Z")


def test_presses_reach_gpiozero_buttons_on_the_pin_map(mock_factory) -> None:
    board = Board(SimClock(START))
    record = Button(GPIO["BTN_RECORD"])  # pull-up, active low: as the recorder opens it
    mark = Button(GPIO["BTN_MARK"])
    pressed: list[str] = []
    record.when_pressed = lambda: pressed.append("record")
    record.when_released = lambda: pressed.append("record up")
    mark.when_pressed = lambda: pressed.append("mark")
    assert not record.is_pressed
    board.press("BTN_RECORD")
    assert record.is_pressed and board.is_pressed("BTN_RECORD")
    board.release("BTN_RECORD")
    board.click("BTN_MARK")
    assert pressed == ["record", "record up", "mark"]
    assert not mark.is_pressed
    with pytest.raises(ValueError):
        board.press("LED_RED")
    with pytest.raises(ValueError):
        board.press("BTN_NOPE")


def test_a_press_before_the_button_exists_is_seen_when_it_opens(mock_factory) -> None:
    board = Board()
    board.press("BTN_FUNCTION")
    assert Button(GPIO["BTN_FUNCTION"]).is_pressed


def test_hold_for_simulated_seconds(mock_factory) -> None:
    clock = SimClock(START)
    board = Board(clock)
    button = Button(GPIO["BTN_FUNCTION"])
    held: list[float] = []
    down: list[int] = []
    button.when_pressed = lambda: down.append(clock.monotonic_ns())
    button.when_released = lambda: held.append((clock.monotonic_ns() - down[-1]) / NS)
    board.press("BTN_FUNCTION", hold_s=3)
    assert held == [pytest.approx(3.0)]
    assert not button.is_pressed


def test_hold_real_time_satisfies_gpiozero_hold_time(mock_factory) -> None:
    board = Board()
    button = Button(GPIO["BTN_FUNCTION"], hold_time=0.1)
    held = threading.Event()
    button.when_held = held.set
    board.hold_real("BTN_FUNCTION", 0.4)
    assert held.wait(2)


def test_leds_and_buzzer_are_read_with_a_history_in_simulated_time(mock_factory) -> None:
    clock = SimClock(START)
    board = Board(clock)
    red, green = LED(GPIO["LED_RED"]), LED(GPIO["LED_GREEN"])
    buzzer = Buzzer(GPIO["BUZZER"])
    assert board.outputs() == dict.fromkeys(("LED_RED", "LED_GREEN", "LED_AMBER", "BUZZER"), False)
    red.on()
    green.on()
    buzzer.on()
    clock.advance(NS // 4)
    buzzer.off()
    clock.advance(NS)
    green.off()
    assert board.outputs() == {
        "LED_RED": True,
        "LED_GREEN": False,
        "LED_AMBER": False,
        "BUZZER": False,
    }
    assert board.history("BUZZER") == [(START, 1.0), (START + NS // 4, 0.0)]
    assert board.history("LED_GREEN")[-1] == (START + NS + NS // 4, 0.0)
    assert board.wait_for("LED_RED", True, timeout=1)
    assert not board.wait_for("LED_AMBER", True, timeout=0.05)


def test_wait_for_sees_a_change_from_another_thread(mock_factory) -> None:
    board = Board(SimClock(START))
    amber = LED(GPIO["LED_AMBER"])
    threading.Timer(0.05, amber.on).start()
    assert board.wait_for("LED_AMBER", True, timeout=5)


def test_pwm_leds_report_their_level(mock_factory) -> None:
    mock_factory.pin_class = MockPWMPin
    board = Board(SimClock(START))
    amber = PWMLED(GPIO["LED_AMBER"])
    amber.value = 0.25
    assert board.level("LED_AMBER") == pytest.approx(0.25)
    assert board.history("LED_AMBER")[-1][1] == pytest.approx(0.25)


def test_pins_opened_before_the_board_are_read_but_have_no_history(mock_factory) -> None:
    red = LED(GPIO["LED_RED"])
    board = Board(SimClock(START))
    red.on()
    assert board.is_on("LED_RED")
    with pytest.raises(LookupError):
        board.history("LED_RED")


def test_the_board_needs_the_mock_factory() -> None:
    class NotMock:
        pass

    with pytest.raises(TypeError, match="MockFactory"):
        Board(factory=NotMock())
