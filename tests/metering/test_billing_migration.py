"""Migration 0010 on a database with usage: records keep their counts, get the prices
their plan had at migration time, and prices become exact decimals."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from openmaas.store import Database
from openmaas.store.database import alembic_config
from tests.servers import postgres_database

_SEED = [
    "INSERT INTO users (id, username, email, role, disabled, created_at, approved) VALUES "
    "(1, 'ann', 'ann@example.org', 'developer', false, '2026-10-01 00:00:00', true)",
    "INSERT INTO plans (id, name, description, models, rules, price_per_1k_input_tokens, "
    "price_per_1k_output_tokens, price_per_request, approval_required, created_at) VALUES "
    "(1, 'pro', '', '[\"*\"]', '[{\"models\": [\"big-*\"], \"price_per_1k_output_tokens\": 4.5}]', "
    "0.5, 1.5, 0.0001, false, '2026-10-01 00:00:00')",
    "INSERT INTO applications (id, name, description, user_id, plan_id, status, created_at, "
    "updated_at) VALUES (1, 'app', '', 1, 1, 'active', '2026-10-01 00:00:00', "
    "'2026-10-01 00:00:00')",
    "INSERT INTO usage (minute, day, month, user_id, application_id, key_id, model, version, "
    "endpoint, protocol, status, requests, input_tokens, output_tokens, latency_ms_sum, "
    "latency_ms_max) VALUES ('2026-10-02 10:00:00', '2026-10-02', '2026-10', 1, 1, NULL, "
    "'big-one', 1, NULL, 'openai', 200, 3, 90, 96, 1.0, 1.0), ('2026-10-02 10:00:00', "
    "'2026-10-02', '2026-10', 1, 1, NULL, 'small', 1, NULL, 'openai', 200, 2, 60, 64, 1.0, 1.0)",
]


async def _migrate(url: str) -> list[dict]:
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0008"))
            for statement in _SEED:
                await connection.execute(text(statement))
            await connection.commit()
        await db.migrate()
        async with db.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT model, requests, plan, rule, price_per_request, "
                    "price_per_1k_output_tokens FROM usage ORDER BY model"
                )
            )
            found = [dict(row._mapping) for row in rows]
            plan = (await connection.execute(text("SELECT price_per_request FROM plans"))).one()
            found.append({"plan_price_per_request": plan[0]})
            return found
    finally:
        await db.close()


@contextmanager
def _database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{directory / 'old.db'}"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_existing_usage_gets_its_plans_prices(kind: str, tmp_path: Path) -> None:
    with (
        _database(kind, tmp_path) as url,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
    ):
        rows = pool.submit(asyncio.run, _migrate(url)).result()
    big, small, plan = rows
    assert (big["model"], big["requests"], big["plan"], big["rule"]) == ("big-one", 3, "pro", 0)
    assert Decimal(str(big["price_per_1k_output_tokens"])) == Decimal("4.5")  # the rule's
    assert (small["requests"], small["rule"]) == (2, None)
    assert Decimal(str(small["price_per_1k_output_tokens"])) == Decimal("1.5")  # the plan's
    assert Decimal(str(small["price_per_request"])) == Decimal("0.0001")
    assert Decimal(str(plan["plan_price_per_request"])) == Decimal("0.0001")
