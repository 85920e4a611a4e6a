"""A stand-in inference route for the tests: gate, fake model, usage event, token charge.

The serving layer's routes do the same around a real model; this one lets the access
and metering tests run over HTTP without it. It is mounted only by the tests.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from openmaas.access import Admission
from openmaas.access.gate import Attribution
from openmaas.app import create_app
from openmaas.domain.errors import OpenMaaSError
from openmaas.metering import UsageEvent
from openmaas.platform import Platform
from openmaas.settings import Settings

TEST_ROUTE = "/test-infer/{model}"


async def _infer(model: str, request: Request) -> JSONResponse:
    platform: Platform = request.app.state.platform
    started = time.perf_counter()
    admission: Admission | None = None
    status = 500
    tokens_in = tokens_out = 0
    try:
        admission = await platform.gate.admit(request.headers, model)
        body: dict[str, Any] = {}
        if await request.body():
            body = await request.json()
        tokens_in = int(body.get("input_tokens", 0))
        tokens_out = int(body.get("output_tokens", 0))
        await platform.gate.charge_tokens(admission, model, tokens_in, tokens_out)
        status = 200
        return JSONResponse(
            {"model": model, "application_id": admission.application_id, "plan": admission.plan},
            headers=admission.headers,
        )
    except OpenMaaSError as exc:
        status = exc.status_code
        raise
    finally:
        who = (
            Attribution(admission.principal.user_id, admission.application_id, admission.key_id)
            if admission
            else platform.gate.attribute(request.headers)
        )
        platform.usage.record(
            UsageEvent(
                at=datetime.now(UTC),
                user_id=who.user_id,
                application_id=who.application_id,
                key_id=who.key_id,
                model=model,
                version=1,
                endpoint=None,
                protocol="predict",
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        )


def with_test_route(app: FastAPI) -> FastAPI:
    app.add_api_route(TEST_ROUTE, _infer, methods=["POST"])
    return app


def create_gated_app(settings: Settings) -> FastAPI:
    return with_test_route(create_app(settings))


def create_gated_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` in the multi-process tests."""
    return create_gated_app(Settings())
