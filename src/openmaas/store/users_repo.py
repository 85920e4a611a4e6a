"""Queries on users and their personal API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.domain.errors import Conflict
from openmaas.store.tables import ApiKeyRow, UserRow


async def get_user_by_username(*, session: AsyncSession, username: str) -> UserRow | None:
    return await session.scalar(select(UserRow).where(UserRow.username == username))


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    email: str,
    password_hash: str | None,
    role: str,
) -> UserRow:
    row = UserRow(username=username, email=email, password_hash=password_hash, role=role)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"user {username!r} or {email!r} exists", code="user_exists") from exc
    return row


async def add_key(
    *,
    session: AsyncSession,
    user_id: int,
    name: str,
    prefix: str,
    key_hash: str,
    expires_at: datetime | None = None,
) -> ApiKeyRow:
    row = ApiKeyRow(
        user_id=user_id, name=name, prefix=prefix, key_hash=key_hash, expires_at=expires_at
    )
    session.add(row)
    await session.flush()
    return row


async def find_key_owner(
    *, session: AsyncSession, key_hash: str
) -> tuple[ApiKeyRow, UserRow] | None:
    query = (
        select(ApiKeyRow, UserRow)
        .join(UserRow, UserRow.id == ApiKeyRow.user_id)
        .where(ApiKeyRow.key_hash == key_hash)
    )
    found = (await session.execute(query)).first()
    return None if found is None else (found[0], found[1])
