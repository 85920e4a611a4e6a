"""Authentication of management calls: the configured admin key or a user's personal key."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from pydantic import SecretStr

from openmaas.access.credentials import hash_key, new_key
from openmaas.access.passwords import hash_password
from openmaas.domain.accounts import Principal, Role
from openmaas.domain.errors import Forbidden, Unauthorized
from openmaas.store import Database, users_repo

_BOOTSTRAP_ADMIN = Principal(username="admin-key", role=Role.ADMIN)


class AccessService:
    def __init__(self, db: Database, *, admin_key: SecretStr | None) -> None:
        self.db = db
        self._admin_key = admin_key.get_secret_value() if admin_key else None

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                code="missing_credentials",
            )
        if self._admin_key and hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return _BOOTSTRAP_ADMIN
        async with self.db.session() as session:
            found = await users_repo.find_key_owner(session=session, key_hash=hash_key(key))
        if found is None:
            raise Unauthorized("invalid API key", code="invalid_credentials")
        key_row, user = found
        now = datetime.now(UTC)
        if key_row.revoked_at is not None or (key_row.expires_at and key_row.expires_at <= now):
            raise Unauthorized("the API key is revoked or expired", code="invalid_credentials")
        if user.disabled:
            raise Forbidden("the account is disabled", code="account_disabled")
        return Principal(
            username=user.username, role=Role(user.role), user_id=user.id, key_id=key_row.id
        )

    async def require_admin(self, key: str | None) -> Principal:
        principal = await self.authenticate(key)
        if not principal.is_admin:
            raise Forbidden("this route needs an admin", code="admin_required")
        return principal

    async def ensure_user(
        self, *, username: str, email: str, password: str | None, role: Role
    ) -> int:
        """Create the user unless it exists; returns its id."""
        async with self.db.session() as session:
            existing = await users_repo.get_user_by_username(session=session, username=username)
            if existing is not None:
                return existing.id
            row = await users_repo.create_user(
                session=session,
                username=username,
                email=email,
                password_hash=hash_password(password) if password else None,
                role=role.value,
            )
            await session.commit()
            return row.id

    async def create_personal_key(self, *, user_id: int, name: str) -> str:
        """A new key for the user; the only time the key itself is seen."""
        key, prefix, key_hash = new_key()
        async with self.db.session() as session:
            await users_repo.add_key(
                session=session, user_id=user_id, name=name, prefix=prefix, key_hash=key_hash
            )
            await session.commit()
        return key
