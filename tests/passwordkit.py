"""The archive's password hashing at argon2id's cheapest cost, for the users tests make.

Production's RFC 9106 low-memory profile (t=3, m=64 MiB, p=4) costs ~0.5 s a hash or a
check on a loaded machine; the archive and console tests make and log in six users per
test, and each ``bodycam-archive`` process the CLI tests run hashes a dummy at import and
checks a password. The hashes stay real argon2id PHC strings, and a check reads the cost
from the hash, so hashes made at production cost (by a served console) still check.
Production's parameters are tested in a fresh interpreter: tests/test_archive_passwords.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# ``python -m archive ARGS`` as the CLI tests run it, in a process whose hashing is cheap:
# the same module run as ``-m`` runs it (runpy), after :func:`cheapen`.
ARCHIVE_CLI = [
    sys.executable,
    "-c",
    f"import sys; sys.path.insert(0, {str(TESTS)!r}); import passwordkit; passwordkit.cheapen();"
    " import runpy; runpy.run_module('archive', run_name='__main__', alter_sys=True)",
]


def cheapen() -> None:
    """Make ``archive.users`` hash at argon2id's cheapest parameters (t=1, m=8 KiB, p=1),
    its dummy hash (checked for unknown users) included, without paying production's
    cost for that dummy at import."""
    import argon2
    from argon2 import profiles

    cheap = argon2.PasswordHasher.from_parameters(profiles.CHEAPEST)
    if "archive.users" not in sys.modules:
        real = argon2.PasswordHasher
        argon2.PasswordHasher = lambda *args, **kwargs: cheap  # for that import only
        try:
            import archive.users  # noqa: F401 (imported for its hasher)
        finally:
            argon2.PasswordHasher = real
    users = sys.modules["archive.users"]
    users._HASHER = cheap
    users._DUMMY = cheap.hash("not a password of anyone")
