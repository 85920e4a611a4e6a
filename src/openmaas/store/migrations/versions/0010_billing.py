"""billing: prices fixed at use, exact money, archived accounts, closed invoices

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-30 06:00:00.000000

Usage records gain the plan, rule and unit prices in force when they were used.
Records written before this migration get the prices their application's plan has at
migration time (docs/billing.md says so): that is the best the old data can tell.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_PRICES = ("price_per_request", "price_per_1k_input_tokens", "price_per_1k_output_tokens")


def _exact() -> sa.types.TypeEngine[Any]:
    # Text on SQLite (which has no exact decimal type), NUMERIC elsewhere: see tables.py.
    if op.get_bind().dialect.name == "sqlite":
        return sa.String(48)
    return sa.Numeric(28, 12)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return format(Decimal(str(value)), "f")


def _matches(patterns: list[str], model: str) -> bool:
    return any(p == "*" or fnmatchcase(model, p) for p in patterns)


def _terms(plan: Any, model: str) -> tuple[int | None, str | None, dict[str, Any]]:
    """The rule (index, name) and prices a plan gives a model, as Plan.terms_for does."""
    prices = {name: getattr(plan, name) for name in _PRICES}
    rules = plan.rules
    if isinstance(rules, str):  # JSON comes back as text from a plain SELECT on some drivers
        rules = json.loads(rules)
    for index, rule in enumerate(rules or []):
        if rule.get("models") and _matches(list(rule["models"]), model):
            prices.update({k: rule[k] for k in _PRICES if rule.get(k) is not None})
            return index, rule.get("name") or None, prices
    return None, None, prices


def _price_existing_usage() -> None:
    bind = op.get_bind()
    plans = {
        row.id: row
        for row in bind.execute(
            sa.text(f"SELECT id, name, rules, {', '.join(_PRICES)} FROM plans")
        ).fetchall()
    }
    plan_of: dict[Any, Any] = dict(
        bind.execute(sa.text("SELECT id, plan_id FROM applications")).fetchall()
    )
    pairs = bind.execute(
        sa.text("SELECT DISTINCT application_id, model FROM usage WHERE application_id IS NOT NULL")
    ).fetchall()
    for application_id, model in pairs:
        plan = plans.get(plan_of.get(application_id))
        if plan is None:
            continue
        rule, rule_name, prices = _terms(plan, model)
        bind.execute(
            sa.text(
                "UPDATE usage SET plan_id = :plan_id, plan = :plan, rule = :rule, "
                "rule_name = :rule_name, price_per_request = :per_request, "
                "price_per_1k_input_tokens = :per_input, "
                "price_per_1k_output_tokens = :per_output "
                "WHERE application_id = :application_id AND model = :model"
            ),
            {
                "plan_id": plan.id,
                "plan": plan.name,
                "rule": rule,
                "rule_name": rule_name,
                "per_request": _text(prices["price_per_request"]),
                "per_input": _text(prices["price_per_1k_input_tokens"]),
                "per_output": _text(prices["price_per_1k_output_tokens"]),
                "application_id": application_id,
                "model": model,
            },
        )


def _exact_plan_prices() -> None:
    """Plans' prices from FLOAT to exact decimals, each through its shortest text."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for name in _PRICES:
            op.alter_column(
                "plans",
                name,
                type_=sa.Numeric(28, 12),
                existing_type=sa.Float(),
                postgresql_using=f"{name}::numeric(28, 12)",
            )
        return
    # SQLite cannot change a column's type in place: rename, add, copy, drop (3.35+),
    # which rewrites no table, so the applications that reference plans are untouched.
    for name in _PRICES:
        op.execute(f"ALTER TABLE plans RENAME COLUMN {name} TO {name}_float")
        op.execute(f"ALTER TABLE plans ADD COLUMN {name} VARCHAR(48) NOT NULL DEFAULT '0'")
        for plan_id, value in bind.execute(sa.text(f"SELECT id, {name}_float FROM plans")):
            bind.execute(
                sa.text(f"UPDATE plans SET {name} = :value WHERE id = :id"),
                {"value": _text(value or 0), "id": plan_id},
            )
        op.execute(f"ALTER TABLE plans DROP COLUMN {name}_float")


def _exact_rule_prices() -> None:
    """Rules keep their prices as JSON strings ("0.0015"), never floats."""
    bind = op.get_bind()
    for plan_id, rules in bind.execute(sa.text("SELECT id, rules FROM plans")).fetchall():
        if isinstance(rules, str):
            rules = json.loads(rules)
        changed = [
            {k: (_text(v) if k in _PRICES and v is not None else v) for k, v in rule.items()}
            for rule in rules or []
        ]
        if changed != (rules or []):
            bind.execute(
                sa.text("UPDATE plans SET rules = :rules WHERE id = :id"),
                {"rules": json.dumps(changed), "id": plan_id},
            )


_IMMUTABLE = ("invoices", "invoice_lines")


def _create_invoices() -> None:
    exact = _exact
    op.add_column("usage", sa.Column("billed_month", sa.String(7), nullable=True))
    op.create_index("ix_usage_billed_month", "usage", ["billed_month"])
    op.create_table(
        "billing_closes",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), nullable=False, index=True),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", exact(), nullable=False),
        sa.Column("total", exact(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "month", name="uq_invoices_user_month"),
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "invoice_id",
            sa.Integer(),
            sa.ForeignKey("invoices.id", ondelete="RESTRICT"),
            nullable=False,
            index=True,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("usage_month", sa.String(7), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("application", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("rule", sa.Integer(), nullable=True),
        sa.Column("rule_name", sa.String(128), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        *(sa.Column(name, exact(), nullable=False) for name in _PRICES),
        sa.Column("amount", exact(), nullable=False),
    )
    # A closed invoice never changes: the database itself refuses updates and deletes.
    if op.get_bind().dialect.name == "sqlite":
        for table in _IMMUTABLE:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'closed invoices are immutable'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION openmaas_invoice_immutable() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'closed invoices are immutable' USING ERRCODE = 'P0001'; "
        "END $$ LANGUAGE plpgsql"
    )
    for table in _IMMUTABLE:
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION openmaas_invoice_immutable()"
        )


def upgrade() -> None:
    # New nullable columns: a plain ADD COLUMN on every backend, no table rebuild.
    op.add_column("usage", sa.Column("plan_id", sa.Integer(), nullable=True))
    op.add_column("usage", sa.Column("plan", sa.String(64), nullable=True))
    op.add_column("usage", sa.Column("rule", sa.Integer(), nullable=True))
    op.add_column("usage", sa.Column("rule_name", sa.String(128), nullable=True))
    for name in _PRICES:
        op.add_column("usage", sa.Column(name, _exact(), nullable=True))
    _price_existing_usage()
    _exact_plan_prices()
    _exact_rule_prices()
    # Deleting an application or a user archives it from now on.
    op.add_column("applications", sa.Column("archived_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("archived_at", sa.DateTime(timezone=True)))
    _create_invoices()


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TABLE invoice_lines")
        op.execute("DROP TABLE invoices")
        op.execute("DROP FUNCTION openmaas_invoice_immutable()")
    else:
        op.drop_table("invoice_lines")
        op.drop_table("invoices")
    op.drop_table("billing_closes")
    op.drop_index("ix_usage_billed_month", "usage")
    op.drop_column("usage", "billed_month")
    # Plain DROP COLUMN (SQLite 3.35+ too): no table is rebuilt, no foreign key fires.
    for table in ("users", "applications"):
        op.drop_column(table, "archived_at")
    bind = op.get_bind()
    for name in _PRICES:
        if bind.dialect.name != "sqlite":
            op.alter_column("plans", name, type_=sa.Float(), existing_type=sa.Numeric(28, 12))
            continue
        op.execute(f"ALTER TABLE plans RENAME COLUMN {name} TO {name}_exact")
        op.execute(f"ALTER TABLE plans ADD COLUMN {name} FLOAT NOT NULL DEFAULT 0")
        op.execute(f"UPDATE plans SET {name} = CAST({name}_exact AS REAL)")
        op.execute(f"ALTER TABLE plans DROP COLUMN {name}_exact")
    for name in (*reversed(_PRICES), "rule_name", "rule", "plan", "plan_id"):
        op.drop_column("usage", name)
