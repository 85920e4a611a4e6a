"""The in-memory mirror of users, keys, applications and plans that every request reads.

Requests never query the database to authenticate or admit: they read the current
``AccessSnapshot``. Each worker polls one counter row (``access_version``) and reloads the
whole snapshot when it moved; writers bump the counter in the same transaction as their
change and reload their own worker at once, so a change is visible here immediately and on
every other worker within ``access_refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from openmaas.background import Periodic
from openmaas.domain.accounts import Role
from openmaas.domain.applications import ApplicationStatus
from openmaas.domain.plans import LIMIT_FIELDS, PRICE_FIELDS, Plan, PlanRule
from openmaas.store import Database, access_repo
from openmaas.store.tables import PlanRow

logger = logging.getLogger("openmaas.access")


@dataclass(frozen=True, slots=True)
class UserEntry:
    id: int
    username: str
    role: Role
    disabled: bool
    approved: bool
    # Sessions issued before this POSIX time are void.
    sessions_valid_after: float


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    user_id: int
    application_id: int | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ApplicationEntry:
    id: int
    user_id: int
    plan_id: int
    status: ApplicationStatus


@dataclass(frozen=True, slots=True)
class AccessSnapshot:
    version: int = -1
    users: dict[int, UserEntry] = field(default_factory=dict)
    keys: dict[str, KeyEntry] = field(default_factory=dict)  # by sha256 of the key
    applications: dict[int, ApplicationEntry] = field(default_factory=dict)
    plans: dict[int, Plan] = field(default_factory=dict)


def plan_from_row(row: PlanRow) -> Plan:
    return Plan(
        id=row.id,
        name=row.name,
        description=row.description,
        models=tuple(row.models or ()),
        **{name: getattr(row, name) for name in LIMIT_FIELDS},
        **{name: getattr(row, name) for name in PRICE_FIELDS},
        approval_required=row.approval_required,
        rules=tuple(PlanRule.from_dict(rule) for rule in row.rules or ()),
        created_at=row.created_at,
    )


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class SnapshotStore:
    def __init__(self, db: Database, *, refresh_seconds: float) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.current = AccessSnapshot()
        # A database hiccup keeps the last good snapshot; the next poll retries.
        self._poller = Periodic(
            "openmaas-access-snapshot",
            refresh_seconds,
            self.refresh_if_changed,
            logger=logger,
            failure="could not refresh the access snapshot",
        )
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read everything again; called at start, after local changes and when polled."""
        async with self._lock:
            async with self.db.session() as session:
                rows = await access_repo.load_snapshot(session=session)
            self.current = AccessSnapshot(
                version=rows.version,
                users={
                    u.id: UserEntry(
                        id=u.id,
                        username=u.username,
                        role=Role(u.role),
                        disabled=u.disabled,
                        approved=u.approved,
                        sessions_valid_after=max(
                            _timestamp(u.password_changed_at) or 0.0,
                            _timestamp(u.sessions_ended_at) or 0.0,
                        ),
                    )
                    for u in rows.users
                },
                keys={
                    k.key_hash: KeyEntry(
                        id=k.id,
                        user_id=k.user_id,
                        application_id=k.application_id,
                        expires_at=_timestamp(k.expires_at),
                    )
                    for k in rows.keys
                },
                applications={
                    a.id: ApplicationEntry(
                        id=a.id,
                        user_id=a.user_id,
                        plan_id=a.plan_id,
                        status=ApplicationStatus(a.status),
                    )
                    for a in rows.applications
                },
                plans={p.id: plan_from_row(p) for p in rows.plans},
            )

    async def refresh_if_changed(self) -> None:
        async with self.db.session() as session:
            version = await access_repo.read_version(session=session)
        if version != self.current.version:
            await self.load()

    async def start(self) -> None:
        await self.load()
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()
