"""The web console (``bodycam-archive serve``): server-rendered pages over the archive.

Every page acts as the logged-in user's :class:`archive.session.Session` and goes through
the archive's one access check (``Archive.require``); the console adds sessions, CSRF
tokens, rate-limited logins, translations and error pages, never access rules of its own.
docs/console.md describes it as built.
"""
