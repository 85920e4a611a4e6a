"""The one place that composes the application from one ``Settings`` object."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmaas import __version__, tracing
from openmaas.api import (
    admin,
    applications,
    auth,
    deployments,
    invoices,
    kserve_v1,
    metrics,
    model_routes,
    models,
    openai_api,
    plans,
    predict,
    system,
    usage,
    v2,
)
from openmaas.api.body_limit import BodySizeLimit
from openmaas.api.errors import install_error_handlers
from openmaas.api.hot_path import HANDLER, InferenceHotPath, inference_handler
from openmaas.api.openapi import install_openapi
from openmaas.api.security_headers import SecurityHeaders, trusted_proxies
from openmaas.api.text_guard import ControlCharacterGuard
from openmaas.platform import Platform
from openmaas.portal import install_portal
from openmaas.settings import Settings, load_settings
from openmaas.shutdown import drain_on_sigterm
from openmaas.store.database import DatabaseUnavailable

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("openmaas")


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """The application; ``tracer_provider`` replaces the one ``OPENMAAS_OTEL_ENDPOINT`` sets up
    (the tests give one with an in-memory exporter)."""
    platform = Platform.build(settings)
    if tracer_provider is None and settings.otel_endpoint:
        tracer_provider = tracing.provider_for(settings.otel_endpoint, settings.otel_service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tracer_provider is not None:
            tracing.enable(tracer_provider)
        try:
            await platform.start()
        except DatabaseUnavailable as exc:
            # The server reports it as the reason start-up failed: one line, no traceback.
            app.startup_error = exc.message  # type: ignore[attr-defined]
            await platform.stop()
            if tracer_provider is not None:
                tracing.disable()
            raise
        if settings.demo:
            from openmaas.demo import install_demo

            await install_demo(platform)
        await platform.start_serving()
        restore_sigterm = drain_on_sigterm(platform.health, settings.shutdown_delay_seconds)
        try:
            yield
        finally:
            restore_sigterm()
            await platform.stop()
            if tracer_provider is not None:
                tracing.disable()
                tracer_provider.shutdown()  # sends the spans still waiting in the batch

    app = OpenMaaSApp(
        title="OpenMaaS",
        version=__version__,
        description="Models as a Service: registry, serving and API management.",
        lifespan=lifespan,
        # Served by install_openapi: per caller, and with the docs' assets installed locally.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # A trailing slash is a wrong path, answered with a JSON 404: a redirect would send
        # API clients an empty body they do not follow for POSTs.
        redirect_slashes=False,
    )
    app.state.platform = platform
    install_error_handlers(app)
    # Inference routes first: requests are matched against routes in order, and these
    # are the ones on the hot path.
    app.include_router(predict.router)
    app.include_router(v2.router)
    app.include_router(openai_api.router)
    app.include_router(kserve_v1.router)
    app.include_router(v2.repository)
    app.include_router(system.router)
    app.include_router(models.router)
    app.include_router(deployments.router)
    app.include_router(model_routes.router)
    app.include_router(metrics.router)
    install_openapi(app, platform)
    for module in (auth, applications, plans, usage, invoices, admin):
        app.include_router(module.router)
    install_portal(app)
    # No control characters (NUL: PostgreSQL refuses it) in any path, query or body that
    # reaches the management routes; inside the body limit, so it never sees a body past it.
    app.add_middleware(ControlCharacterGuard)
    # Before anything reads it, so an oversized body is refused unread.
    body_limit = {
        "max_bytes": settings.max_request_bytes,
        "max_upload_bytes": settings.max_artifact_bytes,
    }
    app.add_middleware(BodySizeLimit, **body_limit)
    app.add_middleware(SecurityHeaders, secure_cookies=settings.secure_cookies)
    if settings.cors_origins:
        # Outermost: preflights are answered here, and every response, errors and 413s
        # included, carries the headers a browser needs to read it.
        app.add_middleware(CORSMiddleware, **_cors_options(settings))
    # Inference requests skip routing, dependency injection and FastAPI's middleware, yet
    # pass the same body size limit and CORS.
    lean: Any = BodySizeLimit(InferenceHotPath(platform), **body_limit)
    if settings.cors_origins:
        lean = CORSMiddleware(lean, **_cors_options(settings))
    # Before anything reads the scheme or the client's address: a trusted proxy's
    # X-Forwarded-Proto and X-Forwarded-For, and nobody else's (the full app's chain
    # gets the same in build_middleware_stack).
    app.trusted_proxy_hosts = settings.trusted_proxies
    app.lean = trusted_proxies(lean, settings.trusted_proxies)
    return app


def _cors_options(settings: Settings) -> dict[str, Any]:
    any_origin = settings.cors_origins == ["*"]
    return {
        "allow_origins": settings.cors_origins,
        # Cookies cross origins only for origins named one by one, never for "*".
        "allow_credentials": not any_origin,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": [
            "Retry-After",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ],
        "max_age": 600,
    }


class OpenMaaSApp(FastAPI):
    """FastAPI, with inference requests sent past all of it to a lean chain.

    FastAPI wraps every request in its own layers before any middleware: a telemetry check
    that asks OpenTelemetry for its providers (reading the environment each time), then its
    error pages and a second body limit. On the inference routes those cost more than the
    routing did, and each streamed chunk crossed them. The lean chain (``api/hot_path.py``)
    keeps what inference needs: our body size limit, CORS when configured, error shapes.
    """

    lean: ASGIApp | None = None
    trusted_proxy_hosts: list[str] = []  # noqa: RUF012  (replaced, never mutated)
    startup_error: str | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return trusted_proxies(super().build_middleware_stack(), self.trusted_proxy_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lean is not None:
            handler = inference_handler(scope)
            if handler is not None:
                scope["app"] = self
                scope[HANDLER] = handler
                await self.lean(scope, receive, send)
                return
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return

        async def concise(message: Message) -> None:
            # Starlette reports a failed start-up with the whole traceback; a known cause
            # (the database is unreachable) is said in its one line instead.
            if message["type"] == "lifespan.startup.failed" and self.startup_error:
                message = {**message, "message": self.startup_error}
            await send(message)

        await super().__call__(scope, receive, concise)


def create_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from OPENMAAS_*."""
    return create_app(load_settings())
