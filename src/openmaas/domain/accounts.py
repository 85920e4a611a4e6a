"""Who is calling: the principal every authenticated request carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
