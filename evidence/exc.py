"""One error root for the evidence package; each subclass says exactly what went wrong."""

from daemonkit.errors import ConfigError, UserError

__all__ = [
    "CanonicalError",
    "ConfigError",
    "EvidenceError",
    "JournalError",
    "JournalFullError",
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

    def __init__(self, path: str, offset: int, length: int) -> None:
        super().__init__(f"{path}: torn record at byte {offset} ({length} bytes without a newline)")
        self.path = path
        self.offset = offset
        self.length = length


class JournalError(EvidenceError):
    """The journal cannot be opened or appended to (wrong device, bad chain on open, ...)."""


class JournalFullError(JournalError):
    """An append did not fit on the storage (ENOSPC, EDQUOT, EFBIG or a short write); it was
    rolled back, so the journal ends at its last good record and takes the next append
    once there is room."""


class RegistryError(EvidenceError):
    """The device registry is unreadable or names a device twice with different keys."""
