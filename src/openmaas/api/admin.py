"""Admin console routes: users, the audit log, top consumers and error rates."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.auth import EMAIL, Username
from openmaas.api.deps import AdminDep, IdPath, PlatformDep, require_admin
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.domain.accounts import Role

router = APIRouter(
    responses=MANAGEMENT_ERRORS,
    route_class=JsonBodyRoute,
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    email: str = Field(max_length=255, pattern=EMAIL)
    password: str | None = Field(None, min_length=8, max_length=256)
    role: Role = Role.DEVELOPER


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = None
    approved: bool | None = None


@router.get("/users")
async def list_users(
    platform: PlatformDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict[str, Any]:
    users, total = await platform.accounts.list(limit=limit, offset=offset)
    return {"users": [user.to_dict() for user in users], "total": total}


@router.post("/users", status_code=201)
async def create_user(body: UserCreate, admin: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    user = await platform.accounts.create(
        admin, username=body.username, email=body.email, password=body.password, role=body.role
    )
    return user.to_dict()


@router.get("/users/{user_id}")
async def get_user(user_id: IdPath, platform: PlatformDep) -> dict[str, Any]:
    return (await platform.accounts.get(user_id)).to_dict()


@router.patch("/users/{user_id}")
async def update_user(
    user_id: IdPath, body: UserUpdate, admin: AdminDep, platform: PlatformDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    return (await platform.accounts.update(admin, user_id, changes)).to_dict()


@router.delete("/users/{user_id}")
async def archive_user(user_id: IdPath, admin: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    """Delete a user: archived (disabled, keys revoked, applications archived), history kept."""
    return (await platform.accounts.archive(admin, user_id)).to_dict()


@router.post("/users/{user_id}/purge")
async def purge_user(user_id: IdPath, admin: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    """Remove an archived user, their keys, applications and invoiced usage (audited)."""
    return await platform.purge.user(admin, user_id)


@router.post("/applications/{application_id}/purge")
async def purge_application(
    application_id: IdPath, admin: AdminDep, platform: PlatformDep
) -> dict[str, Any]:
    """Remove an archived application, its keys and its invoiced usage (audited)."""
    return await platform.purge.application(admin, application_id)


@router.get("/audit")
async def audit_log(
    platform: PlatformDep,
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict[str, Any]:
    entries, total = await platform.audit.list(
        actor=actor, action=action, limit=limit, offset=offset
    )
    return {"entries": entries, "total": total}


@router.get("/usage/top")
async def top_consumers(
    admin: AdminDep,
    platform: PlatformDep,
    by: Literal["user", "application", "model"] = "application",
    metric: Literal["tokens", "requests"] = "tokens",
    start: date | None = None,
    end: date | None = None,
    limit: int = Query(10, ge=1, le=1000),
) -> dict[str, Any]:
    """The heaviest users, applications or models, with their error rates."""
    rows = await platform.usage_queries.summary(
        admin, group_by=[by], start=start, end=end, order_by=metric, limit=limit
    )
    return {"by": by, "metric": metric, "top": rows}
