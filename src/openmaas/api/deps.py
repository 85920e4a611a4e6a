"""Dependencies shared by the HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from openmaas.access import credential_from_headers
from openmaas.domain.accounts import Principal
from openmaas.platform import Platform


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def require_admin(request: Request, platform: PlatformDep) -> Principal:
    return await platform.access.require_admin(credential_from_headers(request.headers))


AdminDep = Annotated[Principal, Depends(require_admin)]
