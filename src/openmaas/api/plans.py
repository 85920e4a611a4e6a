"""Application plans: anyone may read them (the portal shows them); admins change them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.deps import AdminDep, PlatformDep
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.domain.plans import LIMIT_FIELDS

router = APIRouter(
    route_class=JsonBodyRoute, prefix="/plans", tags=["plans"], responses=MANAGEMENT_ERRORS
)

PLAN_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Limit = Annotated[int | None, Field(ge=1, le=10**15)]
# A number or a string ("0.0015"); kept exact (Decimal), at most 12 digits after the point.
Price = Annotated[
    Decimal,
    Field(ge=0, le=10**9, decimal_places=12, allow_inf_nan=False),
]
ModelPattern = Annotated[str, Field(min_length=1, max_length=128)]
MAX_RULES = 100


class _Limits(BaseModel):
    """Every limit of a plan or a rule; null (or absent) sets none."""

    model_config = ConfigDict(extra="forbid")
    requests_per_second: Limit = None
    requests_per_minute: Limit = None
    requests_per_hour: Limit = None
    requests_per_day: Limit = None
    input_tokens_per_minute: Limit = None
    input_tokens_per_hour: Limit = None
    input_tokens_per_day: Limit = None
    output_tokens_per_minute: Limit = None
    output_tokens_per_hour: Limit = None
    output_tokens_per_day: Limit = None
    tokens_per_minute: Limit = Field(None, description="input + output tokens")
    tokens_per_hour: Limit = Field(None, description="input + output tokens")
    tokens_per_day: Limit = Field(None, description="input + output tokens")
    monthly_token_quota: Limit = Field(None, description="tokens per calendar month (UTC)")


class PlanRuleBody(_Limits):
    """Limits and prices of their own for the models it matches; unset ones are the plan's."""

    models: list[ModelPattern] = Field(
        min_length=1, max_length=1000, description='Model names or patterns ("llama-*")'
    )
    name: str = Field("", max_length=64, description="A label, shown in usage and billing")
    price_per_1k_input_tokens: Price | None = None
    price_per_1k_output_tokens: Price | None = None
    price_per_request: Price | None = None


Rules = Annotated[
    list[PlanRuleBody],
    Field(max_length=MAX_RULES, description="Ordered; the first rule matching a model applies"),
]


class PlanCreate(_Limits):
    name: str = Field(pattern=PLAN_NAME)
    description: str = Field("", max_length=4000)
    models: list[ModelPattern] = Field(
        default_factory=lambda: ["*"],
        max_length=1000,
        description='Model names or patterns ("llama-*"); ["*"] is every model',
    )
    price_per_1k_input_tokens: Price = Decimal(0)
    price_per_1k_output_tokens: Price = Decimal(0)
    price_per_request: Price = Decimal(0)
    approval_required: bool = False
    rules: Rules = Field(default_factory=list)


class PlanUpdate(_Limits):
    """Only the fields sent change; a limit sent as null is lifted; rules are replaced whole."""

    description: str | None = Field(None, max_length=4000)
    models: list[ModelPattern] | None = Field(None, max_length=1000)
    price_per_1k_input_tokens: Price | None = None
    price_per_1k_output_tokens: Price | None = None
    price_per_request: Price | None = None
    approval_required: bool | None = None
    rules: Rules | None = None


PlanName = Path(pattern=PLAN_NAME)


@router.get("")
async def list_plans(platform: PlatformDep) -> dict[str, Any]:
    return {"plans": [plan.to_dict() for plan in await platform.plans.list()]}


@router.get("/{name}")
async def get_plan(platform: PlatformDep, name: str = PlanName) -> dict[str, Any]:
    return (await platform.plans.get(name)).to_dict()


@router.post("", status_code=201)
async def create_plan(body: PlanCreate, admin: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    return (await platform.plans.create(admin, body.model_dump())).to_dict()


@router.patch("/{name}")
async def update_plan(
    body: PlanUpdate, admin: AdminDep, platform: PlatformDep, name: str = PlanName
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    # Null lifts a limit; on the other fields it means "unchanged".
    changes = {
        field: value
        for field, value in changes.items()
        if value is not None or field in LIMIT_FIELDS
    }
    return (await platform.plans.update(admin, name, changes)).to_dict()


@router.delete("/{name}", status_code=204)
async def delete_plan(admin: AdminDep, platform: PlatformDep, name: str = PlanName) -> Response:
    await platform.plans.delete(admin, name)
    return Response(status_code=204)
