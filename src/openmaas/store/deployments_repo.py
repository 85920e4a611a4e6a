"""Queries on deployments and the model versions they serve."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import (
    DeploymentRow,
    ModelAliasRow,
    ModelRow,
    ModelVersionRow,
    ServingVersionRow,
)

LIVE = ("deploying", "active", "failed")


async def bump_version(*, session: AsyncSession) -> None:
    """Tell every worker that deployments or aliases changed (in the caller's transaction)."""
    await session.execute(
        update(ServingVersionRow)
        .where(ServingVersionRow.id == 1)
        .values(version=ServingVersionRow.version + 1)
    )


async def read_version(*, session: AsyncSession) -> int:
    return int(await session.scalar(select(ServingVersionRow.version).limit(1)) or 0)


async def live_endpoint_exists(*, session: AsyncSession, endpoint_name: str) -> bool:
    query = select(func.count()).where(
        DeploymentRow.endpoint_name == endpoint_name, DeploymentRow.undeployed_at.is_(None)
    )
    return bool(await session.scalar(query))


async def add_deployment(
    *,
    session: AsyncSession,
    endpoint_name: str,
    model_name: str,
    version: int,
    model_version_id: int,
    config: dict[str, Any],
) -> DeploymentRow:
    row = DeploymentRow(
        endpoint_name=endpoint_name,
        model_name=model_name,
        version=version,
        model_version_id=model_version_id,
        status="deploying",
        config=config,
    )
    session.add(row)
    await session.flush()
    await bump_version(session=session)
    return row


async def set_status(
    *, session: AsyncSession, deployment_id: int, status: str, error: str | None = None
) -> None:
    values: dict[str, Any] = {"status": status, "error": error}
    if status == "undeployed":
        values["undeployed_at"] = datetime.now(UTC)
    await session.execute(
        update(DeploymentRow).where(DeploymentRow.id == deployment_id).values(**values)
    )
    await bump_version(session=session)


async def live_deployments(*, session: AsyncSession) -> list[tuple[DeploymentRow, ModelVersionRow]]:
    """Every deployment not undeployed, with the version it serves."""
    query = (
        select(DeploymentRow, ModelVersionRow)
        .join(ModelVersionRow, ModelVersionRow.id == DeploymentRow.model_version_id)
        .where(DeploymentRow.undeployed_at.is_(None))
        .order_by(DeploymentRow.id)
    )
    return [(d, v) for d, v in (await session.execute(query)).all()]


async def recent_undeployed(*, session: AsyncSession, limit: int = 100) -> list[DeploymentRow]:
    query = (
        select(DeploymentRow)
        .where(DeploymentRow.undeployed_at.is_not(None))
        .order_by(DeploymentRow.undeployed_at.desc())
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


async def aliases_of_models(
    *, session: AsyncSession, model_names: set[str]
) -> dict[str, dict[str, int]]:
    if not model_names:
        return {}
    query = (
        select(ModelRow.name, ModelAliasRow.alias, ModelAliasRow.version)
        .join(ModelAliasRow, ModelAliasRow.model_id == ModelRow.id)
        .where(ModelRow.name.in_(model_names))
    )
    result: dict[str, dict[str, int]] = {}
    for name, alias, version in await session.execute(query):
        result.setdefault(name, {})[alias] = version
    return result
