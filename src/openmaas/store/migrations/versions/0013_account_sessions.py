"""accounts: a username's look-alike skeleton, and when a user's sessions were ended

Revision ID: 0013
Revises: 0008
Create Date: 2026-11-30 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from openmaas.domain.usernames import skeleton

revision = "0013"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_skeleton", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("sessions_ended_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_users_username_skeleton", ["username_skeleton"], unique=False)
    # Existing names get their skeleton; names that already look alike stay as they are.
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("username_skeleton", sa.String),
    )
    bind = op.get_bind()
    for user_id, username in bind.execute(sa.select(users.c.id, users.c.username)).all():
        bind.execute(
            users.update().where(users.c.id == user_id).values(username_skeleton=skeleton(username))
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_username_skeleton")
        batch_op.drop_column("sessions_ended_at")
        batch_op.drop_column("username_skeleton")
