"""One error root for the evidence package; each subclass says exactly what went wrong."""

from daemonkit.errors import ConfigError, UserError

__all__ = [
    "CanonicalError",
    "ConfigError",
    "EvidenceError",
    "JournalError",
    "JournalFullError",
    "JournalWriteError",
    "KeyFileError",
    "RecordError",
    "RegistryError",
    "SignatureError",
    "TornRecordError",
]


class EvidenceError(UserError):
    """Root of every error raised by :mod:`evidence`."""


class KeyFileError(EvidenceError, PermissionError):
    """A device key file is missing, malformed, or readable by other users."""


class CanonicalError(EvidenceError, ValueError):
    """A value cannot be put into canonical form (floats, non-string keys, ...)."""


class RecordError(EvidenceError, ValueError):
    """A journal record is malformed: missing fields, wrong types, undecodable bytes."""


class SignatureError(RecordError):
    """A record's Ed25519 signature does not verify under the expected key."""


class TornRecordError(EvidenceError):
    """The journal ends with a partial record, as a power cut mid-append leaves it."""

    def __init__(self, path: str, offset: int, length: int, message: str | None = None) -> None:
        super().__init__(
            message or f"{path}: torn record at byte {offset} ({length} bytes without a newline)"
        )
        self.path = path
        self.offset = offset
        self.length = length


class JournalError(EvidenceError):
    """The journal cannot be opened or appended to (wrong device, bad chain on open, ...)."""


class RegistryError(EvidenceError):
    """The device registry is unreadable or names a device twice with different keys."""


class JournalWriteError(JournalError, OSError):
    """An append did not reach storage (a short write, EIO, a failed fsync). It was rolled
    back: the journal still ends at its last good record and takes the next append. An
    ``OSError`` too, with the cause's ``errno``, so code that handles storage faults
    (the segment writer) handles this one."""

    def __init__(self, message: str, errno_: int | None) -> None:
        OSError.__init__(self, errno_, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class JournalFullError(JournalWriteError):
    """The append did not fit (ENOSPC, EDQUOT, EFBIG or a short write), even after the
    journal gave back what it held in reserve; rolled back like any
    :class:`JournalWriteError`, and the next append succeeds once there is room."""
