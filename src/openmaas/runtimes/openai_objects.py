"""Building and reading OpenAI wire objects, shared by every language runtime.

Only the shapes live here (ids, choices, chunks, usage, embeddings, request fields), so
local engines answer exactly like an OpenAI-compatible server would.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import Mapping, Sequence
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
    value = request.get("max_completion_tokens", request.get("max_tokens"))
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_tokens must be a positive integer", code="invalid_request")
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


def prompts(request: Mapping[str, Any]) -> list[str]:
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise BadRequest("prompt is a string or a list of strings", code="invalid_request")


def chat_completion(
    *, model: str, texts: Sequence[str], finish_reasons: Sequence[str], used: dict[str, int]
) -> OpenAIObject:
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            for index, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": used,
    }


def text_completion(
    *, model: str, texts: Sequence[str], finish_reasons: Sequence[str], used: dict[str, int]
) -> OpenAIObject:
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [
            {"index": index, "text": text, "logprobs": None, "finish_reason": reason}
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

    def text(self, index: int, text: str, finish_reason: str | None = None) -> OpenAIObject:
        if self.chat:
            choice: OpenAIObject = {"index": index, "delta": {"content": text}}
        else:
            choice = {"index": index, "text": text}
        choice["logprobs"] = None
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
