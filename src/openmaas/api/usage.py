"""Usage and billing: developers see their own account, admins everything."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query, Response

from openmaas.api.deps import MAX_ID, PlatformDep, PrincipalDep
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.metering.usage import parse_group_by, to_csv

router = APIRouter(route_class=JsonBodyRoute, tags=["usage"], responses=MANAGEMENT_ERRORS)

_GROUP_BY = Query(
    None,
    max_length=200,
    description="Comma-separated: day, month, user, application, key, model, version, "
    "endpoint, protocol, status [default: application,model,day]",
)
_DEFAULT_GROUPS = ("application", "model", "day")


async def _rows(
    principal: Any,
    platform: Any,
    group_by: str | None,
    start: date | None,
    end: date | None,
    application_id: int | None,
    model: str | None,
    user_id: int | None,
) -> tuple[list[str], list[dict[str, Any]]]:
    groups = parse_group_by(group_by, _DEFAULT_GROUPS)
    rows = await platform.usage_queries.summary(
        principal,
        group_by=groups,
        start=start,
        end=end,
        application_id=application_id,
        model=model,
        user_id=user_id,
    )
    return groups, rows


@router.get("/usage")
async def usage(
    principal: PrincipalDep,
    platform: PlatformDep,
    group_by: str | None = _GROUP_BY,
    start: date | None = Query(None, description="First UTC day, YYYY-MM-DD"),
    end: date | None = Query(None, description="Last UTC day, YYYY-MM-DD"),
    application_id: int | None = Query(None, ge=1, le=MAX_ID),
    model: str | None = Query(None, max_length=128),
    user_id: int | None = Query(None, ge=1, le=MAX_ID, description="Admins only"),
) -> dict[str, Any]:
    groups, rows = await _rows(
        principal, platform, group_by, start, end, application_id, model, user_id
    )
    return {"group_by": groups, "usage": rows}


@router.get("/usage.csv")
async def usage_csv(
    principal: PrincipalDep,
    platform: PlatformDep,
    group_by: str | None = _GROUP_BY,
    start: date | None = Query(None),
    end: date | None = Query(None),
    application_id: int | None = Query(None, ge=1, le=MAX_ID),
    model: str | None = Query(None, max_length=128),
    user_id: int | None = Query(None, ge=1, le=MAX_ID),
) -> Response:
    groups, rows = await _rows(
        principal, platform, group_by, start, end, application_id, model, user_id
    )
    return Response(
        to_csv(rows, groups),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


@router.get("/billing/statements")
async def statements(
    principal: PrincipalDep,
    platform: PlatformDep,
    month: str | None = Query(None, max_length=7, description="YYYY-MM [default: this month]"),
    user_id: int | None = Query(None, ge=1, le=MAX_ID, description="Admins only"),
) -> dict[str, Any]:
    return await platform.billing.statements(principal, month=month, user_id=user_id)
