"""Billing tests: a platform of their own, and the end of a month brought forward.

A month cannot pass during a test, so a test that closes one moves the usage it made
(rows not yet invoiced, of this month) into an earlier month, as if it had been made
then, through the database the platform uses. Closing months is global to a database,
so these tests run on platforms of their own rather than on the shared one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select, update

from openmaas.app import create_app
from openmaas.settings import Settings
from openmaas.store import Database
from openmaas.store.tables import UsageRow
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.servers import postgres_database, running


def month_before(month: str, count: int = 1) -> str:
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + (number - 1) - count
    return f"{index // 12}-{index % 12 + 1:02d}"


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


async def _move(url: str, month: str) -> int:
    db = Database(url)
    try:
        async with db.session() as session:
            rows = (
                await session.execute(
                    select(UsageRow.id, UsageRow.minute).where(
                        UsageRow.billed_month.is_(None), UsageRow.month == this_month()
                    )
                )
            ).all()
            year, number = (int(part) for part in month.split("-"))
            for row_id, minute in rows:
                moved = minute.replace(year=year, month=number, day=min(minute.day, 28))
                await session.execute(
                    update(UsageRow)
                    .where(UsageRow.id == row_id)
                    .values(minute=moved, day=moved.date(), month=month)
                )
            await session.commit()
            return len(rows)
    finally:
        await db.close()


def move_usage_to(settings: Settings, month: str) -> int:
    """Move this month's uninvoiced usage rows into ``month``; how many rows moved."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _move(settings.database_url, month)).result()


@contextmanager
def own_platform(kind: str, directory: Path, **overrides: object) -> Iterator[Platform]:
    """A platform on a database of its own (``kind``: "sqlite" or "postgres")."""
    with postgres_database() if kind == "postgres" else _sqlite() as url:
        settings = make_settings(directory, url, **overrides)
        with running(create_app(settings)) as server:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            with (
                httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin,
                httpx.Client(base_url=server.url, timeout=60) as anonymous,
            ):
                yield Platform(server.url, settings, server, admin, anonymous)


@contextmanager
def _sqlite() -> Iterator[str]:
    yield ""


def wait_for_requests(client: httpx.Client, expected: int) -> None:
    """Until the recorder's periodic flush has written ``expected`` requests."""
    for _ in range(150):
        rows = client.get("/usage", params={"group_by": "application"}).json()["usage"]
        if sum(row["requests"] for row in rows) >= expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"usage never reached {expected}: {rows}")
