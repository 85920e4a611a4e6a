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


def request_texts(request: OpenAIObject) -> list[str]:
    """The texts a request hands the model: messages' contents, prompts or inputs."""
    if "messages" in request:
        texts = []
        for message in request.get("messages") or ():
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        return texts
    given = request.get("prompt", request.get("input"))
    if isinstance(given, str):
        return [given]
    if isinstance(given, list):
        return [item for item in given if isinstance(item, str)]
    return []


def request_token_ids(request: OpenAIObject) -> int:
    """Tokens a request sends as ids rather than text (a list of ints, or of such lists)."""
    given = request.get("prompt", request.get("input"))
    if not isinstance(given, list) or not given:
        return 0
    if all(isinstance(item, int) for item in given):
        return len(given)
    return sum(len(item) for item in given if isinstance(item, list))


class LanguageRuntime(Runtime):
    """A runtime that reads text, and can say how many tokens a text costs.

    The gate reserves a request's tokens before the model runs: ``prompt_tokens_at_most``
    bounds the prompt, ``default_max_tokens`` is the output a request that names none may
    produce, and ``truncate`` cuts an answer that went past its allowance.
    """

    default_max_tokens: int = 4096
    """Output tokens a request without ``max_tokens`` may generate (per choice)."""

    @property
    def context_length(self) -> int | None:
        """Most tokens the model reads at once; None when the runtime cannot tell."""
        return None

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs with this model's tokenizer (or a documented estimate)."""

    def prompt_tokens(self, request: OpenAIObject) -> int:
        """The request's prompt as this runtime reports it in ``usage.prompt_tokens``."""
        texts = sum(self.count_tokens(text) for text in request_texts(request) if text)
        return texts + request_token_ids(request)

    def prompt_tokens_at_most(self, request: OpenAIObject) -> int:
        """What the prompt may cost, never less than the model will report.

        Exact where the runtime tokenizes the prompt itself; runtimes that only estimate
        (a remote server) err high.
        """
        return self.prompt_tokens(request)

    def truncate(self, text: str, tokens: int) -> str:
        """The longest start of ``text`` that costs at most ``tokens``."""
        if tokens <= 0:
            return ""
        if self.count_tokens(text) <= tokens:
            return text
        low, high = 0, len(text)  # count(text[:low]) <= tokens < count(text[:high])
        while high - low > 1:
            middle = (low + high) // 2
            if self.count_tokens(text[:middle]) <= tokens:
                low = middle
            else:
                high = middle
        return text[:low]


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
