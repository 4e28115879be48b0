"""The archive's password hashing as production runs it: argon2id at the RFC 9106 low-memory
profile (argon2-cffi's default). The suite's own users are hashed at the cheapest cost
(tests/conftest.py), so this checks the shipped module in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
from archive import users
stored = users.hash_password("correct horse battery staple")
print(json.dumps({
    "hash": stored,
    "dummy": users._DUMMY,
    "right": users.password_matches(stored, "correct horse battery staple"),
    "wrong": users.password_matches(stored, "correct horse battery stable"),
    "nobody": users.password_matches(None, "correct horse battery staple"),
}))
"""


def test_production_hashes_are_argon2id_at_the_rfc9106_low_memory_cost() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(done.stdout)
    for stored in (got["hash"], got["dummy"]):
        assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored
    assert "correct horse" not in got["hash"]
    assert (got["right"], got["wrong"], got["nobody"]) == (True, False, False)
