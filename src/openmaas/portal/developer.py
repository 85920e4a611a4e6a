"""The developer portal: sign up, log in, applications and keys, the catalogue, usage, billing.

Every page works on the visitor's own things through the same services as the JSON API,
which already confine a developer to their own applications, keys and usage.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from openmaas.access.sessions import SESSION_COOKIE
from openmaas.api.auth import (
    SIGNUP_RECEIVED,
    USERNAME,
    _safe_next,
    client_address,
    end_session,
    start_session,
)
from openmaas.domain.errors import BadRequest, OpenMaaSError
from openmaas.domain.plans import LIMIT_FIELDS, PRICE_FIELDS
from openmaas.domain.usernames import normalise
from openmaas.metering.billing import this_month
from openmaas.portal import catalogue
from openmaas.portal.charts import bar_chart, days
from openmaas.portal.web import (
    PageRoute,
    Visitor,
    anonymous_form,
    done,
    form,
    logged_in,
    platform_of,
    render,
    visitor,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_ID = 2_147_483_647


@router.get("/portal")
async def dashboard(request: Request) -> Response:
    who = logged_in(request)
    platform = platform_of(request)
    applications = await platform.applications.list(who.principal)
    start = date.today() - timedelta(days=29)
    rows = await platform.usage_queries.summary(who.principal, group_by=["day"], start=start)
    per_day = {row["day"]: row["requests"] for row in rows}
    chart = bar_chart(
        [(day, per_day.get(day, 0)) for day in days(30)], label="Requests per day", unit="requests"
    )
    return render(
        request,
        "dashboard.html",
        who,
        applications=applications,
        chart=chart,
        total=sum(per_day.values()),
    )


@router.get("/portal/login")
async def login_page(request: Request, next: str = "/portal") -> Response:
    return render(request, "login.html", visitor(request), next=_safe_next(next))


@router.post("/portal/login")
async def login(request: Request) -> Response:
    fields = await anonymous_form(request)
    platform = platform_of(request)
    target = _safe_next(fields.get("next") or "/portal")
    try:
        user = await platform.accounts.login(
            login=fields.get("username", "")[:255],
            password=fields.get("password", "")[:256],
            address=client_address(request),
        )
    except OpenMaaSError as exc:
        # One message whatever went wrong: the page must not tell who has an account.
        page = render(
            request,
            "login.html",
            None,
            status_code=exc.status_code,
            next=target,
            error=_LOGIN_ERRORS.get(exc.code, _LOGIN_FAILED),
            username=fields.get("username", ""),
        )
        page.headers.update(exc.headers)  # Retry-After of a 429
        return page
    response = RedirectResponse(target, status_code=303)
    start_session(platform, response, user)
    return response


_LOGIN_FAILED = "Wrong username or password, or the account is not active yet."
_LOGIN_ERRORS = {
    "too_many_logins": "Too many failed logins: wait a while before you try again.",
    "database_unavailable": "The service is unavailable: try again in a moment.",
}


@router.post("/portal/logout")
async def logout(request: Request) -> Response:
    who = logged_in(request)
    await form(request, who)
    await end_session(platform_of(request), request)
    response = done("/portal/login", "You are logged out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/portal/signup")
async def signup_page(request: Request) -> Response:
    mode = platform_of(request).settings.signup
    return render(request, "signup.html", visitor(request), mode=mode)


@router.post("/portal/signup")
async def signup(request: Request) -> Response:
    fields = await anonymous_form(request)
    platform = platform_of(request)
    username, email = normalise(fields.get("username", "")), fields.get("email", "").strip()
    password = fields.get("password", "")
    problem = _signup_problem(username, email, password, fields.get("confirm", ""))
    try:
        if problem:
            raise BadRequest(problem, code="invalid_signup")
        await platform.accounts.signup(username=username, email=email, password=password)
    except OpenMaaSError as exc:
        return render(
            request,
            "signup.html",
            None,
            status_code=exc.status_code,
            mode=platform.settings.signup,
            error=exc.message,
            username=username,
            email=email,
        )
    # The same answer whether the account was made or not: the page must not tell who
    # has an account (api/auth.py).
    if platform.settings.signup == "approval":
        return done("/portal/login", f"{SIGNUP_RECEIVED} New accounts wait for an admin.")
    return done("/portal/login", SIGNUP_RECEIVED)


def _signup_problem(username: str, email: str, password: str, confirm: str) -> str | None:
    if not re.fullmatch(USERNAME, username):
        return "Choose a username of 3-64 letters, digits, '.', '_' or '-'."
    if "@" not in email or len(email) > 255:
        return "Give a valid e-mail address."
    if not 8 <= len(password) <= 256:
        return "The password needs at least 8 characters."
    if password != confirm:
        return "The two passwords differ."
    return None


@router.get("/portal/applications")
async def applications(request: Request) -> Response:
    who = logged_in(request)
    platform = platform_of(request)
    plans = await platform.plans.list()
    mine = await platform.applications.list(who.principal)
    return render(request, "applications.html", who, applications=mine, plans=plans)


@router.post("/portal/applications")
async def create_application(request: Request) -> Response:
    who = logged_in(request)
    fields = await form(request, who)
    name = fields.get("name", "").strip()
    if not 1 <= len(name) <= 128:
        raise BadRequest("Give the application a name of up to 128 characters.")
    created = await platform_of(request).applications.create(
        who.principal,
        name=name,
        description=fields.get("description", "")[:4000],
        plan=fields.get("plan") or None,
    )
    note = " It waits for an admin's approval." if created.status.value == "pending" else ""
    return done(f"/portal/applications/{created.id}", f"Application {created.name} created.{note}")


@router.get("/portal/applications/{application_id}")
async def application(request: Request, application_id: int) -> Response:
    who = logged_in(request)
    return await _application_page(request, who, _id(application_id))


async def _application_page(
    request: Request, who: Visitor, application_id: int, **extra: Any
) -> Response:
    platform = platform_of(request)
    app = await platform.applications.get(who.principal, application_id)
    keys = await platform.applications.list_keys(who.principal, application_id)
    plan = await platform.plans.get(app.plan)
    return render(
        request,
        "application.html",
        who,
        app=app,
        keys=keys,
        plan=plan,
        plans=[item.name for item in await platform.plans.list()],
        limits=LIMIT_FIELDS,
        prices=PRICE_FIELDS,
        **extra,
    )


@router.post("/portal/applications/{application_id}/keys")
async def create_key(request: Request, application_id: int) -> Response:
    who = logged_in(request)
    fields = await form(request, who)
    expires_at = None
    if fields.get("expires_in_days"):
        try:
            expiry_days = int(fields["expires_in_days"])
        except ValueError as exc:
            raise BadRequest("The expiry is a whole number of days.") from exc
        if not 1 <= expiry_days <= 3650:
            raise BadRequest("The expiry is 1 to 3650 days.")
        expires_at = datetime.now(UTC) + timedelta(days=expiry_days)
    key, secret = await platform_of(request).applications.create_key(
        who.principal,
        _id(application_id),
        name=(fields.get("name") or "key").strip()[:128],
        expires_at=expires_at,
    )
    # The secret is shown on this one answer and never again: no redirect, no cache.
    response = await _application_page(request, who, application_id, secret=secret, new_key=key)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/portal/applications/{application_id}/keys/{key_id}/{action}")
async def key_action(request: Request, application_id: int, key_id: int, action: str) -> Response:
    who = logged_in(request)
    await form(request, who)
    service = platform_of(request).applications
    if action == "revoke":
        key = await service.revoke_key(who.principal, _id(application_id), _id(key_id))
        return done(f"/portal/applications/{application_id}", f"Key {key.prefix}… revoked.")
    if action != "rotate":
        raise BadRequest(f"unknown action {action!r}")
    key, secret = await service.rotate_key(who.principal, _id(application_id), _id(key_id))
    response = await _application_page(request, who, application_id, secret=secret, new_key=key)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/portal/applications/{application_id}/plan")
async def change_plan(request: Request, application_id: int) -> Response:
    """Move an application to another plan: prices change from now on, never backwards."""
    who = logged_in(request)
    fields = await form(request, who)
    app = await platform_of(request).applications.update(
        who.principal, _id(application_id), {"plan": (fields.get("plan") or "").strip()}
    )
    return done(f"/portal/applications/{app.id}", f"{app.name} is now on plan {app.plan}.")


@router.post("/portal/applications/{application_id}/delete")
async def delete_application(request: Request, application_id: int) -> Response:
    """Archive: the keys stop working at once; usage, statements and invoices stay."""
    who = logged_in(request)
    await form(request, who)
    await platform_of(request).applications.delete(who.principal, _id(application_id))
    return done("/portal/applications", "Application deleted; its usage stays on your bills.")


@router.get("/portal/plans")
async def plans(request: Request) -> Response:
    """Every plan with its limits, prices and rules: public, as the API's ``/plans`` is."""
    found = await platform_of(request).plans.list()
    return render(
        request,
        "plans.html",
        visitor(request),
        plans=found,
        limits=LIMIT_FIELDS,
        prices=PRICE_FIELDS,
    )


@router.get("/portal/models")
async def models(request: Request) -> Response:
    who = logged_in(request)
    entries = await catalogue.entries(platform_of(request), who.principal)
    return render(request, "models.html", who, entries=entries, base=str(request.base_url))


@router.get("/portal/usage")
async def usage(request: Request) -> Response:
    who = logged_in(request)
    return await usage_page(request, who, "usage.html")


async def usage_page(request: Request, who: Visitor, template: str, **extra: Any) -> Response:
    queries = platform_of(request).usage_queries
    start = date.today() - timedelta(days=29)
    daily = await queries.summary(who.principal, group_by=["day"], start=start)
    per_day = {row["day"]: row for row in daily}
    span = days(30)
    requests = [(day, per_day[day]["requests"] if day in per_day else 0) for day in span]
    tokens = [(day, per_day[day]["total_tokens"] if day in per_day else 0) for day in span]
    errors = [(day, per_day[day]["errors"] if day in per_day else 0) for day in span]
    by_model = await queries.summary(
        who.principal, group_by=["model"], start=start, order_by="requests"
    )
    return render(
        request,
        template,
        who,
        requests_chart=bar_chart(requests, label="Requests per day", unit="requests"),
        tokens_chart=bar_chart(tokens, label="Tokens per day", unit="tokens"),
        errors_chart=bar_chart(errors, label="Errors per day", unit="errors"),
        by_model=by_model,
        daily=[per_day[day] for day in span if day in per_day],
        **extra,
    )


@router.get("/portal/billing")
async def billing(request: Request, month: str | None = None) -> Response:
    who = logged_in(request)
    platform = platform_of(request)
    statement = await platform.billing.statements(who.principal, month=month)
    invoices = await platform.invoices.list(who.principal)
    return render(
        request,
        "billing.html",
        who,
        statement=statement,
        invoices=invoices,
        current_month=this_month(),
    )


@router.get("/portal/account")
async def account(request: Request) -> Response:
    who = logged_in(request)
    user = await platform_of(request).accounts.get(who.principal.user_id or 0)
    return render(request, "account.html", who, user=user)


@router.post("/portal/account/password")
async def change_password(request: Request) -> Response:
    who = logged_in(request)
    fields = await form(request, who)
    platform = platform_of(request)
    user_id = who.principal.user_id or 0
    new = fields.get("new_password", "")
    if new != fields.get("confirm", ""):
        raise BadRequest("The two new passwords differ.")
    if not 8 <= len(new) <= 256:
        raise BadRequest("The new password needs at least 8 characters.")
    await platform.accounts.change_password(
        user_id=user_id, current=fields.get("current_password", "")[:256], new=new
    )
    response = done("/portal/account", "Password changed; other sessions are logged out.")
    start_session(platform, response, await platform.accounts.get(user_id))
    return response


def _id(value: int) -> int:
    if not 1 <= value <= MAX_ID:
        raise BadRequest("no such id")
    return value
