"""Daemon plumbing every command shares: typed config, systemd, the CLI's errors and logs.

It knows nothing of evidence, cables or cameras, and imports nothing else of the project,
so every other package may stand on it.
"""
