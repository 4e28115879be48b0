"""Encrypted documents: where each is stored and its wrapped data key.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_entries") as batch:
        batch.add_column(sa.Column("stored", sa.String(80), nullable=True))
        batch.add_column(sa.Column("wrapped_key", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_entries") as batch:
        batch.drop_column("wrapped_key")
        batch.drop_column("stored")
