"""Passwords (argon2id, argon2-cffi) and the optional TOTP second factor (RFC 6238, pyotp).

Pure functions over a user's stored fields; the archive's service stores and audits.
A TOTP code is accepted once: the time step it was accepted for is kept, and a code for
that step or an earlier one is refused (a code seen over a shoulder cannot be replayed).
"""

from __future__ import annotations

import hmac
import re

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .policy import ROLES

_HASHER = PasswordHasher()  # argon2id, the library's current RFC 9106 low-memory profile
NAME = re.compile(r"\A[a-z][a-z0-9_.-]{0,63}\Z", re.ASCII)
MIN_PASSWORD = 10
TOTP_STEP_S = 30
_DUMMY = _HASHER.hash("not a password of anyone")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(
            f"user name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    return role


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (``stored_hash`` None)."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, name: str, issuer: str = "bodycam-archive") -> str:
    """The ``otpauth://`` URI an authenticator app reads (shown once, at enrolment)."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)


def totp_step(secret: str, code: str, now_s: float, last_step: int) -> int | None:
    """The time step ``code`` is valid for (one step of drift either way), if later than
    ``last_step``; None when it is wrong or already used."""
    if not (isinstance(code, str) and code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
    step = int(now_s // TOTP_STEP_S)
    for candidate in (step - 1, step, step + 1):
        if candidate > last_step and hmac.compare_digest(totp.at(candidate * TOTP_STEP_S), code):
            return candidate
    return None
