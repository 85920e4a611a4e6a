"""Who may call an inference route: the credential check in front of every protocol."""

from __future__ import annotations

from fastapi import Request

from openmaas.access import credential_from_headers
from openmaas.domain.accounts import Principal
from openmaas.platform import Platform


async def admit(platform: Platform, request: Request, model_name: str) -> Principal:
    return await platform.access.authenticate(credential_from_headers(request.headers))
