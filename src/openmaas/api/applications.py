"""Applications and their keys; personal keys under /me. Owners and admins only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.deps import MAX_ID, IdPath, PlatformDep, PrincipalDep
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.api.text_guard import PlainName
from openmaas.domain.applications import ApiKey, ApplicationStatus
from openmaas.domain.errors import BadRequest

router = APIRouter(route_class=JsonBodyRoute, tags=["applications"], responses=MANAGEMENT_ERRORS)

# A key lives at most ten years: later dates are mistakes (and overflow some clocks).
MAX_EXPIRY_DAYS = 3650


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PlainName
    description: str = Field("", max_length=4000)
    plan: str | None = Field(None, min_length=1, max_length=64)
    user_id: int | None = Field(None, ge=1, le=MAX_ID, description="Owner (admins only)")


class ApplicationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PlainName | None = None
    description: str | None = Field(None, max_length=4000)
    plan: str | None = Field(None, min_length=1, max_length=64)
    status: ApplicationStatus | None = Field(None, description="Admins only")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PlainName = "default"
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(None, ge=1, le=MAX_EXPIRY_DAYS)


def _expiry(body: KeyCreate) -> datetime | None:
    if body.expires_at is not None and body.expires_in_days is not None:
        raise BadRequest("give expires_at or expires_in_days, not both", code="invalid_expiry")
    if body.expires_in_days is not None:
        return datetime.now(UTC) + timedelta(days=body.expires_in_days)
    if body.expires_at is None:
        return None
    expires = body.expires_at
    try:
        expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires.astimezone(UTC)
    except OverflowError:  # year 9999 with a negative offset, or year 1 with a positive one
        raise BadRequest("expires_at is out of range", code="invalid_expiry") from None
    now = datetime.now(UTC)
    if expires <= now:
        raise BadRequest("expires_at is in the past", code="invalid_expiry")
    if expires > now + timedelta(days=MAX_EXPIRY_DAYS):
        raise BadRequest(
            f"expires_at is at most {MAX_EXPIRY_DAYS} days ahead", code="invalid_expiry"
        )
    return expires


def _shown_once(key: ApiKey, secret: str) -> dict[str, Any]:
    return {**key.to_dict(), "key": secret, "note": "the key is shown only this once"}


@router.get("/applications")
async def list_applications(
    principal: PrincipalDep,
    platform: PlatformDep,
    user_id: int | None = Query(None, ge=1, le=MAX_ID, description="Admins only"),
    include_archived: bool = Query(False, description="Also deleted (archived) applications"),
) -> dict[str, Any]:
    apps = await platform.applications.list(
        principal, user_id=user_id, include_archived=include_archived
    )
    return {"applications": [app.to_dict() for app in apps]}


@router.post("/applications", status_code=201)
async def create_application(
    body: ApplicationCreate, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    app = await platform.applications.create(
        principal,
        name=body.name,
        description=body.description,
        plan=body.plan,
        user_id=body.user_id,
    )
    return app.to_dict()


@router.get("/applications/{application_id}")
async def get_application(
    application_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    return (await platform.applications.get(principal, application_id)).to_dict()


@router.patch("/applications/{application_id}")
async def update_application(
    application_id: IdPath, body: ApplicationUpdate, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    return (await platform.applications.update(principal, application_id, changes)).to_dict()


@router.delete("/applications/{application_id}", status_code=204)
async def delete_application(
    application_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> Response:
    await platform.applications.delete(principal, application_id)
    return Response(status_code=204)


@router.get("/applications/{application_id}/keys")
async def list_keys(
    application_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    keys = await platform.applications.list_keys(principal, application_id)
    return {"keys": [key.to_dict() for key in keys]}


@router.post("/applications/{application_id}/keys", status_code=201)
async def create_key(
    application_id: IdPath, body: KeyCreate, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    key, secret = await platform.applications.create_key(
        principal, application_id, name=body.name, expires_at=_expiry(body)
    )
    return _shown_once(key, secret)


@router.delete("/applications/{application_id}/keys/{key_id}")
async def revoke_key(
    application_id: IdPath, key_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    return (await platform.applications.revoke_key(principal, application_id, key_id)).to_dict()


@router.post("/applications/{application_id}/keys/{key_id}/rotate", status_code=201)
async def rotate_key(
    application_id: IdPath, key_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    key, secret = await platform.applications.rotate_key(principal, application_id, key_id)
    return _shown_once(key, secret)


@router.get("/me")
async def me(principal: PrincipalDep, platform: PlatformDep) -> dict[str, Any]:
    if principal.user_id is None:
        return {"username": principal.username, "role": principal.role.value, "id": None}
    return (await platform.accounts.get(principal.user_id)).to_dict()


@router.get("/me/keys")
async def list_personal_keys(principal: PrincipalDep, platform: PlatformDep) -> dict[str, Any]:
    keys = await platform.applications.list_keys(principal, None)
    return {"keys": [key.to_dict() for key in keys]}


@router.post("/me/keys", status_code=201)
async def create_personal_key(
    body: KeyCreate, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    """A personal key calls the management API as you (not models: use an application's)."""
    key, secret = await platform.applications.create_key(
        principal, None, name=body.name, expires_at=_expiry(body)
    )
    return _shown_once(key, secret)


@router.delete("/me/keys/{key_id}")
async def revoke_personal_key(
    key_id: IdPath, principal: PrincipalDep, platform: PlatformDep
) -> dict[str, Any]:
    return (await platform.applications.revoke_key(principal, None, key_id)).to_dict()
