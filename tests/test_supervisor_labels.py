"""Every alert a camera, a dock or an archive can raise reads as words on the supervisor's
console.

The kinds come from their one source (``wire.topics``: ``ALERT_KINDS`` for a camera's
journal records, ``DOCK_ALERT_LEVELS`` for a dock's ``dock_alert`` messages,
``ARCHIVE_ALERT_LEVELS`` for an archive's ``archive_alert`` messages, which the dock's and
the archive's code take their levels from); a kind without a label there fails here,
instead of reaching a person as a bare identifier such as ``JOURNAL_DAMAGED``. The
archive's labels are zh-CN first (the case files' deadlines are read in the office).
"""

from __future__ import annotations

import re

import pytest

from archive.alerts import LEVELS
from firmware.recovery import Damage, damage_body
from supervisor.console import ALERT_LABELS, ARCHIVE_LABELS, DOCK_LABELS, describe
from wire.topics import ALERT_KINDS, ARCHIVE_ALERT_LEVELS, DOCK_ALERT_LEVELS

WORDS = re.compile(r"\A[A-Z]+( [A-Z]+)*\Z")  # the console's style: STOPPAGE, BATTERY LOW
ZH_FIRST = re.compile(r"\A[\u4e00-\u9fff]+ [A-Z]+( [A-Z]+)*\Z")  # 案卷已逾期 CASE OVERDUE


@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_every_camera_alert_kind_has_a_label_in_words(kind: str) -> None:
    assert kind in ALERT_LABELS, f"no supervisor label for the camera alert kind {kind!r}"
    label = ALERT_LABELS[kind]
    assert WORDS.match(label), label
    for body in ({}, {"reason": "weather", "percent": 9, "lines": "not a list", "more": "x"}):
        text = describe(kind, body)  # a flagged (forged) alert's body may be anything
        assert text.startswith(label) and kind.upper() not in text.replace(label, ""), text
        assert "_" not in text.split(":")[0], text


@pytest.mark.parametrize("level", DOCK_ALERT_LEVELS)
def test_every_dock_alert_level_has_a_label_in_words(level: str) -> None:
    assert level in DOCK_LABELS, f"no supervisor label for the dock alert level {level!r}"
    assert WORDS.match(DOCK_LABELS[level]), DOCK_LABELS[level]
    text = describe("dock_alert", {"level": level, "text": "cam-001 has held ..."})
    assert text == f"{DOCK_LABELS[level]}: cam-001 has held ...", text


@pytest.mark.parametrize("level", ARCHIVE_ALERT_LEVELS)
def test_every_archive_alert_level_has_a_label_chinese_first(level: str) -> None:
    assert level in ARCHIVE_LABELS, f"no supervisor label for the archive alert level {level!r}"
    label = ARCHIVE_LABELS[level]
    assert ZH_FIRST.match(label), label
    body = {
        "level": level,
        "case": "2026-0007",
        "day": 25,
        "deadline_utc": "2026-12-29T08:00:00.000000Z",
    }
    text = describe("archive_alert", body)
    assert text.startswith(f"{label}: 案卷 2026-0007 第 25/30 天") and "2026-12-29 08:00Z" in text
    assert level not in text and "_" not in text, text
    for odd in ({}, {"level": level, "day": "x", "case": ["?"], "deadline_utc": 5}):
        assert describe("archive_alert", odd)  # a flagged (forged) alert's body may be anything


def test_labels_are_for_kinds_that_exist() -> None:
    assert set(ALERT_LABELS) == set(ALERT_KINDS)
    assert set(DOCK_LABELS) == set(DOCK_ALERT_LEVELS)
    assert set(ARCHIVE_LABELS) == set(ARCHIVE_ALERT_LEVELS) == set(LEVELS.values())


def test_the_new_kinds_say_what_happened() -> None:
    damage = [Damage(3777, 120, "ab" * 32, "unreadable: not canonical JSON")]
    text = describe("journal_damaged", damage_body(damage))
    assert (
        text
        == "JOURNAL DAMAGED: 1 line(s) not in the chain, first at byte 3777: unreadable: not canonical JSON"
    ), text
    body = {"reserve_bytes": 8192, "left_bytes": 4096, "free_bytes": 0}
    assert describe("reserve_spent", body) == (
        "RESERVE SPENT: card full, 4096 of 8192 bytes of journal room left"
    )
