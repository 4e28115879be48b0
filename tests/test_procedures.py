"""The procedures file: every procedure of the rules, its key moments in order, and a
broken file refused with the line that breaks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.procedures import (
    OTHER,
    PACKAGED,
    ProcedureError,
    load_procedures,
    parse_procedures,
)

TEXT = PACKAGED.read_text(encoding="utf-8")
REGULATION = Path(__file__).resolve().parents[2] / "shared" / "regulation.zh.txt"


def test_every_procedure_the_rules_name_is_there_with_its_article() -> None:
    procedures = load_procedures()
    articles = {p.article for p in procedures.values()}
    assert articles == {11, 12, 13, 18, 21, 25, 27, 29, 31, 32, 33}
    assert procedures["seizure"].article == 29
    assert [m.id for m in procedures["seizure"].moments] == [
        "time_place",
        "credentials",
        "party_present",
        "decision_read",
        "statement",
        "signing",
    ]


@pytest.mark.skipif(not REGULATION.exists(), reason="the rules' text is not beside the repo")
def test_the_chinese_wording_is_the_rules_own() -> None:
    rules = re.sub(r"\s+", "", REGULATION.read_text(encoding="utf-8"))
    for procedure in load_procedures().values():
        for moment in procedure.moments:
            if moment.article in (11, 12, 13):
                continue  # Art. 11-13 list no moments: their wording names the activity
            assert moment.zh in rules, f"{procedure.id}.{moment.id}: {moment.zh}"


def test_marks_walk_the_moments_in_order_and_other_does_not_advance() -> None:
    seizure = load_procedures()["seizure"]
    assert seizure.next_moment([]).id == "time_place"
    assert seizure.next_moment(["time_place", OTHER]).id == "credentials"
    assert seizure.next_moment([m.id for m in seizure.moments]) is None
    assert seizure.moment(OTHER).zh == "其他需要音像记录的情况"


def test_missing_counts_only_required_moments() -> None:
    investigation = load_procedures()["investigation"]
    missing = investigation.missing(["facts", "scene"])
    assert [m.id for m in missing] == ["questioning"]  # survey, sampling... are "if done"


CASES = {
    "article out of range": (
        'article = 29\nzh = "实施扣押"',
        'article = 290\nzh = "实施扣押"',
        "[seizure]",
        "1-40",
    ),
    "bad moment id": (
        '{ id = "credentials", article = 29',
        '{ id = "Credentials", article = 29',
        'id = "Credentials"',
        "lower case",
    ),
    "moment twice": (
        '{ id = "signing", article = 29',
        '{ id = "time_place", article = 29',
        'id = "time_place", article = 29, zh = "当事人',
        "twice",
    ),
    "other reserved": (
        '{ id = "time_place", article = 29,',
        '{ id = "other", article = 29,',
        'id = "other"',
        "reserved",
    ),
    "unknown key": (
        'en = "Seizure"',
        'en = "Seizure"\ncolour = "red"',
        "[seizure]",
        "unknown key 'colour'",
    ),
    "empty wording": (
        '{ id = "party_present", article = 29, zh = "当事人到场和核实其身份的情况"',
        '{ id = "party_present", article = 29, zh = ""',
        'id = "party_present", article = 29',
        "non-empty",
    ),
    "required not a bool": (
        'required = false },\n  { id = "conduct"',
        'required = "no" },\n  { id = "conduct"',
        'id = "vehicle"',
        "true or false",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_broken_file_names_the_line(case: str) -> None:
    old, new, at, says = CASES[case]
    assert old in TEXT
    text = TEXT.replace(old, new, 1)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if at in row)
    with pytest.raises(ProcedureError) as caught:
        parse_procedures(text, "p.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"p.toml:{line}: "), message
    assert says in message, message


def test_not_toml_and_a_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ProcedureError, match=r"p.toml: not valid TOML: .*line 3"):
        parse_procedures("[a]\narticle = 1\nzh = \n", "p.toml")
    with pytest.raises(ProcedureError, match="cannot read the procedures file"):
        load_procedures(tmp_path / "none.toml")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(TEXT) - 1), st.integers(1, 40), st.text(max_size=8))
def test_any_damage_is_a_procedure_error_or_a_valid_file(
    start: int, length: int, junk: str
) -> None:
    text = TEXT[:start] + junk + TEXT[start + length :]
    try:
        procedures = parse_procedures(text, "p.toml")
    except ProcedureError as exc:
        assert str(exc).startswith("p.toml")
    else:
        assert all(p.moments for p in procedures.values())
