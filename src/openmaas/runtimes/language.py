"""The language-model runtime contract: OpenAI's wire format, in and out.

Local engines (transformers, sentence-transformers) and remote ones (any OpenAI-compatible
server) speak the same dicts, so the ``/v1`` routes are a thin adapter over them.

Requests are OpenAI request bodies already validated by the route (``messages``,
``prompt``, ``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``top_p``,
``stop``, ``n``, ``seed``, ``input``, ``encoding_format`` ...). Answers are OpenAI objects:
``chat.completion``, ``chat.completion.chunk``, ``text_completion`` and the embeddings
``list``. Their ``model`` field is the request's ``model`` (the name the client asked for),
else the ``served_name`` option, else the runtime's own name for the model.

Metering rules every runtime keeps:

* a non-streamed answer carries ``usage`` (``prompt_tokens``, ``completion_tokens``,
  ``total_tokens``);
* a stream always ends with one chunk whose ``choices`` is empty and which carries
  ``usage``, whatever ``stream_options`` says; the route drops it when the client did not
  ask for ``stream_options.include_usage``;
* when a stream fails part-way, the runtime first yields that usage chunk (the tokens
  spent so far) and then raises an ``OpenMaaSError``; the route turns it into a final SSE
  error event. A stream never hangs: remote runtimes bound every read by a timeout.

Failures are ``openmaas.domain.errors``: a bad request is ``BadRequest`` (400), a failing
upstream ``BadGateway`` (502, ``upstream_error``), an unreachable one
``ServiceUnavailable`` (503, ``upstream_unavailable``), a slow one ``GatewayTimeout``
(504, ``upstream_timeout``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from openmaas.domain.models import Signature, TensorSpec
from openmaas.runtimes.base import Runtime

OpenAIObject = dict[str, Any]

GENERATION_SIGNATURE = Signature(
    inputs=(TensorSpec("prompt", "BYTES", (-1,)),),
    outputs=(TensorSpec("text", "BYTES", (-1,)),),
)
"""What a text generator takes and gives on the tensor protocols: one prompt a row."""


def embedding_signature(dimensions: int) -> Signature:
    """What an embedding model takes and gives on the tensor protocols: one text a row."""
    return Signature(
        inputs=(TensorSpec("text", "BYTES", (-1,)),),
        outputs=(TensorSpec("embedding", "FP32", (-1, dimensions)),),
    )


class LanguageRuntime(Runtime):
    """A runtime that reads text, and can say how many tokens a text costs."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs with this model's tokenizer (or a documented estimate)."""


class ChatRuntime(LanguageRuntime):
    """Text generation: chat completions and legacy text completions."""

    @abstractmethod
    async def chat(self, request: OpenAIObject) -> OpenAIObject:
        """A ``chat.completion`` object, with ``usage``."""

    @abstractmethod
    def chat_stream(self, request: OpenAIObject) -> AsyncIterator[OpenAIObject]:
        """``chat.completion.chunk`` objects; the last one carries ``usage``."""

    @abstractmethod
    async def complete(self, request: OpenAIObject) -> OpenAIObject:
        """A ``text_completion`` object, with ``usage``."""

    @abstractmethod
    def complete_stream(self, request: OpenAIObject) -> AsyncIterator[OpenAIObject]:
        """``text_completion`` chunks; the last one carries ``usage``."""


class EmbeddingRuntime(LanguageRuntime):
    """Text embeddings."""

    @abstractmethod
    async def embed(self, request: OpenAIObject) -> OpenAIObject:
        """An embeddings ``list`` object with ``usage.prompt_tokens``."""
