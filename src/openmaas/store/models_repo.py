"""Queries on models, versions and aliases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.domain.errors import Conflict, NotFound
from openmaas.domain.models import Model, ModelVersion, Signature
from openmaas.store import deployments_repo
from openmaas.store.inserts import insert_unique
from openmaas.store.tables import DeploymentRow, ModelAliasRow, ModelRow, ModelVersionRow

LIVE_DEPLOYMENT_STATES = ("deploying", "active")


async def get_model_row(*, session: AsyncSession, name: str, for_update: bool = False) -> ModelRow:
    query = select(ModelRow).where(ModelRow.name == name)
    if for_update:
        # Serialises version numbering per model on PostgreSQL (SQLite ignores it and
        # serialises writers anyway).
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"model {name!r} not found", code="model_not_found")
    return row


async def create_model(
    *,
    session: AsyncSession,
    name: str,
    description: str,
    task: str,
    tags: list[str],
    owner: str | None,
) -> ModelRow:
    row = ModelRow(name=name, description=description, task=task, tags=tags, owner=owner)
    return await insert_unique(
        session, row, Conflict(f"model {name!r} already exists", code="model_exists")
    )


async def list_models(
    *,
    session: AsyncSession,
    task: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ModelRow], int]:
    query = select(ModelRow)
    if task:
        query = query.where(ModelRow.task == task)
    if search:
        query = query.where(ModelRow.name.contains(search, autoescape=True))
    rows = list((await session.scalars(query.order_by(ModelRow.name))).all())
    if tag:
        # Tags are a JSON list; filtering in Python keeps one query for SQLite and PostgreSQL.
        rows = [row for row in rows if tag in (row.tags or [])]
    return rows[offset : offset + limit], len(rows)


async def version_summaries(
    *, session: AsyncSession, model_ids: list[int]
) -> dict[int, tuple[int | None, int]]:
    """Latest version number and version count of each model, in one query."""
    if not model_ids:
        return {}
    query = (
        select(ModelVersionRow.model_id, func.max(ModelVersionRow.version), func.count())
        .where(ModelVersionRow.model_id.in_(model_ids))
        .group_by(ModelVersionRow.model_id)
    )
    found = {model_id: (latest, count) for model_id, latest, count in await session.execute(query)}
    return {model_id: found.get(model_id, (None, 0)) for model_id in model_ids}


async def aliases_of(*, session: AsyncSession, model_ids: list[int]) -> dict[int, dict[str, int]]:
    result: dict[int, dict[str, int]] = {model_id: {} for model_id in model_ids}
    if not model_ids:
        return result
    query = select(ModelAliasRow).where(ModelAliasRow.model_id.in_(model_ids))
    for alias in await session.scalars(query):
        result[alias.model_id][alias.alias] = alias.version
    return result


async def to_models(*, session: AsyncSession, rows: list[ModelRow]) -> list[Model]:
    ids = [row.id for row in rows]
    summaries = await version_summaries(session=session, model_ids=ids)
    aliases = await aliases_of(session=session, model_ids=ids)
    return [
        Model(
            name=row.name,
            description=row.description,
            task=row.task,
            tags=list(row.tags or []),
            owner=row.owner,
            created_at=row.created_at,
            updated_at=row.updated_at,
            latest_version=summaries[row.id][0],
            version_count=summaries[row.id][1],
            aliases=aliases[row.id],
        )
        for row in rows
    ]


async def update_model(*, session: AsyncSession, row: ModelRow, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(row, field, value)
    await session.flush()


async def next_version_number(*, session: AsyncSession, model_id: int) -> int:
    latest = await session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model_id)
    )
    return (latest or 0) + 1


async def add_version(*, session: AsyncSession, row: ModelVersionRow) -> ModelVersionRow:
    return await insert_unique(
        session,
        row,
        Conflict(
            "another version was registered at the same moment; retry",
            code="version_conflict",
        ),
    )


async def get_version_row(
    *, session: AsyncSession, model: ModelRow, version: int | None, alias: str | None
) -> ModelVersionRow:
    if alias is not None:
        target = await session.scalar(
            select(ModelAliasRow.version).where(
                ModelAliasRow.model_id == model.id, ModelAliasRow.alias == alias
            )
        )
        if target is None:
            raise NotFound(f"model {model.name!r} has no alias {alias!r}", code="alias_not_found")
        version = target
    query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
    if version is None:
        query = query.order_by(ModelVersionRow.version.desc()).limit(1)
    else:
        query = query.where(ModelVersionRow.version == version)
    row = await session.scalar(query)
    if row is None:
        what = f"version {version}" if version is not None else "any version"
        raise NotFound(f"model {model.name!r} has no {what}", code="version_not_found")
    return row


async def list_version_rows(*, session: AsyncSession, model: ModelRow) -> list[ModelVersionRow]:
    query = (
        select(ModelVersionRow)
        .where(ModelVersionRow.model_id == model.id)
        .order_by(ModelVersionRow.version)
    )
    return list((await session.scalars(query)).all())


async def deployed_version_ids(*, session: AsyncSession, version_ids: list[int]) -> set[int]:
    if not version_ids:
        return set()
    query = select(DeploymentRow.model_version_id).where(
        DeploymentRow.model_version_id.in_(version_ids),
        DeploymentRow.status.in_(LIVE_DEPLOYMENT_STATES),
    )
    return set((await session.scalars(query)).all())


async def to_versions(
    *, session: AsyncSession, model: ModelRow, rows: list[ModelVersionRow]
) -> list[ModelVersion]:
    aliases = (await aliases_of(session=session, model_ids=[model.id]))[model.id]
    deployed = await deployed_version_ids(session=session, version_ids=[r.id for r in rows])
    return [
        ModelVersion(
            model_name=model.name,
            version=row.version,
            runtime=row.runtime,
            artifact_filename=row.artifact_filename,
            artifact_path=row.artifact_path,
            artifact_sha256=row.artifact_sha256,
            artifact_size=row.artifact_size,
            signature=Signature.from_dict(row.signature),
            metrics=dict(row.metrics or {}),
            description=row.description,
            allow_code=row.allow_code,
            created_at=row.created_at,
            options=dict(row.options or {}),
            aliases=sorted(name for name, v in aliases.items() if v == row.version),
            deployed=row.id in deployed,
        )
        for row in rows
    ]


async def delete_version(*, session: AsyncSession, model: ModelRow, row: ModelVersionRow) -> None:
    await session.execute(
        delete(ModelAliasRow).where(
            ModelAliasRow.model_id == model.id, ModelAliasRow.version == row.version
        )
    )
    await session.execute(delete(DeploymentRow).where(DeploymentRow.model_version_id == row.id))
    await session.delete(row)
    await session.flush()
    await deployments_repo.bump_version(session=session)


async def delete_model(*, session: AsyncSession, model: ModelRow) -> None:
    version_ids = select(ModelVersionRow.id).where(ModelVersionRow.model_id == model.id)
    await session.execute(
        delete(DeploymentRow).where(DeploymentRow.model_version_id.in_(version_ids))
    )
    await session.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model.id))
    await session.execute(delete(ModelAliasRow).where(ModelAliasRow.model_id == model.id))
    await session.delete(model)
    await session.flush()
    await deployments_repo.bump_version(session=session)


async def set_alias(*, session: AsyncSession, model: ModelRow, alias: str, version: int) -> None:
    existing = await session.get(ModelAliasRow, (model.id, alias))
    if existing is None:
        session.add(ModelAliasRow(model_id=model.id, alias=alias, version=version))
    else:
        existing.version = version
    await session.flush()
    await deployments_repo.bump_version(session=session)


async def delete_alias(*, session: AsyncSession, model: ModelRow, alias: str) -> None:
    existing = await session.get(ModelAliasRow, (model.id, alias))
    if existing is None:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}", code="alias_not_found")
    await session.delete(existing)
    await session.flush()
    await deployments_repo.bump_version(session=session)


async def registry_counts(*, session: AsyncSession) -> dict[str, Any]:
    models = await session.scalar(select(func.count()).select_from(ModelRow))
    versions = await session.scalar(select(func.count()).select_from(ModelVersionRow))
    by_status = dict(
        (status, count)
        for status, count in await session.execute(
            select(DeploymentRow.status, func.count()).group_by(DeploymentRow.status)
        )
    )
    return {"models": models or 0, "versions": versions or 0, "deployments": by_status}


async def artifact_rows(*, session: AsyncSession) -> list[tuple[str, str, int]]:
    """(key, sha256, size) of every registered version's artifact, oldest first."""
    query = select(
        ModelVersionRow.artifact_path,
        ModelVersionRow.artifact_sha256,
        ModelVersionRow.artifact_size,
    ).order_by(ModelVersionRow.id)
    return [(str(k), str(h), int(n)) for k, h, n in await session.execute(query)]
