"""Who is calling: keys and session cookies checked against the in-memory snapshot.

Both the management routes and the inference gate authenticate here, without database
I/O. The configured admin key is compared in constant time; every other key is looked up
by its sha256 in the snapshot.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from pydantic import SecretStr

from openmaas.access.credentials import hash_key, new_key
from openmaas.access.passwords import hash_password
from openmaas.access.sessions import Session, SessionCodec
from openmaas.access.snapshot import KeyEntry, SnapshotStore, UserEntry
from openmaas.domain.accounts import Principal, Role
from openmaas.domain.errors import Forbidden, Unauthorized
from openmaas.store import Database, access_repo, users_repo

ADMIN_KEY_PRINCIPAL = Principal(username="admin-key", role=Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    key: KeyEntry | None  # None for the configured admin key and for sessions
    user: UserEntry | None


def check_user(user: UserEntry) -> None:
    if user.disabled:
        raise Forbidden("the account is disabled", code="account_disabled")
    if not user.approved:
        raise Forbidden("the account waits for an admin's approval", code="account_pending")


class AccessService:
    def __init__(
        self,
        db: Database,
        snapshots: SnapshotStore,
        sessions: SessionCodec,
        *,
        admin_key: SecretStr | None,
    ) -> None:
        self.db = db
        self.snapshots = snapshots
        self.sessions = sessions
        self._admin_key = admin_key.get_secret_value().encode() if admin_key else None

    def identify_key(self, key: str | None) -> Identity:
        """The identity a presented key stands for; 401 or 403 when it stands for nobody."""
        if not key:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                code="missing_credentials",
            )
        encoded = key.encode("utf-8", "surrogateescape")
        if self._admin_key is not None and hmac.compare_digest(encoded, self._admin_key):
            return Identity(ADMIN_KEY_PRINCIPAL, None, None)
        snapshot = self.snapshots.current
        entry = snapshot.keys.get(hash_key(key))
        if entry is None:
            raise Unauthorized("invalid API key", code="invalid_credentials")
        if entry.expires_at is not None and entry.expires_at <= time.time():
            raise Unauthorized("the API key has expired", code="key_expired")
        user = snapshot.users.get(entry.user_id)
        if user is None:
            raise Unauthorized("invalid API key", code="invalid_credentials")
        check_user(user)
        principal = Principal(user.username, user.role, user_id=user.id, key_id=entry.id)
        return Identity(principal, entry, user)

    def identify_session(self, cookie: str | None) -> tuple[Principal, Session] | None:
        """The user a session cookie belongs to, or None when it is absent or void."""
        session = self.sessions.read(cookie)
        if session is None:
            return None
        user = self.snapshots.current.users.get(session.user_id)
        if user is None or session.issued_at < user.sessions_valid_after:
            return None
        check_user(user)
        return Principal(user.username, user.role, user_id=user.id), session

    async def identify_session_now(self, cookie: str | None) -> tuple[Principal, Session] | None:
        """``identify_session``, reading the snapshot again for a user it does not know.

        With several workers, a user who signs up on one and whose next request reaches
        another would otherwise be a stranger there until its next poll. Only a cookie
        this platform signed can cost the (one version read) refresh.
        """
        found = self.identify_session(cookie)
        if found is None:
            session = self.sessions.read(cookie)
            if session is not None and session.user_id not in self.snapshots.current.users:
                await self.snapshots.refresh_if_changed()
                found = self.identify_session(cookie)
        return found

    async def authenticate(self, key: str | None) -> Principal:
        """A management caller: the admin key or a personal key (not an application's)."""
        identity = self.identify_key(key)
        if identity.key is not None and identity.key.application_id is not None:
            raise Forbidden(
                "an application's key only calls models; use a personal key or log in",
                code="application_key",
            )
        return identity.principal

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
            await access_repo.bump_version(session=session)
            await session.commit()
        await self.snapshots.load()
        return row.id

    async def create_personal_key(self, *, user_id: int, name: str) -> str:
        """A new personal key for the user; the only time the key itself is seen."""
        key, prefix, key_hash = new_key()
        async with self.db.session() as session:
            await users_repo.add_key(
                session=session, user_id=user_id, name=name, prefix=prefix, key_hash=key_hash
            )
            await access_repo.bump_version(session=session)
            await session.commit()
        await self.snapshots.load()
        return key
