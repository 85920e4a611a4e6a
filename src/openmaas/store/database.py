"""Engine, sessions and migrations for SQLite (embedded) and PostgreSQL (production).

A database that is down or hangs never holds a request for long: connections open within
``connect_timeout_s``, statements run within ``statement_timeout_s``, and a failure to
reach the database leaves a session as ``DatabaseUnavailable`` (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from openmaas.domain.errors import BadRequest, ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 7_343_120
RETRY_AFTER_S = 5


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not be reached, or did not answer in time."""

    def __init__(self, message: str = "the database is unreachable; retry shortly") -> None:
        super().__init__(
            message, code="database_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)}
        )


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database is down or hanging (not that a query is wrong)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        exc.OperationalError
        | exc.InterfaceError
        | exc.TimeoutError
        | ConnectionError
        | TimeoutError
        | socket.gaierror,
    )


class ValueRefused(BadRequest):
    """The database refused a value it cannot store (a NUL character, an integer past its
    column). The API checks values before they get here; this is the net under it."""

    def __init__(self) -> None:
        super().__init__(
            "a value is out of range or holds a character that cannot be stored",
            code="invalid_value",
        )


def is_refused_value(error: BaseException) -> bool:
    """Whether the database (or its driver) refused a value, rather than being down."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, exc.DataError | OverflowError):
            return True
        # asyncpg refuses an argument out of its type's range with a ValueError.
        if isinstance(seen, ValueError) and "invalid input for query argument" in str(seen):
            return True
        orig = seen.orig if isinstance(seen, exc.DBAPIError) else None
        seen = orig if isinstance(orig, BaseException) else seen.__cause__
    return False


def describe(error: BaseException) -> str:
    """One line saying why the database could not be used."""
    cause = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    text_ = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text_}" if text_ else type(cause).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer commits; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revisions() -> set[str]:
    """The newest revision(s) the migration scripts define."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


class Database:
    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float = 15.0,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.connect_timeout_s = connect_timeout_s
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            self._ensure_sqlite_dir(url)
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
                pool_timeout=connect_timeout_s,
                connect_args=self._postgres_args(connect_timeout_s, statement_timeout_s),
            )
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Health checks use connections of their own: a check cut short by its timeout
        # must not leave a half-used connection in the pool the requests draw from.
        self._probe_engine: AsyncEngine | None = None
        if not self.is_sqlite:
            self._probe_engine = create_async_engine(
                url,
                poolclass=NullPool,
                connect_args=self._postgres_args(connect_timeout_s, connect_timeout_s),
            )
        self._heads: set[str] | None = None

    def _postgres_args(self, connect_s: float, statement_s: float | None) -> dict[str, Any]:
        if not self.url.startswith("postgresql+asyncpg"):
            return {}
        args: dict[str, Any] = {"timeout": connect_s}
        if statement_s is not None:
            args["command_timeout"] = statement_s
        return args

    @property
    def location(self) -> str:
        """The database's address for people: no password."""
        return make_url(self.url).render_as_string(hide_password=True)

    @staticmethod
    def _ensure_sqlite_dir(url: str) -> None:
        """The database file's folder and the file itself, private to this user.

        SQLite creates its journal files with the database file's permissions, so they
        are private too.
        """
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as session:
                yield session
        except Exception as error:
            if is_refused_value(error):
                raise ValueRefused() from error
            if is_unreachable(error):
                raise DatabaseUnavailable() from error
            raise

    async def revision(self) -> set[str]:
        """The schema's current revision(s), asked on a fresh connection within the
        connect timeout; raises ``DatabaseUnavailable`` when the database does not answer."""
        engine = self._probe_engine or self.engine
        try:
            async with asyncio.timeout(self.connect_timeout_s * 2):
                async with engine.connect() as connection:
                    exists = await connection.run_sync(
                        lambda sync: sync.dialect.has_table(sync, "alembic_version")
                    )
                    if not exists:
                        return set()
                    rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
                    return {str(row[0]) for row in rows}
        except Exception as error:
            if is_unreachable(error):
                raise DatabaseUnavailable(
                    f"the database is unreachable ({describe(error)})"
                ) from error
            raise

    async def at_head(self) -> bool:
        """Whether the schema is at the newest revision the code knows."""
        if self._heads is None:
            self._heads = head_revisions()
        return await self.revision() == self._heads

    async def migrate(self, *, lock_wait_s: float = 600.0) -> None:
        """Bring the schema to the newest revision; safe with many processes at once.

        On PostgreSQL a session lock makes one process migrate while the others wait for
        it (and then find nothing left to do). The migrating connection has no statement
        timeout: a migration may rightly take long.
        """
        if self.is_sqlite:
            # Processes sharing one SQLite file (workers) take turns through a file lock.
            async with self._sqlite_migration_lock(), self.engine.connect() as connection:
                await connection.run_sync(
                    lambda sync: command.upgrade(alembic_config(sync), "head")
                )
                await connection.commit()
            return
        engine = create_async_engine(
            self.url,
            poolclass=NullPool,
            connect_args=self._postgres_args(self.connect_timeout_s, None),
        )
        try:
            async with engine.connect() as connection:
                await self._lock_for_migration(connection, lock_wait_s)
                try:
                    await connection.run_sync(
                        lambda sync: command.upgrade(alembic_config(sync), "head")
                    )
                    await connection.commit()
                finally:
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID}
                    )
                    await connection.commit()
        except Exception as error:
            if is_unreachable(error):
                raise DatabaseUnavailable(
                    f"the database is unreachable ({describe(error)})"
                ) from error
            raise
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def _sqlite_migration_lock(self) -> AsyncIterator[None]:
        path = self.url.split(":///", 1)[-1]
        if not path or path == ":memory:":
            yield
            return
        import fcntl

        handle = await anyio.to_thread.run_sync(Path(f"{path}.migrate-lock").open, "a")
        try:
            await anyio.to_thread.run_sync(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
            yield
        finally:
            handle.close()  # releases the lock

    @staticmethod
    async def _lock_for_migration(connection: Any, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            await connection.commit()
            if taken:
                return
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(
                    f"another process has been migrating the schema for over {wait_s:.0f} s"
                )
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._probe_engine is not None:
            await self._probe_engine.dispose()
