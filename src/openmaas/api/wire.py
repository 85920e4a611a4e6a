"""Fast JSON in and out for the inference routes (orjson, NumPy-aware)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response

from openmaas.domain.errors import BadRequest


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise BadRequest("the request body is empty; send JSON", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from exc


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
