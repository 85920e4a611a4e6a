"""Applications (3scale's model): a developer's client of the API, on one plan, with keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ApplicationStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"  # deleted by its owner: never works again, its usage is kept


@dataclass(frozen=True, slots=True)
class Application:
    id: int
    name: str
    description: str
    user_id: int
    owner: str
    plan: str
    status: ApplicationStatus
    created_at: datetime
    archived_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "user_id": self.user_id,
            "owner": self.owner,
            "plan": self.plan,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: the secret itself is never kept, only its hash and visible prefix."""

    id: int
    name: str
    prefix: str
    user_id: int
    application_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "application_id": self.application_id,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
            "revoked": self.revoked_at is not None,
        }
