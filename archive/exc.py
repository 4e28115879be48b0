"""The archive's errors: one root; user mistakes are one line and exit 2 (daemonkit)."""

from __future__ import annotations

from daemonkit.errors import UserError


class ArchiveError(UserError):
    """Something the archive will not do, said in one line (exit 2)."""


class NotFound(ArchiveError, LookupError):
    """No such case, user, entry or file."""


class LoginFailed(ArchiveError):
    """Wrong name, password or second factor (which one is not said)."""


class Refused(ArchiveError, PermissionError):
    """The access policy refused an action; the message says why (exit 3)."""


class ClosedCase(ArchiveError):
    """A closed case is immutable: a later addition needs a reason."""
