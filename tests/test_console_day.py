"""The officer's day page and the auditor's audit-log page, over a real dock store (a
camera journal made with the real evidence API, docked over a real pty pair) and a real
archive on SQLite and on a real PostgreSQL 15."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from corekit import DAY, PW, World, copy_world, make_archive, register_archive, write_dock_toml
from dockkit import NS, START, dock_once, make_camera, make_dock
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)
from webkit import logged_in, page_csrf

from archive.service import Archive
from evidence.clock import format_utc
from simulator.clock import SimClock

DATE = "2026-11-18"  # START is 2026-11-18T11:06:40Z, 19:06 in Asia/Shanghai
JPEG = b"\xff\xd8\xff\xe0" + b"a photo of the scene" * 50 + b"\xff\xd9"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """cam-001 (officer A1024): an act of two segments, a key moment, a stoppage for the
    weather and its resumption, a photo, an act of one segment; docked once."""
    tmp = tmp_path_factory.mktemp("day")
    clock = SimClock(START)
    camera, registry = make_camera(tmp, "cam-001", officer="A1024", clock=clock)
    first = camera.journal.next_seq
    files = camera.record(2, 3000)
    j = camera.journal
    marker = j.append(
        "marker", {"note": "mark", "procedure": "inspection", "moment": "conduct", "index": 2}
    )
    clock.advance(30 * NS)
    j.append("stoppage", {"reason": "weather", "detail": "heavy rain"})
    clock.advance(60 * NS)
    j.append("resumed", {"reason": "weather"})
    day = format_utc(clock.time_ns())[:10].replace("-", "")
    photo = f"media/{day}/photo-0001.jpg"
    (camera.root / photo).parent.mkdir(parents=True, exist_ok=True)
    (camera.root / photo).write_bytes(JPEG)
    j.append(
        "photo", {"file": photo, "size": len(JPEG), "sha256": hashlib.sha256(JPEG).hexdigest()}
    )
    files += camera.record(1, 3000)
    dock_identity, store = make_dock(tmp, registry, clock)
    result, outcome = dock_once(store, dock_identity, camera)
    assert not isinstance(outcome, BaseException), outcome
    # a supervisor at the dock reads the moment as another one (the record stays)
    store.relabel(marker, "inspection", "conduct", "subject", "zhou", "one press too many")
    store.close()
    camera.close()
    write_dock_toml(tmp)  # a case above internal is sealed with the dock's key
    return World(tmp, tmp / "dock", "cam-001", [(first, files)], [], "")


@pytest.fixture
def arch(world: World, db_url: str, tmp_path: Path):  # noqa: F811
    archive = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 2 * DAY))
    admin = archive.login("admin", PW)
    archive.add_user(admin, "li", "officer", PW, officer="A1024")
    archive.add_user(admin, "ma", "officer", PW, officer="B2048")
    archive.add_user(admin, "wang", "archivist", PW)
    archive.add_user(admin, "sun", "supervisor", PW)
    archive.add_user(admin, "qian", "auditor", PW)
    archive.sync_recordings()
    yield archive
    archive.close()


def kinds(arch: Archive) -> list[tuple[str, dict]]:
    return [(r.kind, r.body) for r in arch.audit.records()]


def badges(html: str) -> list[str]:
    return re.findall(r'data-badge="(\w+)"', html)


def test_the_officers_day_is_a_timeline_with_badges(arch: Archive, world: World) -> None:
    client = logged_in(arch, "li", PW, timezone="Asia/Shanghai")
    page = client.get("/day", params={"date": DATE})
    assert page.status_code == 200, page.text[:2000]
    text = page.text
    assert "执法日 · A1024 · 2026-11-18" in text
    relabelled = "行政检查：被检查对象的情况（由 zhou 重新标注，原为「行政检查：执法人员风纪」：one press too many）"
    for words in ("开始录像", "停止录像", "关键节点", relabelled, "录像中断"):
        assert words in text, words
    assert "天气原因 (heavy rain)" in text and "恢复录像" in text and "照片" in text
    assert "含事前缓存 30 秒" in text
    assert badges(text) == ["verified"] * 3
    files = world.acts[0][1]
    for f in files:
        assert f in text
    plays = re.findall(r'class="play" href="(/play/cam-001/\d+)"', text)
    assert len(plays) == 3
    # the stoppage and the moment were journaled between two acts: no player link there
    assert 'class="seek"' not in text
    assert "UTC+08:00" in text  # the zone is shown
    assert "3 段录像" in text and "1 个关键节点，1 次中断，1 张照片" in text
    # what a badge says it checked
    assert "片段记录的 Ed25519 签名与注册表中该设备的公钥相符" in text
    assert "链未断" in text and "接收时已校验" in text
    # the rows are in time order: the stoppage comes after the first act's segments
    assert text.index(files[1]) < text.index("录像中断") < text.index(files[2])
    # the photo, through the access check
    link = re.search(r'href="(/photos/cam-001/\d+)"', text).group(1)
    shot = client.get(link)
    assert shot.status_code == 200 and shot.content == JPEG
    assert shot.headers["content-type"] == "image/jpeg"
    # English
    client.get("/lang/en")
    english = html.unescape(client.get("/day", params={"date": DATE}).text)
    assert (
        "Administrative inspection: the party inspected (relabelled by zhou, was "
        "\u201cAdministrative inspection: the officers' bearing and dress\u201d: one press too many)"
    ) in english
    assert "Stoppage" in english and "weather (heavy rain)" in english
    views = [b for k, b in kinds(arch) if k == "view" and b["detail"].get("what") == "day"]
    assert views and views[-1]["detail"]["shown"] == 3 and views[-1]["user"] == "li"


def test_a_badge_checked_again_finds_a_damaged_file(arch: Archive, world: World) -> None:
    client = logged_in(arch, "wang", PW)
    seq = int(
        re.search(
            r"/play/cam-001/(\d+)",
            client.get("/day", params={"officer": "A1024", "date": DATE}).text,
        ).group(1)
    )
    checks = client.get(f"/recordings/cam-001/{seq}/checks")
    assert checks.status_code == 200 and badges(checks.text)[0] == "verified"
    assert "文件本身尚未重新计算哈希" in checks.text
    token = page_csrf(client, f"/recordings/cam-001/{seq}/checks")
    again = client.post(f"/recordings/cam-001/{seq}/check", data={"csrf": token})
    assert again.status_code == 200 and badges(again.text)[0] == "verified"
    assert "由 wang 重新计算文件 SHA-256，与签名相符" in again.text
    # a forged check is refused and records nothing
    before = len(arch.audit.records())
    assert client.post(f"/recordings/cam-001/{seq}/check", data={"csrf": "x"}).status_code == 403
    assert len(arch.audit.records()) == before
    # damage the stored file (the test plays the failing disk); the check says so
    stored = world.store / "unit-1" / "cam-001" / world.acts[0][1][0]
    original = stored.read_bytes()
    try:
        stored.chmod(0o644)
        stored.write_bytes(b"\x00" * 8 + original[8:])
        bad = client.post(f"/recordings/cam-001/{seq}/check", data={"csrf": token})
        assert bad.status_code == 200 and badges(bad.text)[0] == "problem"
        assert "文件与签名的 SHA-256 或大小不符" in bad.text
        day = client.get("/day", params={"officer": "A1024", "date": DATE}).text
        assert badges(day) == ["problem", "verified", "verified"]
        assert client.get("/recordings/cam-001/999999/checks").status_code == 404
    finally:
        stored.write_bytes(original)


def test_the_day_goes_through_the_one_access_check(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    world = copy_world(world, tmp_path / "world")  # its case seals media in its own store
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 2 * DAY))
    admin = arch.login("admin", PW)
    for name, role, badge in (("li", "officer", "A1024"), ("wang", "archivist", "")) + (
        ("sun", "supervisor", ""),
    ):
        arch.add_user(admin, name, role, PW, officer=badge)
    arch.sync_recordings()
    wang = arch.login("wang", PW)
    number = arch.open_case(
        wang, "inspection", "inspection", ["Zhang San"], ["A1024"], "personal_privacy"
    )
    first = world.acts[0][0]
    arch.attach_act(wang, number, "cam-001", first)  # the first act: two segments
    # the officer named sees them (personal privacy is within an officer's own clearance)
    li = logged_in(arch, "li", PW)
    assert badges(li.get("/day", params={"date": DATE}).text) == ["verified"] * 3
    # another officer's day: refused, with the reason, and audited
    refused = li.get("/day", params={"officer": "B2048", "date": DATE})
    assert refused.status_code == 403 and "may see only their own recordings" in refused.text
    kind, body = kinds(arch)[-1]
    assert kind == "refusal" and body["user"] == "li" and "B2048" in body["target"]
    # a supervisor (up to internal) sees the day, the case's two recordings withheld
    sun = logged_in(arch, "sun", PW)
    page = sun.get("/day", params={"officer": "A1024", "date": DATE})
    assert page.status_code == 200
    assert badges(page.text) == ["verified"] and page.text.count("已隐去") >= 2
    assert "个人隐私" in page.text
    refusal = [b for k, b in kinds(arch) if k == "refusal" and b["user"] == "sun"]
    assert len(refusal) == 1 and len(refusal[0]["detail"]["recordings"]) == 2
    for seq in (first + 1, first + 2):
        withheld = sun.get(f"/recordings/cam-001/{seq}/checks")
        assert withheld.status_code == 403 and "personal_privacy" in withheld.text
    # the sealed recording checked again: only its sealed form is in the store
    token = page_csrf(li, f"/recordings/cam-001/{first + 1}/checks")
    sealed = li.post(f"/recordings/cam-001/{first + 1}/check", data={"csrf": token})
    assert sealed.status_code == 200 and badges(sealed.text)[0] == "verified"
    assert "只保留加密文件" in sealed.text
    # the administrator has no material at all, and no day in the nav
    admin_client = logged_in(arch, "admin", PW)
    assert "/day" not in admin_client.get("/").text
    assert admin_client.get("/day", params={"officer": "A1024", "date": DATE}).status_code == 403
    assert admin_client.get("/day").status_code == 403  # not even the list of badges
    assert kinds(arch)[-1][0] == "refusal"
    chooser = sun.get("/day")
    assert chooser.status_code == 200 and '<option value="A1024">' in chooser.text
    arch.close()


def test_the_audit_log_page_and_its_check(arch: Archive, world: World) -> None:
    qian = logged_in(arch, "qian", PW)
    home = qian.get("/").text
    assert 'href="/audit"' in home
    page = qian.get("/audit")
    assert page.status_code == 200 and "审计日志" in page.text
    assert re.search(r"<td>login</td><td>qian \(auditor\)</td>", page.text)
    only = qian.get("/audit", params={"kind": "login_failed"})
    assert "<td>login</td>" not in only.text
    unregistered = qian.get("/audit/verify")
    assert unregistered.status_code == 200
    # the registry does not (yet) hold this archive's key: not intact (unknown_device, or
    # another archive-1's key when an earlier test of this module registered its own)
    assert 'data-verdict="problems"' in unregistered.text
    fingerprint = register_archive(world, arch)
    untrusted = qian.get("/audit/verify")
    assert 'data-verdict="untrusted"' in untrusted.text
    assert f"bodycam-verify {arch.folder}" in untrusted.text and "--expect-head" in untrusted.text
    assert fingerprint in untrusted.text  # the signer, to compare with the head's
    trusted = logged_in(arch, "qian", PW, unit_keys=frozenset({fingerprint}))
    verdict = trusted.get("/audit/verify")
    assert 'data-verdict="intact"' in verdict.text, verdict.text[-3000:]
    assert "完好且可信" in verdict.text
    # an officer may not read the audit log: refused and audited
    li = logged_in(arch, "li", PW)
    assert 'href="/audit"' not in li.get("/").text
    refused = li.get("/audit")
    assert refused.status_code == 403 and "may not audit read" in refused.text
    assert kinds(arch)[-1][0] == "refusal"


def test_sync_checks_what_it_had_not_and_never_twice(arch: Archive) -> None:
    from archive.schema import device_events, recording_checks

    with arch.engine.begin() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(device_events)).scalar()
        conn.execute(recording_checks.delete())  # as indexed before migration 0006
    assert arch.sync_recordings() == 0
    with arch.engine.connect() as conn:
        checks = conn.execute(sa.select(recording_checks)).mappings().all()
        events = conn.execute(sa.select(sa.func.count()).select_from(device_events)).scalar()
    assert len(checks) == 3 and {c["signature"] for c in checks} == {"ok"}
    assert events == before


def test_a_forged_record_gets_a_problem_badge(world: World, db_url: str, tmp_path: Path) -> None:  # noqa: F811
    world = copy_world(world, tmp_path / "world")
    journal = world.store / "unit-1" / "cam-001" / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if b'"kind":"segment"' in line)
    lines[at] = re.sub(rb'"frames":(\d+)', lambda m: b'"frames":%d' % (int(m[1]) + 1), lines[at])
    journal.chmod(0o644)
    journal.write_bytes(b"\n".join(lines))
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 2 * DAY))
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        arch.sync_recordings()
        client = logged_in(arch, "wang", PW)
        day = client.get("/day", params={"officer": "A1024", "date": DATE}).text
        assert badges(day)[0] == "problem", badges(day)
        assert "签名无法验证" in day
        # the record after it no longer links to it: its chain is broken
        assert "链已断" in day
    finally:
        arch.close()


def test_the_audit_log_pages_back_and_filters(arch: Archive) -> None:
    from archive.auditread import newest_entries

    records = arch.audit.records()
    total, newest = newest_entries(arch.audit.path, 3, None, "", "")
    assert total == len(records) and [r.seq for r in newest] == [r.seq for r in records[::-1][:3]]
    _, older = newest_entries(arch.audit.path, 100, newest[-1].seq, "", "")
    assert [r.seq for r in older] == [r.seq for r in records[::-1][3:]]
    _, users = newest_entries(arch.audit.path, 100, None, "user", "admin")
    assert users and all(r.kind == "user" and r.body["user"] == "admin" for r in users)
    assert len(users) == sum(1 for r in records if r.kind == "user" and r.body["user"] == "admin")
    qian = logged_in(arch, "qian", PW)
    page = qian.get("/audit", params={"kind": "user", "user": "admin"})
    assert page.status_code == 200 and page.text.count("<td>user</td>") == len(users)


def test_a_relabelling_after_sync_shows_at_the_next(
    world: World,
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    from dockkit import store_trust

    from dock.store import Store
    from evidence.identity import DeviceIdentity
    from evidence.journal import JOURNAL_NAME, readable_records

    world = copy_world(world, tmp_path / "world")
    arch = make_archive(world, tmp_path / "archive", db_url, SimClock(START + 2 * DAY))
    try:
        admin = arch.login("admin", PW)
        arch.add_user(admin, "wang", "archivist", PW)
        arch.sync_recordings()
        journal = world.store / "unit-1" / "cam-001" / JOURNAL_NAME
        marker = next(r for r in readable_records(journal) if r.kind == "marker")
        identity = DeviceIdentity.load(world.tmp / "dock-key" / "dock.key")
        store = Store(world.store, identity=identity, unit_keys=store_trust(world.tmp))
        try:
            store.relabel(marker, "inspection", "subject", "premises", "zhou", "on second look")
        finally:
            store.close()
        client = logged_in(arch, "wang", PW)
        page = client.get("/day", params={"officer": "A1024", "date": DATE}).text
        assert "被检查对象的情况（由 zhou" in page  # the first relabelling, indexed at sync
        arch.sync_recordings()
        page = client.get("/day", params={"officer": "A1024", "date": DATE}).text
        assert (
            "被检查的场所、物品、车辆等情况（由 zhou 重新标注，原为「行政检查：执法人员风纪」"
            in page
        )
        assert "on second look" in page
    finally:
        arch.close()
