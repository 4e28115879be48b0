"""One error root for the firmware; each subclass is also the builtin it resembles."""

from evidence.exc import EvidenceError


class RecorderError(EvidenceError):
    """Root of the recorder's own errors."""


class BackendError(RecorderError, RuntimeError):
    """A hardware backend cannot be used here (unknown name, missing library): never a
    silent fallback to another backend."""


class SegmentError(RecorderError, OSError):
    """A segment could not be written (storage full, I/O error)."""
