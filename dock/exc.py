"""One error root for the dock; each refusal names the flag kind it raises."""

import errno
import sqlite3

from evidence.exc import EvidenceError


class DockError(EvidenceError):
    """Root of dock errors (a session or store problem with a one-line reason).

    ``kind`` is the flag a session that ends on this error raises (see docs/dock.md)."""

    kind = "refused"


class MediaMismatch(DockError):
    """Media bytes from a camera do not match the size or SHA-256 its signed record gives."""

    kind = "media_altered"


class MediaConflict(DockError):
    """A camera re-sent a stored file with other bytes: the store is write-once."""

    kind = "media_conflict"


class UnsafeName(DockError):
    """A record names a file the store must not write (not ``media/YYYYMMDD/<name>``)."""

    kind = "bad_name"


class LimitExceeded(DockError):
    """A docking went over one of the session limits (records, bytes, size, time)."""

    kind = "limit"


class StoreFull(DockError):
    """The store's disk has no room for what the camera offers; the camera keeps it."""

    kind = "store_full"


class DockFault(DockError):
    """The dock itself cannot serve (its store, index or registry failed): not the camera's
    fault. The bay refuses the camera and then exits, so that systemd restarts it."""

    kind = "dock_fault"


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk is full."""
    for _ in range(6):
        if exc is None:
            return False
        if isinstance(exc, StoreFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and "full" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class RetentionNotDue(DockError):
    """A removal asked for before the recording's six months (or a hold) allow it."""

    kind = "retention"
