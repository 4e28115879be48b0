"""One error root for the dock."""

from evidence.exc import EvidenceError


class DockError(EvidenceError):
    """Root of dock errors (a session or store problem with a one-line reason)."""


class MediaMismatch(DockError):
    """Media bytes from a camera do not match the size or SHA-256 its signed record gives."""
