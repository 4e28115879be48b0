"""The errors that are the user's to fix: a command prints them as one line and exits 2."""


class UserError(Exception):
    """Root of every error a command reports as ``prog: error: ...`` (not a traceback)."""


class ConfigError(UserError, ValueError):
    """A configuration file or flag is invalid (unknown key, wrong type)."""
