"""Queries on users and their API keys (personal keys and applications' keys)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.domain.errors import Conflict
from openmaas.domain.usernames import comparable, normalise, skeleton
from openmaas.store.inserts import insert_unique
from openmaas.store.tables import ApiKeyRow, UserRow


async def get_user(*, session: AsyncSession, user_id: int) -> UserRow | None:
    return await session.get(UserRow, user_id)


async def get_user_by_username(*, session: AsyncSession, username: str) -> UserRow | None:
    return await session.scalar(select(UserRow).where(UserRow.username == username))


async def get_user_by_login(*, session: AsyncSession, login: str) -> UserRow | None:
    """The user whose username or e-mail address is ``login`` (case-insensitively)."""
    wanted = comparable(login)
    query = select(UserRow).where(
        or_(func.lower(UserRow.username) == wanted, func.lower(UserRow.email) == wanted)
    )
    # An exact spelling first: names from before normalisation may differ only in case.
    return (
        await session.scalars(query.order_by(UserRow.username != normalise(login)).limit(1))
    ).first()


async def get_user_by_skeleton(*, session: AsyncSession, username: str) -> UserRow | None:
    """A user whose name looks like ``username`` (domain/usernames.py)."""
    query = select(UserRow).where(UserRow.username_skeleton == skeleton(username))
    return (await session.scalars(query.limit(1))).first()


async def get_user_by_email(*, session: AsyncSession, email: str) -> UserRow | None:
    query = select(UserRow).where(func.lower(UserRow.email) == email.lower())
    return (await session.scalars(query.limit(1))).first()


async def get_user_by_oidc_subject(*, session: AsyncSession, subject: str) -> UserRow | None:
    return await session.scalar(select(UserRow).where(UserRow.oidc_subject == subject))


async def list_users(
    *, session: AsyncSession, limit: int = 100, offset: int = 0
) -> tuple[list[UserRow], int]:
    total = await session.scalar(select(func.count()).select_from(UserRow)) or 0
    rows = await session.scalars(select(UserRow).order_by(UserRow.id).limit(limit).offset(offset))
    return list(rows), total


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    email: str,
    password_hash: str | None,
    role: str,
    approved: bool = True,
    oidc_subject: str | None = None,
) -> UserRow:
    row = UserRow(
        username=username,
        username_skeleton=skeleton(username),
        email=email,
        password_hash=password_hash,
        role=role,
        approved=approved,
        oidc_subject=oidc_subject,
    )
    return await insert_unique(
        session, row, Conflict(f"user {username!r} or {email!r} exists", code="user_exists")
    )


async def add_key(
    *,
    session: AsyncSession,
    user_id: int,
    name: str,
    prefix: str,
    key_hash: str,
    expires_at: datetime | None = None,
    application_id: int | None = None,
) -> ApiKeyRow:
    row = ApiKeyRow(
        user_id=user_id,
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        expires_at=expires_at,
        application_id=application_id,
    )
    session.add(row)
    await session.flush()
    return row


async def list_keys(
    *, session: AsyncSession, user_id: int | None = None, application_id: int | None = None
) -> list[ApiKeyRow]:
    """Keys of one application, or a user's personal keys when only ``user_id`` is given."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.id)
    if application_id is not None:
        query = query.where(ApiKeyRow.application_id == application_id)
    else:
        query = query.where(ApiKeyRow.user_id == user_id, ApiKeyRow.application_id.is_(None))
    return list(await session.scalars(query))


async def revoke_keys(
    *,
    session: AsyncSession,
    now: datetime,
    user_id: int | None = None,
    application_id: int | None = None,
) -> int:
    """Revoke every live key of a user or of an application; how many were."""
    query = update(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)).values(revoked_at=now)
    if user_id is not None:
        query = query.where(ApiKeyRow.user_id == user_id)
    if application_id is not None:
        query = query.where(ApiKeyRow.application_id == application_id)
    result = await session.execute(query)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def get_key(*, session: AsyncSession, key_id: int) -> ApiKeyRow | None:
    return await session.get(ApiKeyRow, key_id)


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


async def touch_keys(*, session: AsyncSession, last_used: Mapping[int, datetime]) -> None:
    """Write many keys' last-used times in one statement batch."""
    if not last_used:
        return
    # Core executemany rather than ORM bulk update: a key deleted meanwhile is no error.
    statement = (
        update(ApiKeyRow.__table__)  # type: ignore[arg-type]
        .where(ApiKeyRow.__table__.c.id == bindparam("key_id"))
        .values(last_used_at=bindparam("at"))
    )
    await session.execute(
        statement, [{"key_id": key_id, "at": at} for key_id, at in last_used.items()]
    )


def apply(row: Any, changes: Mapping[str, Any]) -> None:
    for name, value in changes.items():
        setattr(row, name, value)


async def count_active_keys(*, session: AsyncSession, user_id: int) -> int:
    """Keys of the user (personal and of applications) that are not revoked."""
    query = select(func.count(ApiKeyRow.id)).where(
        ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None)
    )
    return int(await session.scalar(query) or 0)
