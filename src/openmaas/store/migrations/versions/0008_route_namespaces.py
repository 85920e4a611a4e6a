"""route namespaces: a ModelRoute's name is unique within its namespace

Revision ID: 0008
Revises: 0003
Create Date: 2026-11-30 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None

# SQLite keeps 0003's unique constraint on ``name`` without a name; batch mode names it
# by this convention so that it can be dropped.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _unique_on(columns: list[str]) -> str | None:
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("model_routes"):
        if constraint["column_names"] == columns:
            return constraint["name"]
    return None


def _swap(drop: list[str], sqlite_name: str, create: list[str], name: str) -> None:
    """Replace the unique constraint on ``drop`` with one named ``name`` on ``create``."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("model_routes", naming_convention=_NAMING) as batch:
            batch.drop_constraint(sqlite_name, type_="unique")
            batch.create_unique_constraint(name, create)
        return
    existing = _unique_on(drop)
    if existing:
        op.drop_constraint(existing, "model_routes", type_="unique")
    op.create_unique_constraint(name, "model_routes", create)


def upgrade() -> None:
    _swap(["name"], "uq_model_routes_name", ["namespace", "name"], "uq_model_routes_namespace_name")


def downgrade() -> None:
    _swap(
        ["namespace", "name"],
        "uq_model_routes_namespace_name",
        ["name"],
        "uq_model_routes_name",
    )
