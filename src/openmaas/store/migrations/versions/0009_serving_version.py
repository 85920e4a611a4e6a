"""serving version: a counter bumped by every change to deployments and aliases

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The one counter row every worker's deployment sync reads.
    op.execute(sa.text("INSERT INTO serving_version (id, version) VALUES (1, 0)"))


def downgrade() -> None:
    op.drop_table("serving_version")
