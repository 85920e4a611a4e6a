"""The web pages: the developer portal (``/portal``) and the admin console (``/console``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openmaas.portal import console, developer
from openmaas.portal.web import HERE


def install_portal(app: FastAPI) -> None:
    app.include_router(developer.router)
    app.include_router(console.router)
    app.mount("/portal/static", StaticFiles(directory=HERE / "static"), name="portal-static")


__all__ = ["install_portal"]
