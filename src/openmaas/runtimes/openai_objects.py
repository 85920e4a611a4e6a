"""Building and reading OpenAI wire objects, shared by every language runtime.

Only the shapes live here (ids, choices, chunks, usage, embeddings, request fields), so
local engines answer exactly like an OpenAI-compatible server would.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from openmaas.domain.errors import BadRequest

OpenAIObject = dict[str, Any]

# OpenAI accepts at most four stop sequences; more is a client error, not a slow request.
MAX_STOP_SEQUENCES = 4


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def approximate_tokens(text: str) -> int:
    """About four characters a token: OpenAI's rule of thumb for English text.

    Used only when an upstream reports no usage and no tokenizer was configured.
    """
    return math.ceil(len(text) / 4)


def response_model(request: Mapping[str, Any], options: Mapping[str, Any], default: str) -> str:
    """The ``model`` an answer names: the client's, else the served name, else the engine's."""
    return str(request.get("model") or options.get("served_name") or default)


def max_new_tokens(request: Mapping[str, Any], default: int) -> int:
    """The output length asked for; 0 only for a completion that echoes (prompt scoring)."""
    value = request.get("max_completion_tokens", request.get("max_tokens"))
    if value is None:
        return default
    lowest = 0 if request.get("echo") is True else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise BadRequest(
            "max_tokens must be a positive integer (0 only with echo)",
            code="invalid_request",
            details={"param": "max_tokens"},
        )
    return value


def choice_count(request: Mapping[str, Any], limit: int) -> int:
    n = request.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= limit:
        raise BadRequest(f"n must be an integer from 1 to {limit}", code="invalid_request")
    return n


def stop_sequences(request: Mapping[str, Any]) -> list[str]:
    stop = request.get("stop")
    if stop is None:
        return []
    sequences = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(sequences, list)
        or len(sequences) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) for s in sequences)
    ):
        raise BadRequest("stop is a string or a list of up to 4 strings", code="invalid_request")
    return [s for s in sequences if s]


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of ``text`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise BadRequest("only text content parts are supported", code="invalid_request")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise BadRequest("message content is a string or a list of parts", code="invalid_request")


def chat_messages(request: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages is a non-empty list", code="invalid_request")
    plain = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise BadRequest("each message has a role and a content", code="invalid_request")
        plain.append({"role": message["role"], "content": message_text(message.get("content"))})
    return plain


Prompt = str | list[int]
"""One completion prompt: text, or the token ids of a text (``[1, 2, 3]``)."""


def _token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def prompts(request: Mapping[str, Any]) -> list[Prompt]:
    """The prompts of a completion request: ``"text"``, ``["a", "b"]``, ``[1, 2, 3]`` (one
    prompt as token ids) or ``[[1, 2], [3]]`` (several)."""
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and _token_ids(prompt):
        return [list(prompt)]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(_token_ids(p) for p in prompt):
        return [list(p) for p in prompt]
    raise BadRequest(
        "prompt is a string, a list of strings, a list of token ids or a list of such lists",
        code="invalid_request",
        details={"param": "prompt"},
    )


# Fields an in-process engine may meet that change nothing when they have these values
# (the defaults, or identification only); any other value is a feature it does not have.
_HARMLESS: dict[str, Any] = {
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "function_call": ("none",),
    "response_format": ({"type": "text"},),
    "store": (False,),
    "echo": (False,),
    "suffix": ("",),
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
}
# Accepted with any value: they identify the caller or tag the request.
_ANY_VALUE = frozenset({"model", "user", "metadata", "stream", "stream_options"})


def refuse_unsupported(request: Mapping[str, Any], supported: Collection[str]) -> None:
    """A 400 naming the first field an in-process engine would otherwise ignore.

    OpenAI's rule: a request is never answered as if a field it sent were not there.
    ``tools: []`` or ``response_format: {"type": "text"}`` ask for nothing and pass;
    ``parallel_tool_calls`` means something only with tools.
    """
    for field, value in request.items():
        if value is None or field in supported or field in _ANY_VALUE:
            continue
        if field == "parallel_tool_calls" and not request.get("tools"):
            continue
        if value in _HARMLESS.get(field, ()):
            continue
        raise BadRequest(
            f"{field} is not supported by this model (it runs in process); "
            "remove it, or use a model served by an engine that has it",
            code="unsupported_parameter",
            details={"param": field},
        )


def number_between(
    request: Mapping[str, Any], field: str, low: float, high: float, default: float = 0.0
) -> float:
    value = request.get(field)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(
            f"{field} is a number from {low:g} to {high:g}",
            code="invalid_request",
            details={"param": field},
        )
    return float(value)


def logit_bias(request: Mapping[str, Any], vocabulary: int) -> dict[int, float]:
    """``{"token id": bias}`` with biases from -100 to 100, as OpenAI takes it."""
    given = request.get("logit_bias")
    if not given:
        return {}
    bias: dict[int, float] = {}
    if isinstance(given, Mapping) and len(given) <= 300:
        for key, value in given.items():
            token = str(key)
            if not token.isascii() or not token.isdigit() or int(token) >= vocabulary:
                break
            if not isinstance(value, int | float) or isinstance(value, bool):
                break
            if not -100 <= value <= 100:
                break
            bias[int(token)] = float(value)
        else:
            return bias
    raise BadRequest(
        f"logit_bias maps at most 300 token ids (0 to {vocabulary - 1}) to numbers "
        "from -100 to 100",
        code="invalid_request",
        details={"param": "logit_bias"},
    )


def requested_logprobs(request: Mapping[str, Any], *, chat: bool) -> int | None:
    """How many alternatives to report per token; None when no log-probabilities are wanted.

    Chat: ``logprobs: true`` and ``top_logprobs`` (0-20). Completions: ``logprobs`` (0-5).
    """
    if chat:
        wanted = request.get("logprobs")
        top = request.get("top_logprobs")
        if wanted is not None and not isinstance(wanted, bool):
            raise BadRequest(
                "logprobs is true or false", code="invalid_request", details={"param": "logprobs"}
            )
        if top is not None and (
            not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20
        ):
            raise BadRequest(
                "top_logprobs is an integer from 0 to 20",
                code="invalid_request",
                details={"param": "top_logprobs"},
            )
        if top is not None and not wanted:
            raise BadRequest(
                "top_logprobs needs logprobs: true",
                code="invalid_request",
                details={"param": "top_logprobs"},
            )
        return (top or 0) if wanted else None
    value = request.get("logprobs")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5:
        raise BadRequest(
            "logprobs is an integer from 0 to 5",
            code="invalid_request",
            details={"param": "logprobs"},
        )
    return value


TokenLogprob = tuple[str, float | None, Sequence[tuple[str, float]] | None]
"""A token's text, its log-probability and its likeliest alternatives (None: unscored,
as the first token of an echoed prompt is)."""


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> OpenAIObject:
    """A chat choice's ``logprobs``: ``{"content": [...], "refusal": null}``."""

    def entry(text: str, logprob: float | None) -> OpenAIObject:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {
        "content": [
            {**entry(text, logprob), "top_logprobs": [entry(t, lp) for t, lp in top or ()]}
            for text, logprob, top in tokens
        ],
        "refusal": None,
    }


def completion_logprobs(tokens: Sequence[TokenLogprob], offset: int) -> OpenAIObject:
    """A completion choice's ``logprobs``; ``offset`` is where the first token's text starts."""
    offsets = []
    for text, _logprob, _top in tokens:
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": [text for text, _logprob, _top in tokens],
        "token_logprobs": [logprob for _text, logprob, _top in tokens],
        # OpenAI's alternatives always include the chosen token (up to logprobs + 1).
        "top_logprobs": [
            None if top is None else {**dict(top), text: logprob} for text, logprob, top in tokens
        ],
        "text_offset": offsets,
    }


def chat_completion(
    *,
    model: str,
    texts: Sequence[str],
    finish_reasons: Sequence[str],
    used: dict[str, int],
    logprobs: Sequence[OpenAIObject | None] | None = None,
) -> OpenAIObject:
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs[index] if logprobs else None,
                "finish_reason": reason,
            }
            for index, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": used,
    }


def text_completion(
    *,
    model: str,
    texts: Sequence[str],
    finish_reasons: Sequence[str],
    used: dict[str, int],
    logprobs: Sequence[OpenAIObject | None] | None = None,
) -> OpenAIObject:
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": index,
                "text": text,
                "logprobs": logprobs[index] if logprobs else None,
                "finish_reason": reason,
            }
            for index, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": used,
    }


class ChunkFactory:
    """Chunks of one stream: same id, creation time and model on every chunk."""

    def __init__(self, *, model: str, chat: bool) -> None:
        self.chat = chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = now()
        self.model = model
        self.object = "chat.completion.chunk" if chat else "text_completion"

    def _chunk(self, choices: list[OpenAIObject]) -> OpenAIObject:
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def text(
        self,
        index: int,
        text: str,
        finish_reason: str | None = None,
        logprobs: OpenAIObject | None = None,
    ) -> OpenAIObject:
        if self.chat:
            choice: OpenAIObject = {"index": index, "delta": {"content": text}}
        else:
            choice = {"index": index, "text": text}
        choice["logprobs"] = logprobs
        choice["finish_reason"] = finish_reason
        return self._chunk([choice])

    def role(self, index: int) -> OpenAIObject:
        """The first chunk of a chat choice names the speaker, as OpenAI's do."""
        delta = {"role": "assistant", "content": ""}
        return self._chunk(
            [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]
        )

    def usage(self, used: dict[str, int]) -> OpenAIObject:
        chunk = self._chunk([])
        chunk["usage"] = used
        return chunk


def embedding_list(
    *, model: str, vectors: np.ndarray, encoding_format: str, prompt_tokens: int
) -> OpenAIObject:
    data = []
    for index, vector in enumerate(vectors):
        if encoding_format == "base64":
            # OpenAI's base64 form: the little-endian float32 bytes of the vector.
            value: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        else:
            value = [float(x) for x in vector]
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def encoding_format(request: Mapping[str, Any]) -> str:
    value = request.get("encoding_format") or "float"
    if value not in ("float", "base64"):
        raise BadRequest("encoding_format is 'float' or 'base64'", code="invalid_request")
    return str(value)
