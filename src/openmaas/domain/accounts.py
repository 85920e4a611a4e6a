"""Who is calling: users, roles and the principal every authenticated request carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    user_id: int | None = None
    key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str
    role: Role
    disabled: bool
    approved: bool
    has_password: bool
    sso: bool
    created_at: datetime
    archived_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "role": self.role.value,
            "disabled": self.disabled,
            "approved": self.approved,
            "has_password": self.has_password,
            "sso": self.sso,
            "created_at": self.created_at.isoformat(),
        }
