"""OpenAI request bodies, validated before any model sees them.

Unknown fields are kept (``extra="allow"``) and passed on: a remote engine may support
what a local one does not (tools, logprobs, response_format ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openmaas.domain.errors import BadRequest

MAX_CHOICES = 16

Model = TypeVar("Model", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str = Field(min_length=1, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Generation(_Request):
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Generation):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0)] | None = None


# Token ids are never negative, and no vocabulary has 2**31 of them.
TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1)]


class CompletionRequest(_Generation):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)]
    )
    # 0 with echo scores the prompt without generating (what evaluation harnesses do);
    # the engine refuses 0 without echo.
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    logprobs: Annotated[int, Field(ge=0)] | None = None
    echo: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: Any) -> Any:
        if prompt == "" or (isinstance(prompt, list) and any(p == "" for p in prompt)):
            raise ValueError("prompt must not be empty")
        return prompt


class EmbeddingRequest(_Request):
    input: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or (isinstance(value, list) and any(v in ("", []) for v in value)):
            raise ValueError("input must not be empty")
        return value


def parse(model: type[Model], body: Any) -> Model:
    """Validate a body; a problem is a 400 naming the parameter, as OpenAI answers it."""
    if not isinstance(body, dict):
        raise BadRequest("the body is a JSON object", code="invalid_request")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise BadRequest(
            f"{param or 'body'}: {error['msg']}",
            code="invalid_request",
            details={"param": param},
        ) from exc


def payload(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(exclude_none=True, exclude_unset=False)
