"""The recording state machine, pure: events in, actions out, no threads or clocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware.state import NS, Action, Health, Machine, Settings

OK = Health(
    battery_percent=90, temperature_c=45, free_bytes=10 << 30, microphone_ok=True, frame_age_s=0.1
)


def kinds(actions: list[Action]) -> list[str]:
    return [a.kind if a.kind != "journal" else f"journal:{a.args[0]}" for a in actions]


def started() -> Machine:
    m = Machine()
    m.on_button("record", True, 0)
    m.on_button("record", False, NS // 5)
    assert m.state == "recording"
    return m


def test_one_press_starts_with_announcement_and_pre_event() -> None:
    m = Machine()
    out = m.on_button("record", True, 5 * NS)
    assert kinds(out) == [
        "start_recording",
        "journal:recording_started",
        "show",
        "beep",
        "announce",
    ]
    assert out[0].args == (30,)
    assert out[1].args[1] == {"pre_event_s": 30, "procedure": None}
    assert m.on_button("record", False, 5 * NS + NS // 5) == []
    assert m.state == "recording"


def test_a_short_or_medium_press_never_stops() -> None:
    m = started()
    m.on_button("record", True, 10 * NS)
    assert m.on_tick(12 * NS) == []
    assert m.on_button("record", False, int(12.9 * NS)) == []
    assert m.state == "recording"


def test_a_three_second_hold_stops_while_held() -> None:
    m = started()
    m.on_button("record", True, 10 * NS)
    assert m.next_deadline(10 * NS) == 13 * NS
    out = m.on_tick(13 * NS)
    assert kinds(out) == ["stop_recording", "show", "beep"] and out[0].args == ("button",)
    assert m.state == "stopping"
    assert m.on_button("record", False, 20 * NS) == []  # the release does nothing more
    out = m.on_writer_stopped(21 * NS)
    assert kinds(out) == ["journal:recording_stopped", "show"]
    assert out[0].args[1] == {"by": "button"} and m.state == "ready"


def test_a_hold_seen_only_at_release_still_stops() -> None:
    """A late main loop (or a fast simulated clock) measures the hold on the edge stamps."""
    m = started()
    m.on_button("record", True, 10 * NS)
    assert kinds(m.on_button("record", False, 14 * NS))[0] == "stop_recording"


def test_holding_the_press_that_started_does_not_stop() -> None:
    m = Machine()
    m.on_button("record", True, 0)
    assert m.on_tick(10 * NS) == []
    assert m.on_button("record", False, 10 * NS) == []
    assert m.state == "recording"


def test_start_hold_is_configurable() -> None:
    m = Machine(Settings(start_hold_s=1.0, stop_hold_s=5.0))
    assert m.on_button("record", True, 0) == []
    assert m.on_button("record", False, NS // 2) == []
    m.on_button("record", True, NS)
    assert kinds(m.on_tick(2 * NS))[0] == "start_recording"
    m.on_button("record", False, 3 * NS)
    m.on_button("record", True, 4 * NS)
    assert m.on_tick(8 * NS) == []
    assert kinds(m.on_tick(9 * NS))[0] == "stop_recording"


def test_mark_photo_and_weather() -> None:
    m = started()
    assert m.on_button("mark", True, NS) == []  # a mark is a press and its release
    assert kinds(m.on_button("mark", False, int(1.1 * NS))) == ["journal:marker", "beep"]
    m.on_button("function", True, 2 * NS)
    assert kinds(m.on_button("function", False, int(2.5 * NS))) == ["photo"]
    m.on_button("function", True, 3 * NS)
    out = m.on_tick(5 * NS)
    assert kinds(out)[:2] == ["journal:stoppage", "beep"]
    assert out[0].args[1] == {"reason": "weather", "detail": "declared by the officer"}
    assert "stop_recording" in kinds(out) and m.state == "stopping"
    m.on_button("function", False, 6 * NS)
    m.on_writer_stopped(6 * NS)
    assert m.state == "fault" and m.indicator_state() == "stoppage"
    m.on_button("function", True, 10 * NS)
    out = m.on_button("function", False, 13 * NS)
    assert kinds(out)[:2] == ["journal:resumed", "start_recording"]
    assert "announce" not in kinds(out) and m.state == "recording"


def test_camera_fault_stops_cleanly_and_resumes_when_frames_return() -> None:
    m = started()
    out = m.on_health(Health(90, 45, 10 << 30, True, frame_age_s=3.5), 30 * NS)
    assert kinds(out)[:3] == ["journal:stoppage", "beep", "stop_recording"]
    assert out[2].args == ("fault",)
    m.on_writer_stopped(31 * NS)
    assert m.state == "fault" and m.indicator_state() == "fault"
    assert kinds(m.on_tick(40 * NS)) == ["restart_camera"]
    out = m.on_health(OK, 41 * NS)
    assert kinds(out) == [
        "journal:resumed",
        "start_recording",
        "journal:recording_started",
        "show",
        "beep",
        "show",
    ]


def test_storage_full_while_ready_blocks_start_until_cleared() -> None:
    m = Machine()
    m.on_health(Health(90, 45, 1 << 20, True, 0.1), NS)
    assert m.state == "fault"
    assert kinds(m.on_button("record", True, 2 * NS)) == ["beep"]
    m.on_button("record", False, 3 * NS)
    m.on_health(Health(90, 45, 100 << 20, True, 0.1), 4 * NS)  # hysteresis: not yet
    assert m.state == "fault"
    out = m.on_health(OK, 5 * NS)
    assert kinds(out) == ["journal:resumed", "show"] and m.state == "ready"


def test_stop_hold_during_a_stoppage_cancels_the_resume() -> None:
    m = started()
    m.on_fault("overheat", "hot", NS)
    m.on_writer_stopped(2 * NS)
    m.on_button("record", True, 3 * NS)
    assert kinds(m.on_tick(6 * NS)) == ["beep"]
    out = m.on_clear("overheat", 10 * NS)
    assert kinds(out) == ["journal:resumed", "show"] and m.state == "ready"


def test_microphone_failure_is_journaled_but_video_goes_on_by_default() -> None:
    m = started()
    out = m.on_health(Health(90, 45, 10 << 30, False, 0.1), NS)
    assert kinds(out) == ["journal:stoppage", "beep", "show"]
    assert m.state == "recording" and m.indicator_state() == "stoppage"
    assert kinds(m.on_health(OK, 2 * NS)) == ["journal:resumed", "show"]
    strict = Machine(Settings(microphone_stops_recording=True))
    strict.on_button("record", True, 0)
    assert "stop_recording" in kinds(strict.on_fault("microphone", "x", NS))


def test_reminder_every_two_minutes_while_recording() -> None:
    m = started()
    assert m.on_tick(119 * NS) == []
    assert kinds(m.on_tick(120 * NS)) == ["beep"]
    assert m.on_tick(200 * NS) == []
    assert m.on_tick(240 * NS)[0].args == ("reminder",)


def test_battery_low_warns_once_early_enough_then_critical_stops() -> None:
    m = started()
    warned_at = critical_at = None
    for minute in range(0, 40):
        percent = 20 - minute * 1.0  # 60 %/h
        out = m.on_health(Health(percent, 45, 10 << 30, True, 0.1), minute * 60 * NS)
        for a in out:
            if a.kind == "journal" and a.args[0] == "battery_low":
                assert warned_at is None
                warned_at = minute
                assert a.args[1]["minutes_left"] >= 5
            if a.kind == "journal" and a.args[0] == "stoppage":
                assert a.args[1]["reason"] == "battery_critical"
                critical_at = minute
        if critical_at is not None:
            break
    assert warned_at is not None and critical_at is not None
    assert critical_at - warned_at >= 5
    assert m.state == "stopping"


def test_acknowledge_journals_and_beeps() -> None:
    out = Machine().acknowledge(12, "supervisor-1")
    assert out == [
        Action("journal", ("alert_ack", {"alert_seq": 12, "by": "supervisor-1"})),
        Action("beep", ("ack",)),
    ]


EVENTS = st.lists(
    st.one_of(
        st.tuples(
            st.just("button"), st.sampled_from(["record", "mark", "function"]), st.booleans()
        ),
        st.tuples(
            st.just("fault"),
            st.sampled_from(
                ["weather", "camera", "storage_full", "battery_critical", "overheat", "microphone"]
            ),
            st.booleans(),
        ),
        st.tuples(st.just("writer"), st.just(""), st.just(True)),
        st.tuples(st.just("tick"), st.just(""), st.just(True)),
    ),
    max_size=60,
)


@given(EVENTS, st.lists(st.integers(0, 5 * NS), min_size=60, max_size=60))
def test_any_sequence_keeps_the_machine_consistent(events, gaps) -> None:
    m = Machine()
    now = 0
    writer_busy = False  # the writer is closing a recording
    for (kind, name, flag), gap in zip(events, gaps, strict=False):
        now += gap
        if kind == "button":
            out = m.on_button(name, flag, now)
        elif kind == "fault":
            out = m.on_fault(name, "x", now) if flag else m.on_clear(name, now)
        elif kind == "writer":
            out = m.on_writer_stopped(now) if writer_busy else []
            writer_busy = False if writer_busy else writer_busy
        else:
            out = m.on_tick(now)
        for a in out:
            if a.kind == "start_recording":
                assert not writer_busy
            if a.kind == "stop_recording":
                writer_busy = True
        assert m.state in ("ready", "recording", "stopping", "fault")
        assert (m.state == "stopping") == writer_busy
        if m.state == "recording":
            assert not m.halted
        if m.state == "fault":
            assert m.halted


# -- procedures and key moments (evidence/procedures.toml) ---------------------------------


def with_procedures() -> Machine:
    from evidence.procedures import load_procedures

    return Machine(procedures=list(load_procedures().values()))


def tap(m: Machine, name: str, t: float, hold: float = 0.2) -> list[Action]:
    """A press at ``t`` seconds and its release ``hold`` seconds later; holds fire on ticks."""
    out = m.on_button(name, True, int(t * NS))
    out += m.on_tick(int((t + hold) * NS))
    return out + m.on_button(name, False, int((t + hold) * NS))


def journaled(out: list[Action], kind: str) -> list[dict]:
    return [a.args[1] for a in out if a.kind == "journal" and a.args[0] == kind]


def beeps(out: list[Action]) -> list[str]:
    return [a.args[0] for a in out if a.kind == "beep"]


def test_mark_while_ready_chooses_the_next_procedure_and_a_hold_clears_it() -> None:
    m = with_procedures()
    ids = [p.id for p in m.procedures]
    out = tap(m, "mark", 1)
    assert journaled(out, "procedure") == [{"procedure": ids[0], "number": 1}]
    assert beeps(out) == ["procedure-1"]
    for n in range(2, 8):
        out = tap(m, "mark", n)
    assert journaled(out, "procedure") == [{"procedure": ids[6], "number": 7}]
    assert beeps(out) == ["procedure-7"]
    out = tap(m, "mark", 10, hold=2.0)  # a hold: no procedure
    assert journaled(out, "procedure") == [{"procedure": None, "number": 0}]
    assert beeps(out) == ["procedure-0"] and m.procedure is None
    assert m.state == "ready"


def test_marks_while_recording_walk_the_moments_and_a_hold_is_other() -> None:
    m = with_procedures()
    while m.procedure is None or m.procedure.id != "seizure":
        tap(m, "mark", 1)
    out = tap(m, "record", 2)
    assert journaled(out, "recording_started")[0]["procedure"] == "seizure"
    first = journaled(tap(m, "mark", 3), "marker")
    assert first == [{"note": "mark", "procedure": "seizure", "moment": "time_place", "index": 1}]
    other = tap(m, "mark", 4, hold=2.0)
    assert journaled(other, "marker")[0]["moment"] == "other" and beeps(other) == ["mark"]
    second = tap(m, "mark", 7)
    assert journaled(second, "marker")[0]["moment"] == "credentials"
    assert beeps(second) == ["moment-2"]
    for t in range(8, 20):  # past the last moment, marks are "other"
        last = tap(m, "mark", t)
    assert journaled(last, "marker")[0]["moment"] == "other"
    assert m.marked == [mo.id for mo in m.procedure.moments]


def test_a_fault_resume_keeps_the_act_and_a_stop_ends_it() -> None:
    m = with_procedures()
    tap(m, "mark", 1)
    chosen = m.procedure
    tap(m, "record", 2)
    tap(m, "mark", 3)
    m.on_fault("overheat", "85 C", 4 * NS)
    m.on_writer_stopped(5 * NS)
    out = m.on_clear("overheat", 6 * NS)
    assert journaled(out, "recording_started")[0]["procedure"] == chosen.id
    assert m.marked == [chosen.moments[0].id]  # the same act goes on
    m.on_button("record", True, 7 * NS)
    m.on_tick(11 * NS)  # held past stop_hold_s
    m.on_button("record", False, 11 * NS)
    m.on_writer_stopped(12 * NS)
    assert m.procedure is None and m.marked == []


def test_counted_beep_patterns_are_long_fives_then_short_ones() -> None:
    from firmware.controls import LONG, NONE, SHORT, beep_steps

    assert beep_steps("procedure-7") == [(*LONG, 1), (*SHORT, 2)]
    assert beep_steps("moment-3") == [(*SHORT, 3)]
    assert beep_steps("procedure-10") == [(*LONG, 2)]
    assert beep_steps("procedure-0") == [(*NONE, 1)]
    assert beep_steps("mark") == [(0.05, 0.05, 1)]
