"""The simulated clock: faster than real time, UTC settable apart from monotonic time."""

from __future__ import annotations

import threading
import time

import pytest

from evidence.clock import format_utc, parse_utc
from simulator.clock import NS, SimClock

START = parse_utc("2026-11-27T06:00:00.000000Z")


def test_fast_clock_stands_still_until_advanced() -> None:
    clock = SimClock(START)
    t0, m0 = clock.time_ns(), clock.monotonic_ns()
    assert t0 == START
    assert clock.monotonic_ns() == m0
    clock.advance(int(1.5 * NS))
    assert clock.time_ns() == START + int(1.5 * NS)
    assert clock.monotonic_ns() == m0 + int(1.5 * NS)
    clock.advance_to(m0)  # never backwards
    assert clock.monotonic_ns() == m0 + int(1.5 * NS)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_set_time_moves_utc_only() -> None:
    clock = SimClock(START)
    mono = clock.monotonic_ns()
    clock.set_time_ns(START + 3600 * NS)
    assert format_utc(clock.time_ns()) == "2026-11-27T07:00:00.000000Z"
    assert clock.monotonic_ns() == mono
    clock.advance(NS)
    assert clock.time_ns() == START + 3601 * NS


def test_an_eight_hour_sleep_without_drivers_takes_no_real_time() -> None:
    clock = SimClock(START)
    wall = time.monotonic()
    clock.sleep(8 * 3600)
    assert clock.elapsed_s() == pytest.approx(8 * 3600)
    assert time.monotonic() - wall < 1.0
    assert clock.real_speed() > 28_800


def test_sleepers_wake_in_deadline_order_without_drivers() -> None:
    clock = SimClock(START)
    woke: list[tuple[str, float]] = []
    lock = threading.Lock()

    def sleeper(name: str, seconds: float) -> None:
        clock.sleep(seconds)
        with lock:
            woke.append((name, clock.elapsed_s()))

    threads = [threading.Thread(target=sleeper, args=(n, s)) for n, s in (("b", 20), ("a", 5))]
    with clock.driving():  # hold time still until both sleepers are waiting
        for t in threads:
            t.start()
        assert clock.wait_for_waiters(2, timeout=5)
        assert clock.wait_until(clock.monotonic_ns() + 2 * NS, timeout=0.05) is False
    for t in threads:
        t.join(5)
    assert [n for n, _ in woke] == ["a", "b"]
    assert woke[0][1] == pytest.approx(5, abs=0.01)
    assert clock.elapsed_s() >= 20


def test_waiters_follow_the_driver() -> None:
    clock = SimClock(START)
    reached = threading.Event()
    with clock.driving():
        target = clock.monotonic_ns() + 10 * NS
        t = threading.Thread(target=lambda: clock.sleep_until(target) or reached.set())
        t.start()
        assert not reached.wait(0.05)  # a driver exists: the sleeper does not move time
        for _ in range(9):
            clock.advance(NS)
        assert not reached.wait(0.05)
        clock.advance(NS)
        assert reached.wait(5)
        t.join(5)


def test_wait_event_returns_early_when_set() -> None:
    clock = SimClock(START)
    event = threading.Event()
    with clock.driving():
        threading.Timer(0.05, event.set).start()
        wall = time.monotonic()
        assert clock.wait_event(event, 100.0) is True
        assert time.monotonic() - wall < 2
    assert clock.wait_event(threading.Event(), 3.0) is False
    assert clock.elapsed_s() == pytest.approx(3.0)


def test_timers_fire_when_time_passes() -> None:
    clock = SimClock(START)
    fired: list[float] = []
    clock.at(clock.monotonic_ns() + 30 * NS, lambda: fired.append(clock.elapsed_s()))
    clock.advance(29 * NS)
    assert fired == []
    clock.advance(2 * NS)
    assert fired == [pytest.approx(31.0)]


def test_paced_clock_runs_n_times_real_time() -> None:
    clock = SimClock(START, speed=50)
    wall = time.monotonic()
    clock.sleep(5.0)  # 0.1 s of real time
    real = time.monotonic() - wall
    assert real >= 0.09  # never faster than asked; how much slower is the load's doing
    assert clock.elapsed_s() >= 5.0
    assert 0 < clock.real_speed() <= 50 * 1.1
    clock.advance(3600 * NS)  # jumps still work
    assert clock.elapsed_s() >= 3605


def test_timers_fire_at_their_own_time_under_a_long_sleep() -> None:
    clock = SimClock(START)  # as fast as possible: time is exact, whatever the load
    seen: list[float] = []
    for t in (10, 5):
        clock.at(clock.start_monotonic_ns + t * NS, lambda: seen.append(clock.elapsed_s()))
    clock.sleep(15)
    assert seen == [pytest.approx(5, abs=0.5), pytest.approx(10, abs=0.5)]
    assert clock.elapsed_s() >= 15


def test_paced_timers_fire_in_order_never_early_and_within_the_sleep() -> None:
    # Paced time follows the wall clock, so how late a timer fires is the scheduler's
    # business (a loaded machine is late by milliseconds, i.e. seconds at speed 200);
    # what must hold is the order, never early, and fired by the time the sleeper wakes.
    clock = SimClock(START, speed=200)
    seen: list[tuple[int, float]] = []
    for t in (10, 5):
        clock.at(
            clock.start_monotonic_ns + t * NS,
            lambda t=t: seen.append((t, clock.elapsed_s())),
        )
    clock.sleep(15)
    woke = clock.elapsed_s()
    assert [t for t, _ in seen] == [5, 10]
    assert all(t <= at <= woke for t, at in seen)
    assert woke >= 15
