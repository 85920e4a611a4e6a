"""Limits on what one inference request may hand a model, checked before the work starts.

A prompt is measured in characters first (free: no tokenizer runs), then, when a token
limit is set, in tokens (a long prompt in a worker thread, see ``count_prompt_tokens``).
Tensor requests are bounded in rows. Each limit is a platform setting with a per-deployment
override (``DeploymentConfig``); without either, a prompt may have as many tokens as the
model's context length and ``CHARACTERS_PER_TOKEN`` times as many characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import BadRequest, PayloadTooLarge
from openmaas.runtimes import Tensors
from openmaas.runtimes.language import LanguageRuntime, request_texts, request_token_ids

CHARACTERS_PER_TOKEN = 16
"""More characters than tokenizers put in one token on average, even in text that packs
well (code, repeated words): a prompt past it cannot fit the context, so it is refused
before anything tokenizes it."""

INLINE_TOKENIZE_CHARACTERS = 4096
"""Prompts up to this many characters are tokenized on the event loop: a fast tokenizer
does that in tens of microseconds, less than the hop to a worker thread and back, which
every short chat request paid. Longer ones go to a thread so they never stall the loop."""


async def count_prompt_tokens(
    runtime: LanguageRuntime, request: dict[str, Any], characters: int | None = None
) -> int:
    """The most tokens the prompt of ``request`` can be, as ``runtime`` counts it."""
    if characters is None:
        characters = prompt_characters(request)
    if characters <= INLINE_TOKENIZE_CHARACTERS:
        return runtime.prompt_tokens_at_most(request)
    return await anyio.to_thread.run_sync(runtime.prompt_tokens_at_most, request)


def prompt_characters(request: dict[str, Any]) -> int:
    """The prompt's characters, token ids counted as one each."""
    return sum(len(text) for text in request_texts(request)) + request_token_ids(request)


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The platform-wide limits (``OPENMAAS_MAX_PROMPT_*``, ``OPENMAAS_MAX_TENSOR_ROWS``)."""

    max_prompt_characters: int | None = None
    max_prompt_tokens: int | None = None
    max_tensor_rows: int = 100_000

    def prompt_characters(self, config: DeploymentConfig, runtime: LanguageRuntime) -> int | None:
        """The most characters a prompt may have here; None: no limit is known."""
        given = config.max_prompt_characters or self.max_prompt_characters
        if given:
            return given
        tokens = self.prompt_tokens(config)
        context = tokens or runtime.context_length
        return context * CHARACTERS_PER_TOKEN if context else None

    def prompt_tokens(self, config: DeploymentConfig) -> int | None:
        """The most prompt tokens set for this deployment; None: the model's context
        length, which the runtime enforces itself."""
        return config.max_prompt_tokens or self.max_prompt_tokens

    def tensor_rows(self, config: DeploymentConfig) -> int:
        return config.max_rows or self.max_tensor_rows

    async def check_prompt(
        self, config: DeploymentConfig, runtime: LanguageRuntime, request: dict[str, Any]
    ) -> int | None:
        """Refuse a prompt over the limits; its tokens when they had to be counted."""
        characters = prompt_characters(request)
        most = self.prompt_characters(config, runtime)
        if most is not None and characters > most:
            raise PayloadTooLarge(
                f"the prompt has {characters} characters; this model reads at most {most}",
                code="prompt_too_long",
                details={"param": _param(request), "limit": most},
            )
        limit = self.prompt_tokens(config)
        if limit is None:
            return None
        tokens = await count_prompt_tokens(runtime, request, characters)
        if tokens > limit:
            raise BadRequest(
                f"the prompt has {tokens} tokens; this model reads at most {limit}",
                code="context_length_exceeded",
                details={"param": _param(request), "limit": limit},
            )
        return tokens

    def check_rows(self, config: DeploymentConfig, inputs: Tensors) -> None:
        """Refuse a tensor request with more rows (first dimension) than allowed."""
        rows = max((len(value) if value.ndim else 1 for value in inputs.values()), default=0)
        most = self.tensor_rows(config)
        if rows > most:
            raise PayloadTooLarge(
                f"the request has {rows} rows; this model takes at most {most} at once",
                code="too_many_rows",
                details={"limit": most},
            )


def _param(request: dict[str, Any]) -> str:
    for name in ("messages", "prompt", "input"):
        if name in request:
            return name
    return "prompt"
