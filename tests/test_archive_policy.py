"""The one access decision, role by classification, allowed and refused: the table below
is written out by hand (not read from the code), then checked against ``decide`` and,
on both database backends, through the archive itself, where every refusal is audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from corekit import DAY, PW, World, build_world, copy_world, make_archive
from dockkit import START
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)

from archive.exc import Refused
from archive.policy import CLASSIFICATIONS, ROLES, Actor, Material, decide
from simulator.clock import SimClock

Y, N = True, False
# view, for material that names the officer (their own recording)
VIEW = {
    #                 officer archivist supervisor head auditor administrator
    "public":           (Y,     Y,        Y,         Y,   Y,      N),
    "internal":         (Y,     Y,        Y,         Y,   Y,      N),
    "business_secret":  (Y,     Y,        N,         Y,   N,      N),
    "personal_privacy": (Y,     Y,        N,         Y,   N,      N),
    "state_secret":     (N,     N,        N,         Y,   N,      N),
}  # fmt: skip
# case_change (attach, documents): the archivist and the head, within their clearance
CHANGE = {
    "public":           (N,     Y,        N,         Y,   N,      N),
    "internal":         (N,     Y,        N,         Y,   N,      N),
    "business_secret":  (N,     Y,        N,         Y,   N,      N),
    "personal_privacy": (N,     Y,        N,         Y,   N,      N),
    "state_secret":     (N,     N,        N,         Y,   N,      N),
}  # fmt: skip
PAIRS = [(r, c) for r in ROLES for c in CLASSIFICATIONS]


def actor(role: str) -> Actor:
    return Actor(f"u-{role}", role, "A1024" if role == "officer" else "")


@pytest.mark.parametrize(("role", "classification"), PAIRS)
def test_view_and_change_for_each_role_and_classification(role: str, classification: str) -> None:
    own = Material(classification, frozenset({"A1024"}), "case X")
    for action, table in (("view", VIEW), ("case_change", CHANGE)):
        want = table[classification][ROLES.index(role)]
        got = decide(actor(role), action, own)
        assert got.allowed is want, (action, got.reason)
        assert bool(got.reason) is not want  # a refusal always says why
        if not want:
            assert "u-" + role in got.reason


@pytest.mark.parametrize("classification", CLASSIFICATIONS)
def test_an_officer_never_sees_another_officers_material(classification: str) -> None:
    other = Material(classification, frozenset({"B2048"}), "case Y")
    got = decide(actor("officer"), "view", other)
    assert not got.allowed
    assert "only their own" in got.reason or "classified" in got.reason


@pytest.mark.parametrize(
    ("role", "action", "want"),
    [
        ("head", "approve", Y),
        ("archivist", "approve", N),
        ("archivist", "export", N),  # not approved: see below
        ("head", "export", N),
        ("auditor", "audit_read", Y),
        ("supervisor", "audit_read", N),
        ("administrator", "user_manage", Y),
        ("head", "user_manage", N),
        ("administrator", "report", N),
        ("supervisor", "report", Y),
        ("officer", "case_open", N),
    ],
)
def test_actions_beyond_viewing(role: str, action: str, want: bool) -> None:
    assert decide(actor(role), action, Material("public", frozenset({"A1024"}))).allowed is want


def test_an_export_needs_the_heads_approval_and_the_clearance() -> None:
    for classification, want in (("internal", Y), ("personal_privacy", Y), ("state_secret", N)):
        approved = Material(classification, frozenset(), "case Z", approved=True)
        assert decide(actor("archivist"), "export", approved).allowed is want
    refused = decide(actor("archivist"), "export", Material("public", label="case Z"))
    assert "approved by the head" in refused.reason


def test_unknown_roles_actions_and_classifications_are_refused() -> None:
    assert not decide(Actor("x", "janitor"), "view").allowed
    assert not decide(actor("head"), "delete_everything").allowed
    assert not decide(actor("head"), "view", Material("top_secret")).allowed


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


def test_each_pair_through_the_archive_is_allowed_or_refused_and_audited(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + DAY))
    try:
        admin = arch.login("admin", PW)
        head = None
        sessions = {}
        for role in ROLES:
            if role != "administrator":
                arch.add_user(admin, f"u-{role}", role, PW, officer="A1024")
            sessions[role] = arch.login(f"u-{role}", PW) if role != "administrator" else admin
        head = sessions["head"]
        numbers = {
            c: arch.open_case(head, "test", "traffic", [], ["A1024"], c) for c in CLASSIFICATIONS
        }
        refusals = 0
        for role, classification in PAIRS:
            want = VIEW[classification][ROLES.index(role)]
            if want:
                shown = arch.show_case(sessions[role], numbers[classification])
                assert shown["classification"] == classification
            else:
                with pytest.raises(Refused, match=f"u-{role}|admin"):
                    arch.show_case(sessions[role], numbers[classification])
                refusals += 1
        logged = [r for r in arch.audit.records() if r.kind == "refusal"]
        assert len(logged) == refusals == sum(not v for row in VIEW.values() for v in row)
        # the list shows only what the user may see
        assert {c["classification"] for c in arch.list_cases(sessions["supervisor"])} == {
            "public",
            "internal",
        }
    finally:
        arch.close()
