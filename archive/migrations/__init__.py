"""Alembic migrations of the archive's database (run by :func:`archive.db.migrate`)."""
