"""The model registry: models, versions with artifacts, aliases, and how references resolve."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from openmaas.artifacts import ArtifactStore, StagedArtifact, safe_filename
from openmaas.domain.errors import BadRequest, Conflict
from openmaas.domain.models import (
    EMPTY_SIGNATURE,
    Model,
    ModelRef,
    ModelVersion,
    Signature,
    Task,
    validate_alias,
    validate_name,
)
from openmaas.runtimes import ArtifactSpec, runtime_for_filename, runtime_named
from openmaas.store import Database, models_repo
from openmaas.store.tables import ModelVersionRow

_REGISTER_ATTEMPTS = 10
# Path segments of the management API that a model name would shadow.
_RESERVED_NAMES = frozenset({"stats", "resolve"})


@dataclass(frozen=True, slots=True)
class VersionUpload:
    filename: str
    runtime: str | None = None
    description: str = ""
    metrics: Mapping[str, float] | None = None
    signature: Signature = EMPTY_SIGNATURE
    allow_code: bool = False
    options: Mapping[str, Any] | None = None


def _validate_task(task: str) -> str:
    if task not in {t.value for t in Task}:
        raise BadRequest(
            f"unknown task {task!r}; one of {', '.join(t.value for t in Task)}",
            code="invalid_task",
        )
    return task


def _validate_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise BadRequest("metrics are an object of numbers", code="invalid_metrics")
    try:
        return {str(k): float(v) for k, v in metrics.items()}
    except (TypeError, ValueError) as exc:
        raise BadRequest("metrics are an object of numbers", code="invalid_metrics") from exc


class RegistryService:
    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts

    async def create_model(
        self,
        *,
        name: str,
        description: str = "",
        task: str = Task.OTHER.value,
        tags: list[str] | None = None,
        owner: str | None = None,
    ) -> Model:
        validate_name(name)
        if name in _RESERVED_NAMES:
            raise BadRequest(f"{name!r} is a reserved name", code="invalid_name")
        async with self.db.session() as session:
            row = await models_repo.create_model(
                session=session,
                name=name,
                description=description,
                task=_validate_task(task),
                tags=list(tags or []),
                owner=owner,
            )
            await session.commit()
            return (await models_repo.to_models(session=session, rows=[row]))[0]

    async def list_models(
        self,
        *,
        task: str | None = None,
        tag: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Model], int]:
        async with self.db.session() as session:
            rows, total = await models_repo.list_models(
                session=session, task=task, tag=tag, search=search, limit=limit, offset=offset
            )
            return await models_repo.to_models(session=session, rows=rows), total

    async def get_model(self, name: str) -> Model:
        async with self.db.session() as session:
            row = await models_repo.get_model_row(session=session, name=validate_name(name))
            return (await models_repo.to_models(session=session, rows=[row]))[0]

    async def update_model(self, name: str, changes: Mapping[str, Any]) -> Model:
        allowed = {"description", "task", "tags", "owner"}
        unknown = set(changes) - allowed
        if unknown:
            raise BadRequest(f"cannot change {', '.join(sorted(unknown))}", code="invalid_field")
        if "task" in changes:
            _validate_task(changes["task"])
        async with self.db.session() as session:
            row = await models_repo.get_model_row(session=session, name=validate_name(name))
            await models_repo.update_model(session=session, row=row, changes=dict(changes))
            await session.commit()
            return (await models_repo.to_models(session=session, rows=[row]))[0]

    async def delete_model(self, name: str) -> None:
        async with self.db.session() as session:
            row = await models_repo.get_model_row(session=session, name=validate_name(name))
            version_rows = await models_repo.list_version_rows(session=session, model=row)
            deployed = await models_repo.deployed_version_ids(
                session=session, version_ids=[v.id for v in version_rows]
            )
            if deployed:
                numbers = sorted(v.version for v in version_rows if v.id in deployed)
                raise Conflict(
                    f"model {name!r} has deployed versions {numbers}; undeploy them first",
                    code="version_deployed",
                )
            await models_repo.delete_model(session=session, model=row)
            await session.commit()
        await self.artifacts.remove_model(name)

    async def register_version(
        self, name: str, chunks: AsyncIterator[bytes], upload: VersionUpload
    ) -> ModelVersion:
        validate_name(name)
        safe_filename(upload.filename)
        metrics = _validate_metrics(upload.metrics)
        runtime = (
            runtime_named(upload.runtime)
            if upload.runtime
            else runtime_for_filename(upload.filename)
        )
        lowered = upload.filename.lower()
        if not upload.allow_code and any(lowered.endswith(s) for s in runtime.runs_code):
            raise BadRequest(
                f"{upload.filename!r} runs code when it loads (pickle or Python); an admin "
                "must set allow_code for this version",
                code="code_not_allowed",
            )
        await self.get_model(name)  # 404 before reading a large upload
        staged = await self.artifacts.stage(chunks, filename=upload.filename)
        try:
            spec = ArtifactSpec(
                path=staged.path,
                signature=upload.signature,
                allow_code=upload.allow_code,
                options=dict(upload.options or {}),
            )
            signature = await anyio.to_thread.run_sync(runtime.inspect, spec)
            return await self._file_version(name, staged, upload, runtime.name, signature, metrics)
        finally:
            self.artifacts.discard(staged)

    async def _file_version(
        self,
        name: str,
        staged: StagedArtifact,
        upload: VersionUpload,
        runtime: str,
        signature: Signature,
        metrics: dict[str, float],
    ) -> ModelVersion:
        for attempt in range(_REGISTER_ATTEMPTS):
            if attempt:
                await anyio.sleep(random.uniform(0.005, 0.05) * attempt)
            async with self.db.session() as session:
                model = await models_repo.get_model_row(session=session, name=name, for_update=True)
                number = await models_repo.next_version_number(session=session, model_id=model.id)
                row = ModelVersionRow(
                    model_id=model.id,
                    version=number,
                    runtime=runtime,
                    artifact_filename=staged.filename,
                    artifact_path=f"{name}/{number}/{staged.filename}",
                    artifact_sha256=staged.sha256,
                    artifact_size=staged.size,
                    signature=signature.to_dict(),
                    metrics=metrics,
                    options=dict(upload.options or {}),
                    description=upload.description,
                    allow_code=upload.allow_code,
                )
                try:
                    await models_repo.add_version(session=session, row=row)
                except Conflict:
                    continue
                await self.artifacts.publish(staged, model_name=name, version=number)
                try:
                    await session.commit()
                except Exception:
                    await self.artifacts.remove_version(name, number)
                    raise
                return (await models_repo.to_versions(session=session, model=model, rows=[row]))[0]
        raise Conflict("too many concurrent registrations; retry", code="version_conflict")

    async def list_versions(self, name: str) -> list[ModelVersion]:
        async with self.db.session() as session:
            model = await models_repo.get_model_row(session=session, name=validate_name(name))
            rows = await models_repo.list_version_rows(session=session, model=model)
            return await models_repo.to_versions(session=session, model=model, rows=rows)

    async def resolve(self, ref: ModelRef) -> ModelVersion:
        """The version a reference names: a number, an alias, or the latest."""
        async with self.db.session() as session:
            model = await models_repo.get_model_row(session=session, name=ref.name)
            row = await models_repo.get_version_row(
                session=session, model=model, version=ref.version, alias=ref.alias
            )
            return (await models_repo.to_versions(session=session, model=model, rows=[row]))[0]

    async def delete_version(self, ref: ModelRef) -> None:
        async with self.db.session() as session:
            model = await models_repo.get_model_row(session=session, name=ref.name)
            row = await models_repo.get_version_row(
                session=session, model=model, version=ref.version, alias=ref.alias
            )
            if await models_repo.deployed_version_ids(session=session, version_ids=[row.id]):
                raise Conflict(
                    f"{ref.name}/{row.version} is deployed; undeploy it first",
                    code="version_deployed",
                )
            number = row.version
            await models_repo.delete_version(session=session, model=model, row=row)
            await session.commit()
        await self.artifacts.remove_version(ref.name, number)

    async def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        validate_alias(alias)
        async with self.db.session() as session:
            model = await models_repo.get_model_row(session=session, name=validate_name(name))
            row = await models_repo.get_version_row(
                session=session, model=model, version=version, alias=None
            )
            await models_repo.set_alias(session=session, model=model, alias=alias, version=version)
            await session.commit()
            return (await models_repo.to_versions(session=session, model=model, rows=[row]))[0]

    async def delete_alias(self, name: str, alias: str) -> None:
        async with self.db.session() as session:
            model = await models_repo.get_model_row(session=session, name=validate_name(name))
            await models_repo.delete_alias(session=session, model=model, alias=alias)
            await session.commit()

    async def stats(self) -> dict[str, Any]:
        async with self.db.session() as session:
            return await models_repo.registry_counts(session=session)

    async def artifact_spec(
        self, version: ModelVersion, options: Mapping[str, Any] | None = None
    ) -> ArtifactSpec:
        """What a runtime loads: the artifact as a local file (downloaded when the store is
        a bucket), with the version's signature and options."""
        path = await self.artifacts.local_file(
            version.artifact_path, sha256=version.artifact_sha256, size=version.artifact_size
        )
        return ArtifactSpec(
            path=path,
            signature=version.signature,
            allow_code=version.allow_code,
            options={**version.options, **(options or {})},
        )
