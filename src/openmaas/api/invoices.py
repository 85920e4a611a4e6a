"""Invoices and the usage export: developers see their own, admins everyone's."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.deps import MAX_ID, AdminDep, PlatformDep, PrincipalDep
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.domain.errors import Conflict
from openmaas.metering.billing import this_month
from openmaas.metering.exports import invoice_csv, usage_csv
from openmaas.metering.invoices import previous_month
from openmaas.portal.web import templates

router = APIRouter(route_class=JsonBodyRoute, tags=["billing"], responses=MANAGEMENT_ERRORS)

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
InvoiceNumber = Path(pattern=r"^\d{4}-\d{2}-\d{4,6}$", description="e.g. 2026-10-0001")


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str | None = Field(None, pattern=MONTH, description="YYYY-MM [default: last month]")


@router.get("/invoices")
async def list_invoices(
    principal: PrincipalDep,
    platform: PlatformDep,
    month: str | None = Query(None, pattern=MONTH),
    user_id: int | None = Query(None, ge=1, le=MAX_ID, description="Admins only"),
) -> dict[str, Any]:
    invoices = await platform.invoices.list(principal, user_id=user_id, month=month)
    return {"invoices": invoices}


@router.post("/invoices/close")
async def close_month(
    admin: AdminDep, platform: PlatformDep, body: CloseBody | None = None
) -> dict[str, Any]:
    """Close a month now (the background job does it at the start of each month)."""
    month = (body.month if body else None) or previous_month(this_month())
    numbers = await platform.invoices.close(month, closed_by=f"admin:{admin.username}")
    return {"month": month, "invoices": numbers, "closed_now": bool(numbers)}


@router.get("/invoices/{number}", response_model=None)
async def get_invoice(
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    number: str = InvoiceNumber,
    format: Literal["json", "csv", "html"] = Query("json"),
) -> dict[str, Any] | Response:
    invoice = await platform.invoices.get(principal, number)
    if format == "csv":
        return Response(
            invoice_csv(invoice),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="invoice-{number}.csv"'},
        )
    if format == "html":
        page = templates.get_template("invoice_print.html").render(invoice=invoice)
        return HTMLResponse(page)
    return invoice


@router.api_route("/invoices/{number}", methods=["PUT", "PATCH", "DELETE"], include_in_schema=False)
async def change_invoice(principal: PrincipalDep, number: str = InvoiceNumber) -> Response:
    raise Conflict(
        "a closed invoice never changes; late usage goes onto the next invoice",
        code="invoice_closed",
    )


@router.get("/usage/export", response_model=None)
async def usage_export(
    principal: PrincipalDep,
    platform: PlatformDep,
    format: Literal["csv", "json"] = Query("json"),
    start: date | None = Query(None, description="First UTC day, YYYY-MM-DD"),
    end: date | None = Query(None, description="Last UTC day, YYYY-MM-DD"),
    user_id: int | None = Query(None, ge=1, le=MAX_ID, description="Admins only"),
) -> dict[str, Any] | Response:
    """Billable usage by day, application and model, at the prices it was used at."""
    rows = await platform.billing.export(principal, start=start, end=end, user_id=user_id)
    if format == "csv":
        return Response(
            usage_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage-export.csv"'},
        )
    return {"currency": platform.billing.currency, "usage": rows}
