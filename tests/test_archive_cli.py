"""``bodycam-archive`` as a user runs it (real processes, both database backends): init,
users, a case from opening to closing, the report with an injected clock, one-line errors
(exit 2), refusals (exit 3), and ``bodycam-verify`` on the audit log it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from corekit import PW, World, build_world, copy_world
from passwordkit import ARCHIVE_CLI
from pgkit import db_url, pg_server  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the store per test: sealing a confidential case's recordings changes it."""
    return copy_world(template, tmp_path / "world")


def run(folder: Path, *args: str, user: str = "", password: str = PW, new: str = PW):
    env = dict(os.environ, BODYCAM_ARCHIVE_PASSWORD=password, BODYCAM_ARCHIVE_NEW_PASSWORD=new)
    env.pop("DEBUG", None)
    cmd = [*ARCHIVE_CLI, "--dir", str(folder)]
    if user:
        cmd += ["--user", user]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_a_case_from_the_command_line(world: World, db_url: str, tmp_path: Path) -> None:  # noqa: F811
    a = tmp_path / "archive"
    url = db_url if db_url.startswith("postgresql") else ""
    init = ["init", "--store", str(world.store), "--id", "archive-1", "--admin", "admin"]
    done = run(a, *init, *(["--database", url] if url else []))
    assert done.returncode == 0, done.stderr
    assert "bodycam-unit add-archive archive-1 --public-key" in done.stdout
    key = done.stdout.split("its key: ")[1].split()[0]
    assert key == json.loads((a / "audit" / "archive.json").read_text())["public_key"]
    again = run(a, *init)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already" in again.stderr
    assert run(a, "user", "add", "wang", "--role", "archivist", user="admin").returncode == 0
    assert run(a, "user", "add", "zhao", "--role", "head", user="admin").returncode == 0
    opened = run(
        a, "--json", "case", "open", "--kind", "traffic stop", "--procedure", "traffic",
        "--party", "Zhang San", "--officer", "A1024", "--classification", "internal",
        user="wang",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    number = json.loads(opened.stdout)["number"]
    seq = str(world.acts[0][0])
    att = run(a, "case", "attach", number, "--device", world.device, "--act", seq, user="wang")
    assert att.returncode == 0 and "3 recordings attached" in att.stdout, att.stderr
    doc = tmp_path / "note.txt"
    doc.write_text("written record\n")
    assert run(a, "case", "attach-doc", number, str(doc), user="wang").returncode == 0
    assert run(a, "case", "close", number, user="wang").returncode == 0
    late = run(a, "case", "attach-doc", number, str(doc), user="wang")
    assert late.returncode == 2 and "immutable" in late.stderr and "Traceback" not in late.stderr
    shown = json.loads(run(a, "--json", "case", "show", number, user="zhao").stdout)
    assert shown["status"] == "closed" and len(shown["entries"]) == 4
    # a party's copy: recorded, approved by the head, exported by the archivist
    req = run(a, "--json", "copy", "request", number, "--requester", "Zhang San", user="wang")
    rid = str(json.loads(req.stdout)["request"])
    early = run(a, "copy", "export", rid, "--out", str(tmp_path / "b0"), user="wang")
    assert early.returncode == 3 and "approved by the head" in early.stderr
    assert run(a, "copy", "approve", rid, user="zhao").returncode == 0
    exp = run(a, "--json", "copy", "export", rid, "--out", str(tmp_path / "b1"), user="wang")
    assert exp.returncode == 0, exp.stderr
    assert json.loads(exp.stdout)["media_files"] == 3
    bad = run(a, "copy", "approve", rid, "--omit", "nonsense", user="zhao")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    listed = run(a, "case", "list", user="wang")
    assert number in listed.stdout
    # the report, at an injected time: 31 days after the act, the closed case is late
    rep = run(a, "--json", "report", "cases", "--now", "2027-01-30", user="zhao")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert data["now_utc"].startswith("2027-01-30") and data["counts"] == {"closed": 1}
    assert data["cases"][0]["deadline_utc"] < "2027-01-30"  # closed in time, so not late
    # refusals and failed logins: exit 3, one line; bad input: exit 2, one line
    refused = run(a, "user", "list", user="wang")
    assert refused.returncode == 3 and "refused" in refused.stderr
    assert refused.stderr.count("\n") == 1
    bad = run(a, "case", "show", number, user="wang", password="wrong password!")
    assert bad.returncode == 3 and "login failed" in bad.stderr
    for args in (
        ["case", "show", "1999-0001"],
        ["report", "cases", "--now", "yesterday"],
        ["case", "attach", number, "--device", world.device],
    ):
        done = run(a, *args, user="zhao")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
    nouser = run(a, "case", "list")
    assert nouser.returncode == 2 and "--user" in nouser.stderr
    audit = json.loads(run(a, "--json", "audit", "show", user="zhao").stdout)
    assert [e["kind"] for e in audit].count("login_failed") == 1
    assert any(e["kind"] == "refusal" for e in audit)
    # without the archive in a registry the verifier cannot vouch for it: exit 1 untrusted
    ver = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(a / "audit")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ver.returncode == 1 and "archive audit log" in ver.stdout, ver.stdout + ver.stderr
    # the head registers the archive's key in the unit-signed registry: now it is trusted
    reg = subprocess.run(
        [sys.executable, "-m", "evidence.unit_cli", "--key", str(world.tmp / "unit-key" / "unit.key"),
         "--registry", str(world.store / "registry.json"), "add-archive", "archive-1",
         "--public-key", key, "--replace"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert reg.returncode == 0, reg.stderr
    assert run(a, "case", "list", user="zhao").returncode == 0  # refreshes the registry copy
    ver = subprocess.run(
        [sys.executable, "-m", "evidence.verify_cli", str(a), "--trust", str(world.tmp / "trust.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ver.returncode == 0 and "INTACT" in ver.stdout, ver.stdout + ver.stderr
