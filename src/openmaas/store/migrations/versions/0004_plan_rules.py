"""plan rules: per-model rules, input/output token limits and an hourly total

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIMITS = (
    "tokens_per_hour",
    "input_tokens_per_minute",
    "input_tokens_per_hour",
    "input_tokens_per_day",
    "output_tokens_per_minute",
    "output_tokens_per_hour",
    "output_tokens_per_day",
)


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        for name in _LIMITS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        # Existing plans have no rules: their defaults apply to every model, as before.
        batch.add_column(sa.Column("rules", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("rules")
        for name in reversed(_LIMITS):
            batch.drop_column(name)
