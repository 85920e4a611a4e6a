"""The admin console: overview, users, applications, plans, deployments, usage, audit.

Every page and action checks the admin role first; a developer gets a 403 page.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from openmaas.api.plans import PlanCreate
from openmaas.domain.accounts import Role
from openmaas.domain.applications import ApplicationStatus
from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import BadRequest
from openmaas.domain.plans import LIMIT_FIELDS, PRICE_FIELDS
from openmaas.metering.revenue import revenue
from openmaas.portal.charts import bar_chart, days
from openmaas.portal.developer import _id, usage_page
from openmaas.portal.web import PageRoute, admin, done, form, platform_of, render

router = APIRouter(prefix="/console", route_class=PageRoute, include_in_schema=False)
_LIMITS = LIMIT_FIELDS
_PRICES = PRICE_FIELDS


@router.get("")
async def overview(request: Request) -> Response:
    who = admin(request)
    platform = platform_of(request)
    start = date.today() - timedelta(days=29)
    queries = platform.usage_queries
    daily = {
        r["day"]: r for r in await queries.summary(who.principal, group_by=["day"], start=start)
    }
    chart = bar_chart(
        [(day, daily[day]["requests"] if day in daily else 0) for day in days(30)],
        label="Requests per day, every account",
        unit="requests",
    )
    top = await queries.summary(
        who.principal, group_by=["application"], start=start, order_by="requests", limit=10
    )
    models = await queries.summary(who.principal, group_by=["model"], start=start)
    users, user_count = await platform.accounts.list(limit=1000, offset=0)
    applications = await platform.applications.list(who.principal)
    counts = {
        "users": user_count,
        "pending users": sum(1 for u in users if not u.approved),
        "applications": len(applications),
        "pending applications": sum(
            1 for a in applications if a.status is ApplicationStatus.PENDING
        ),
        "deployments": len(platform.serving.table.by_name),
        "routes": len(platform.routing.table),
    }
    names = {a.id: f"{a.name} ({a.owner})" for a in applications}
    return render(
        request,
        "console/overview.html",
        who,
        chart=chart,
        counts=counts,
        top=top,
        models=models,
        names=names,
    )


@router.get("/users")
async def users(request: Request) -> Response:
    who = admin(request)
    found, _ = await platform_of(request).accounts.list(limit=1000, offset=0)
    return render(request, "console/users.html", who, users=found, roles=[r.value for r in Role])


@router.post("/users/{user_id}")
async def update_user(request: Request, user_id: int) -> Response:
    who = admin(request)
    fields = await form(request, who)
    changes: dict[str, Any] = {}
    action = fields.get("action")
    if action == "approve":
        changes["approved"] = True
    elif action in ("disable", "enable"):
        changes["disabled"] = action == "disable"
    elif action == "role" and fields.get("role") in {r.value for r in Role}:
        changes["role"] = fields["role"]
    else:
        raise BadRequest("unknown change")
    user = await platform_of(request).accounts.update(who.principal, _id(user_id), changes)
    return done("/console/users", f"User {user.username} updated.")


@router.get("/applications")
async def applications(request: Request) -> Response:
    who = admin(request)
    platform = platform_of(request)
    return render(
        request,
        "console/applications.html",
        who,
        applications=await platform.applications.list(who.principal),
        plans=await platform.plans.list(),
    )


@router.post("/applications/{application_id}")
async def update_application(request: Request, application_id: int) -> Response:
    who = admin(request)
    fields = await form(request, who)
    changes: dict[str, Any] = {}
    if fields.get("status"):
        if fields["status"] not in {status.value for status in ApplicationStatus}:
            raise BadRequest("unknown status")
        changes["status"] = fields["status"]
    if fields.get("plan"):
        changes["plan"] = fields["plan"]
    app = await platform_of(request).applications.update(
        who.principal, _id(application_id), changes
    )
    return done(
        "/console/applications", f"Application {app.name} is {app.status.value} on {app.plan}."
    )


@router.get("/plans")
async def plans(request: Request) -> Response:
    who = admin(request)
    found = await platform_of(request).plans.list()
    return render(request, "console/plans.html", who, plans=found, limits=_LIMITS, prices=_PRICES)


@router.post("/plans")
async def save_plan(request: Request) -> Response:
    who = admin(request)
    fields = await form(request, who)
    values: dict[str, Any] = {
        "name": fields.get("name", "").strip(),
        "description": fields.get("description", ""),
        "models": [m.strip() for m in fields.get("models", "*").split(",") if m.strip()],
        "approval_required": fields.get("approval_required") == "on",
    }
    for name in _LIMITS:
        if fields.get(name, "").strip():
            values[name] = fields[name].strip()
    for name in _PRICES:
        values[name] = fields.get(name, "").strip() or 0
    try:
        values["rules"] = json.loads(fields.get("rules", "").strip() or "[]")
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise BadRequest(f"rules: not JSON ({where})", code="invalid_plan") from exc
    try:
        plan = PlanCreate(**values).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_plan") from exc
    service = platform_of(request).plans
    existing = {p.name for p in await service.list()}
    if plan["name"] in existing:
        name = plan.pop("name")
        await service.update(who.principal, name, plan)
        return done("/console/plans", f"Plan {name} saved.")
    await service.create(who.principal, plan)
    return done("/console/plans", f"Plan {plan['name']} created.")


@router.get("/deployments")
async def deployments(request: Request) -> Response:
    who = admin(request)
    platform = platform_of(request)
    models, _ = await platform.registry.list_models(limit=500)
    return render(
        request,
        "console/deployments.html",
        who,
        deployments=await platform.serving.list(include_undeployed=False),
        models=models,
        routes=[platform.routing.describe(r) for r in platform.routing.table.routes()],
    )


@router.post("/deployments/deploy")
async def deploy(request: Request) -> Response:
    who = admin(request)
    fields = await form(request, who)
    try:
        batch = int(fields.get("max_batch_size") or 1)
    except ValueError as exc:
        raise BadRequest("the batch size is a whole number") from exc
    if not 1 <= batch <= 4096:
        raise BadRequest("the batch size is 1 to 4096")
    engine = fields.get("engine") or "local"
    try:
        replicas = int(fields["num_replicas"]) if fields.get("num_replicas") else None
    except ValueError as exc:
        raise BadRequest("the number of replicas is a whole number") from exc
    if engine == "local":
        replicas = None  # the field only counts for Ray
    deployed = await platform_of(request).serving.deploy(
        model_name=fields.get("model_name", ""),
        version=fields.get("version") or None,
        endpoint_name=fields.get("endpoint_name") or None,
        config=DeploymentConfig(max_batch_size=batch, engine=engine, num_replicas=replicas),
    )
    return done(
        "/console/deployments",
        f"Deployed {deployed['model_name']} v{deployed['version']} as {deployed['endpoint_name']}.",
    )


@router.post("/deployments/undeploy")
async def undeploy(request: Request) -> Response:
    who = admin(request)
    fields = await form(request, who)
    name = fields.get("endpoint_name", "")
    await platform_of(request).serving.undeploy(endpoint_name=name)
    return done("/console/deployments", f"Undeployed {name}.")


@router.get("/usage")
async def usage(request: Request) -> Response:
    who = admin(request)
    start = date.today() - timedelta(days=29)
    by_user = await platform_of(request).usage_queries.summary(
        who.principal, group_by=["user"], start=start, order_by="requests"
    )
    return await usage_page(request, who, "console/usage.html", by_user=by_user)


@router.get("/billing")
async def billing(request: Request, month: str | None = None) -> Response:
    who = admin(request)
    statement = await platform_of(request).billing.statements(who.principal, month=month)
    return render(request, "billing.html", who, statement=statement, console=True)


@router.get("/revenue")
async def revenue_page(request: Request) -> Response:
    who = admin(request)
    platform = platform_of(request)
    report = await revenue(platform.db, platform.billing)
    unit = f"{report['currency']} minor units"
    charts = {
        name: bar_chart(
            [(row["name"], row["minor_units"]) for row in report[name]],
            label=f"Revenue {title} ({unit})",
            unit=unit,
        )
        for name, title in (
            ("by_month", "per month"),
            ("by_plan", "per plan"),
            ("by_model", "per model"),
            ("by_account", "per account"),
        )
    }
    return render(request, "console/revenue.html", who, report=report, charts=charts)


@router.get("/audit")
async def audit(request: Request) -> Response:
    who = admin(request)
    entries, total = await platform_of(request).audit.list(
        actor=None, action=None, limit=200, offset=0
    )
    return render(request, "console/audit.html", who, entries=entries, total=total)
