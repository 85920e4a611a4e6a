"""Token budgets under fire: many concurrent chats through the ``openai`` SDK, and checks."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.serving.helpers import deploy, register

# Thirty distinct words: the fake upstream echoes them after "You said:", 32 in all.
PROMPT = " ".join(f"w{i}" for i in range(30))


def word_tokenizer(directory: Path) -> Path:
    """A tokenizer.json counting whitespace-separated words, as the fake upstream does."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def remote_model(
    admin: httpx.Client, name: str, base_url: str, upstream: str, directory: Path
) -> str:
    """Register and deploy a remote OpenAI-compatible model with the word tokenizer."""
    endpoint = directory / f"{name}.openai.json"
    settings = {
        "base_url": base_url,
        "model": upstream,
        "tokenizer": str(word_tokenizer(directory)),
        "timeout": 30,
    }
    endpoint.write_text(json.dumps(settings))
    register(admin, name, endpoint)
    deploy(admin, name, endpoint_name=name)
    return name


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class Burst:
    answers: list[Any]  # chat completions
    refused: list[openai.RateLimitError]

    @property
    def charged(self) -> int:
        return sum(answer.usage.total_tokens for answer in self.answers)


def chat_burst(
    urls: list[str], key: str, model: str, *, callers: int = 40, max_tokens: int = 30
) -> Burst:
    """``callers`` chat completions at once through the SDK, spread over the servers."""

    async def run() -> list[Any]:
        clients = [
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
            for url in urls
        ]
        try:
            return await asyncio.gather(
                *(
                    clients[i % len(clients)].chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": PROMPT}],
                        max_tokens=max_tokens,
                    )
                    for i in range(callers)
                ),
                return_exceptions=True,
            )
        finally:
            for client in clients:
                await client.close()

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(answers) + len(refused) == callers, [
        r for r in results if isinstance(r, BaseException) and r not in refused
    ]
    return Burst(answers, refused)


def assert_within_budget(burst: Burst, budget: int, upstream_calls: int, max_tokens: int) -> None:
    """The promise: never past the budget; refused requests never reached the model."""
    assert burst.answers, "some requests fit the budget"
    assert burst.refused, "the budget ran out"
    assert burst.charged <= budget, burst.charged
    assert upstream_calls == len(burst.answers)
    for answer in burst.answers:
        assert answer.usage.completion_tokens <= max_tokens
        # The echo has 32 words; an answer with fewer was capped, and says so.
        assert answer.usage.completion_tokens < 32
        assert answer.choices[0].finish_reason == "length"
    for error in burst.refused:
        assert error.status_code == 429
        assert "tokens_per_minute" in error.message
        assert error.response.headers["RateLimit-Policy"].startswith('"tokens_per_minute"')
