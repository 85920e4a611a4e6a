"""Language and embedding models behind the tensor protocols (V2, KServe V1, seed 003).

Their V2 metadata says BYTES in (``prompt`` or ``text``, one string per row), and this is
what makes that true, as KServe's Hugging Face runtime does: each string is a prompt to
continue (a plain completion, no chat template) or a text to embed. Generation settings
travel in the request's ``parameters``: ``max_tokens``, ``temperature``, ``top_p``,
``seed`` and ``stop``; other parameters belong to the protocol and are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmaas.domain.errors import BadRequest, GatewayTimeout
from openmaas.runtimes import Tensors
from openmaas.runtimes.language import ChatRuntime, EmbeddingRuntime, LanguageRuntime
from openmaas.serving.dataplane import DataPlane
from openmaas.serving.endpoints import Endpoint

GENERATION_PARAMETERS = ("max_tokens", "temperature", "top_p", "seed", "stop")

ReserveTokens = Callable[[LanguageRuntime, dict[str, Any], int, bool], Awaitable[int | None]]
"""Reserves a request's tokens before the model runs: (runtime, the request in OpenAI's
shape, its choices, whether it embeds) -> the output cap per choice, or None."""


@dataclass(frozen=True, slots=True)
class TextResult:
    outputs: Tensors
    input_tokens: int
    output_tokens: int


def speaks_text(endpoint: Endpoint) -> bool:
    """Whether the endpoint serves a language or embedding model (not a tensor model)."""
    return issubclass(endpoint.runtime_class, LanguageRuntime)


def _texts(inputs: Tensors) -> tuple[list[str], tuple[int, ...]]:
    if len(inputs) != 1:
        raise BadRequest(
            f"a language model takes one text input; the request has {len(inputs)}",
            code="invalid_input",
        )
    (value,) = inputs.values()
    if value.dtype.kind not in "OUS":
        raise BadRequest("a language model's input is text (BYTES)", code="datatype_mismatch")
    texts = []
    for item in value.reshape(-1).tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest("text inputs are UTF-8", code="invalid_input") from exc
        if not isinstance(item, str) or not item:
            raise BadRequest("each text input is a non-empty string", code="invalid_input")
        texts.append(item)
    return texts, value.shape


def _makes_vectors(endpoint: Endpoint) -> bool:
    """A remote engine may do both; its signature says which (numbers out: embeddings)."""
    outputs = endpoint.version.signature.outputs
    return bool(outputs) and outputs[0].datatype.startswith("FP")


async def infer_text(
    dataplane: DataPlane,
    endpoint: Endpoint,
    inputs: Tensors,
    parameters: Mapping[str, Any],
    *,
    protocol: str,
    reserve: ReserveTokens,
) -> TextResult:
    """Generate a continuation of, or embed, every string of the one BYTES input.

    The tokens are reserved (``reserve``) once the runtime can count the prompt, before
    the model runs, exactly as the model's own API does; the output is capped to them.
    """
    texts, shape = _texts(inputs)
    outputs = endpoint.version.signature.outputs
    timeout = endpoint.deployment.config.timeout_s
    async with dataplane.session(endpoint, LanguageRuntime, protocol=protocol) as runtime:
        try:
            async with asyncio.timeout(timeout):
                if isinstance(runtime, ChatRuntime) and not _makes_vectors(endpoint):
                    request = {k: parameters[k] for k in GENERATION_PARAMETERS if k in parameters}
                    request.update(prompt=texts, n=1)
                    cap = await reserve(runtime, request, len(texts), False)
                    if cap is not None:
                        request["max_tokens"] = cap
                    answer = await runtime.complete(request)
                    choices = sorted(answer["choices"], key=lambda choice: choice["index"])
                    produced = np.array([c["text"] for c in choices], dtype=object)
                    result = produced.reshape(shape)
                    name = outputs[0].name if outputs else "text"
                elif isinstance(runtime, EmbeddingRuntime):
                    await reserve(runtime, {"input": texts}, len(texts), True)
                    answer = await runtime.embed({"input": texts})
                    data = sorted(answer["data"], key=lambda item: item["index"])
                    result = np.asarray([item["embedding"] for item in data], dtype=np.float32)
                    name = outputs[0].name if outputs else "embedding"
                else:
                    raise BadRequest(
                        f"{endpoint.name!r} answers only its own API", code="wrong_protocol"
                    )
        except TimeoutError as exc:
            raise GatewayTimeout(
                f"the model did not answer within {timeout} s", code="timeout"
            ) from exc
    usage = answer.get("usage") or {}
    return TextResult(
        {name: result},
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )
