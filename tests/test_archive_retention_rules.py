"""Retention's pure decision (``archive.retention.judge``) and its rules, without a
database: examples written out by hand, then properties over any accepted configuration
(hypothesis), including that the archive never calls due what the dock's floor and
``bodycam-verify`` would call too early."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.exc import ArchiveError
from archive.policy import ROLES, Actor, Material, decide
from archive.retention import (
    CASE,
    DEFAULT_RULES,
    HOLD,
    ROUTINE,
    HoldSpan,
    Recording,
    judge,
    load_rules,
)
from evidence.clock import format_utc, parse_utc
from evidence.dockjournal import RETENTION_FLOOR_DAYS, removal_too_early

NS = 1_000_000_000
DAY = 86_400 * NS
T0 = parse_utc("2026-01-10T08:00:00.000000Z")


def rec(start_ns: int = T0, seconds: int = 60, unit: str = "unit-1") -> Recording:
    return Recording(
        "cam-001",
        7,
        unit,
        "media/20260110/seg-000007.ts",
        "0" * 64,
        format_utc(start_ns),
        format_utc(start_ns + seconds * NS),
    )


def test_routine_is_six_months_from_the_recordings_end() -> None:
    r = rec()
    end = parse_utc(r.end_utc)
    before = judge(r, end + 183 * DAY - 1000, DEFAULT_RULES)
    assert not before.due and before.category == ROUTINE
    assert before.kept_until_utc == format_utc(end + 183 * DAY)
    at = judge(r, end + 183 * DAY, DEFAULT_RULES)
    assert at.due and at.rule == "retention_ran_out"
    assert at.why == f"routine: ended {r.end_utc}, kept 183 days until {at.kept_until_utc}"


def test_a_unit_category_keeps_longer_and_others_stay_routine() -> None:
    rules = load_rules({"categories": {"serious": 730}, "units": {"unit-2": "serious"}}, "t")
    late = parse_utc(rec().end_utc) + 400 * DAY
    assert judge(rec(unit="unit-1"), late, rules).due
    kept = judge(rec(unit="unit-2"), late, rules)
    assert not kept.due and kept.category == "serious"


def test_a_case_or_a_hold_keeps_it_permanently() -> None:
    forever = T0 + 100 * 365 * DAY
    in_case = judge(rec(), forever, DEFAULT_RULES, ["2026-0002", "2026-0001"])
    assert not in_case.due and in_case.category == CASE and in_case.kept_until_utc is None
    assert in_case.why == "in case 2026-0001, 2026-0002: kept"
    span = HoldSpan(3, "cam-001", format_utc(T0 + 30 * NS), format_utc(T0 + 3600 * NS), "hold 3")
    held = judge(rec(), forever, DEFAULT_RULES, (), [span])
    assert not held.due and held.category == HOLD and "hold 3" in held.why
    other = HoldSpan(4, "cam-002", format_utc(T0), format_utc(T0 + 3600 * NS), "hold 4")
    after = HoldSpan(5, "cam-001", format_utc(T0 + 60 * NS), format_utc(T0 + 99 * NS), "hold 5")
    assert judge(rec(), forever, DEFAULT_RULES, (), [other, after]).due  # not this recording


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"categories": {"short": 182}}, "at least 183 days"),
        ({"categories": {"routine": 100}}, "at least 183 days"),
        ({"categories": {"half": 183.5}}, "whole days"),
        ({"categories": {"case": 999}}, "not a category name"),
        ({"categories": {"Long Term": 999}}, "not a category name"),
        ({"units": {"unit-1": "nosuch"}}, "no such category"),
        ({"keep": 5}, "unknown keys"),
        ("routine", "must be a table"),
    ],
)
def test_a_config_below_six_months_or_unknown_is_refused(table, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        load_rules(table, "archive.toml")


names = st.from_regex(r"[a-h][a-h_]{0,7}", fullmatch=True).filter(lambda n: n not in (CASE, HOLD))
configs = st.fixed_dictionaries(
    {
        "categories": st.dictionaries(names, st.integers(183, 5000), max_size=4),
        "units": st.just({}),
    }
).flatmap(
    lambda t: st.fixed_dictionaries(
        {
            "categories": st.just(t["categories"]),
            "units": st.dictionaries(
                st.sampled_from(["unit-1", "unit-2", "unit-3"]),
                st.sampled_from(sorted(t["categories"]) + [ROUTINE]),
                max_size=3,
            ),
        }
    )
)


@settings(max_examples=300, deadline=None)
@given(
    table=configs,
    unit=st.sampled_from(["unit-1", "unit-2", "unit-3"]),
    start=st.integers(T0, T0 + 3 * 365 * DAY),
    seconds=st.integers(0, 3600),
    later=st.integers(-10 * DAY, 6000 * DAY),
    cases=st.lists(st.sampled_from(["2026-0001", "2026-0002"]), max_size=2),
    hold=st.none() | st.tuples(st.integers(-7200, 7200), st.integers(1, 14400)),
)
def test_due_is_exactly_run_out_in_no_case_under_no_hold(
    table, unit, start, seconds, later, cases, hold
) -> None:
    rules = load_rules(table, "t")
    r = rec(start, seconds, unit)
    spans = []
    if hold is not None:
        lo = start + hold[0] * NS
        spans = [HoldSpan(1, "cam-001", format_utc(lo), format_utc(lo + hold[1] * NS), "hold 1")]
    end = parse_utc(r.end_utc)
    now = end + later
    v = judge(r, now, rules, cases, spans)
    covered = any(s.from_utc < r.end_utc and r.start_utc < s.to_utc for s in spans)
    days = rules.days(rules.category_of(unit))
    assert days >= RETENTION_FLOOR_DAYS
    assert v.due == (not cases and not covered and now >= end + days * DAY)
    if v.due:  # what the archive calls due, the dock's floor and bodycam-verify accept
        assert not removal_too_early(end, now)
        assert parse_utc(v.kept_until_utc) >= end + RETENTION_FLOOR_DAYS * DAY
    if cases or covered:
        assert v.kept_until_utc is None
    assert v.why  # always says why


@settings(max_examples=200, deadline=None)
@given(days=st.integers(-1000, RETENTION_FLOOR_DAYS - 1))
def test_no_category_below_the_floor_is_ever_accepted(days: int) -> None:
    with pytest.raises(ArchiveError):
        load_rules({"categories": {"short": days}}, "t")


# Written out by hand: who may place or release a hold (on internal material) and purge.
#            officer archivist supervisor head auditor administrator
MAY_HOLD = (False, True, False, True, False, False)
MAY_PURGE = (False, False, False, True, False, False)


@pytest.mark.parametrize("role", ROLES)
def test_hold_and_purge_in_the_one_access_check(role: str) -> None:
    actor = Actor(f"u-{role}", role, "A1024" if role == "officer" else "")
    internal = Material("internal", frozenset({"A1024"}), "the recordings of cam-001")
    hold = decide(actor, "hold", internal)
    purge = decide(actor, "purge")
    assert hold.allowed is MAY_HOLD[ROLES.index(role)], hold.reason
    assert purge.allowed is MAY_PURGE[ROLES.index(role)], purge.reason
    for d in (hold, purge):
        assert d.allowed or f"u-{role}" in d.reason
    secret = Material("state_secret", frozenset(), "case 2026-0009")
    assert decide(actor, "hold", secret).allowed is (role == "head")
