"""Accounts: sign-up, login, passwords, single sign-on users, and admins managing users."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from openmaas.access.audit import audit, commit_change
from openmaas.access.login_throttle import LoginThrottle
from openmaas.access.passwords import PasswordHashing, hash_password
from openmaas.access.service import check_user
from openmaas.access.snapshot import SnapshotStore, UserEntry
from openmaas.domain.accounts import Principal, Role, User
from openmaas.domain.errors import Conflict, Forbidden, NotFound, Unauthorized
from openmaas.domain.usernames import normalise
from openmaas.store import Database, access_repo, users_repo
from openmaas.store.tables import UserRow

# Verified against when the login names nobody, so both cases take the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def user_from_row(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        role=Role(row.role),
        disabled=row.disabled,
        approved=row.approved,
        has_password=row.password_hash is not None,
        sso=row.oidc_subject is not None,
        created_at=row.created_at,
        archived_at=row.archived_at,
    )


async def _taken(session: Any, username: str, email: str) -> str | None:
    """Which of a new account's name (or a look-alike of it) and e-mail is taken."""
    if await users_repo.get_user_by_skeleton(session=session, username=username) is not None:
        return "username"
    if await users_repo.get_user_by_email(session=session, email=email) is not None:
        return "e-mail address"
    return None


def _entry(row: UserRow) -> UserEntry:
    return UserEntry(row.id, row.username, Role(row.role), row.disabled, row.approved, 0.0)


class AccountService:
    def __init__(
        self,
        db: Database,
        snapshots: SnapshotStore,
        *,
        signup: str,
        hashing: PasswordHashing,
        throttle: LoginThrottle,
    ) -> None:
        self.db = db
        self.snapshots = snapshots
        self.signup_mode = signup
        self.hashing = hashing
        self.throttle = throttle

    async def signup(self, *, username: str, email: str, password: str) -> User | None:
        """The new account, or None when the name (or a look-alike) or the e-mail address
        is taken. Both take the same steps, so that callers can answer alike."""
        if self.signup_mode == "closed":
            raise Forbidden("sign-up is closed; ask an admin for an account", code="signup_closed")
        username, email = normalise(username), email.strip()
        password_hash = await self.hashing.hash(password)
        async with self.db.session() as session:
            taken = await _taken(session, username, email)
            if taken:
                # Audited, which also makes a refusal cost what a creation costs.
                actor = Principal(username, Role.DEVELOPER)
                audit(session, actor, "user.signup_refused", f"user:{username}", reason=taken)
                await commit_change(session, self.snapshots)
                return None
            try:
                row = await users_repo.create_user(
                    session=session,
                    username=username,
                    email=email,
                    password_hash=password_hash,
                    role=Role.DEVELOPER.value,
                    approved=self.signup_mode == "open",
                )
            except Conflict:  # taken by a sign-up that ran at the same time
                return None
            actor = Principal(username, Role.DEVELOPER, user_id=row.id)
            audit(session, actor, "user.signup", f"user:{row.id}", approved=row.approved)
            await commit_change(session, self.snapshots)
        return user_from_row(row)

    async def login(self, *, login: str, password: str, address: str | None = None) -> User:
        """The user, when the password is right; 429 after too many failures."""
        async with self.throttle.attempt(login, address):
            async with self.db.session() as session:
                row = await users_repo.get_user_by_login(session=session, login=login)
            stored = row.password_hash if row is not None else _DUMMY_HASH
            valid = await self.hashing.verify(stored, password)
            if row is None or not valid:
                raise Unauthorized("wrong username or password", code="invalid_login")
        check_user(_entry(row))
        return user_from_row(row)

    async def end_sessions(self, user_id: int) -> None:
        """Log the user out: every session issued until now stops working, everywhere."""
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
            if row is None:
                return
            row.sessions_ended_at = datetime.now(UTC)
            await commit_change(session, self.snapshots)

    async def change_password(self, *, user_id: int, current: str | None, new: str) -> None:
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
            if row is None:
                raise NotFound("no such user", code="user_not_found")
            # A user who only ever signed in through single sign-on may set a first password.
            if row.password_hash is not None and not await self.hashing.verify(
                row.password_hash, current or ""
            ):
                raise Unauthorized("the current password is wrong", code="invalid_login")
            row.password_hash = await self.hashing.hash(new)
            row.password_changed_at = datetime.now(UTC)
            actor = Principal(row.username, Role(row.role), user_id=row.id)
            audit(session, actor, "user.password", f"user:{row.id}")
            await commit_change(session, self.snapshots)

    async def get(self, user_id: int) -> User:
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
        if row is None:
            raise NotFound("no such user", code="user_not_found")
        return user_from_row(row)

    async def list(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        async with self.db.session() as session:
            rows, total = await users_repo.list_users(session=session, limit=limit, offset=offset)
        return [user_from_row(row) for row in rows], total

    async def create(
        self, actor: Principal, *, username: str, email: str, password: str | None, role: Role
    ) -> User:
        username, email = normalise(username), email.strip()
        password_hash = await self.hashing.hash(password) if password else None
        async with self.db.session() as session:
            taken = await _taken(session, username, email)
            if taken:
                raise Conflict(f"the {taken} is taken", code="user_exists")
            row = await users_repo.create_user(
                session=session,
                username=username,
                email=email,
                password_hash=password_hash,
                role=role.value,
            )
            audit(session, actor, "user.create", f"user:{row.id}", username=username, role=role)
            await commit_change(session, self.snapshots)
        return user_from_row(row)

    async def update(self, actor: Principal, user_id: int, changes: dict[str, Any]) -> User:
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
            if row is None:
                raise NotFound("no such user", code="user_not_found")
            if row.id == actor.user_id and (
                changes.get("disabled") or changes.get("role", row.role) != row.role
            ):
                raise Forbidden("admins cannot demote or disable themselves", code="self_change")
            if row.archived_at is not None:
                raise Conflict("the user is archived", code="user_archived")
            users_repo.apply(row, changes)
            audit(session, actor, "user.update", f"user:{row.id}", **changes)
            await commit_change(session, self.snapshots)
        return user_from_row(row)

    async def archive(self, actor: Principal, user_id: int) -> User:
        """Delete a user as far as anyone can tell: disabled, keys revoked, applications
        archived; their usage, statements and invoices stay (an admin may purge them)."""
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
            if row is None:
                raise NotFound("no such user", code="user_not_found")
            if row.id == actor.user_id:
                raise Forbidden("admins cannot delete themselves", code="self_change")
            if row.archived_at is None:
                now = datetime.now(UTC)
                row.archived_at = now
                row.disabled = True
                archived = await access_repo.archive_applications(
                    session=session, user_id=row.id, now=now
                )
                revoked = await users_repo.revoke_keys(session=session, user_id=row.id, now=now)
                audit(
                    session,
                    actor,
                    "user.archive",
                    f"user:{row.id}",
                    applications=archived,
                    keys=revoked,
                )
                await commit_change(session, self.snapshots)
        return user_from_row(row)

    async def sso_user(
        self, *, subject: str, email: str | None, email_verified: bool, username: str | None
    ) -> User:
        """The user of a single sign-on identity: linked before, matched by e-mail, or new."""
        async with self.db.session() as session:
            row = await users_repo.get_user_by_oidc_subject(session=session, subject=subject)
            if row is None and email and email_verified:
                row = await users_repo.get_user_by_email(session=session, email=email)
                if row is not None:
                    row.oidc_subject = subject
                    actor = Principal(row.username, Role(row.role), user_id=row.id)
                    audit(session, actor, "user.sso_link", f"user:{row.id}", subject=subject)
                    await commit_change(session, self.snapshots)
            if row is None:
                if self.signup_mode == "closed":
                    raise Forbidden(
                        "sign-up is closed; ask an admin for an account", code="signup_closed"
                    )
                name = await self._free_username(session, username or (email or "").split("@")[0])
                row = await users_repo.create_user(
                    session=session,
                    username=name,
                    email=email or f"{name}@sso.invalid",
                    password_hash=None,
                    role=Role.DEVELOPER.value,
                    approved=self.signup_mode == "open",
                    oidc_subject=subject,
                )
                actor = Principal(name, Role.DEVELOPER, user_id=row.id)
                audit(session, actor, "user.signup", f"user:{row.id}", sso=True)
                await commit_change(session, self.snapshots)
        check_user(_entry(row))
        return user_from_row(row)

    @staticmethod
    async def _free_username(session: Any, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "", normalise(wanted))[:48] or "user"
        name = base
        while await users_repo.get_user_by_skeleton(session=session, username=name) is not None:
            name = f"{base}-{secrets.token_hex(2)}"
        return name
