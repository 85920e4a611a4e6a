"""The OpenAI-compatible remote runtime against the shipped fake server on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from openmaas.demo.tiny_llm import build_tiny_llm
from openmaas.domain.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    OpenMaaSError,
    ServiceUnavailable,
)
from openmaas.runtimes import ArtifactSpec, runtime_for_filename
from openmaas.runtimes.openai_objects import approximate_tokens
from openmaas.runtimes.openai_remote import OpenAIRemoteRuntime
from openmaas.testing import FakeOpenAI
from openmaas.testing.loopback import free_port

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hello there friend"}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(stall_seconds=3) as server:
        yield server


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tokenizer") / "tiny")


def _runtime(directory: Path, base_url: str, **settings: Any) -> OpenAIRemoteRuntime:
    options = settings.pop("options", {})
    path = directory / f"{uuid.uuid4().hex}.openai.json"
    path.write_text(json.dumps({"base_url": base_url, "api_key": "sk-upstream", **settings}))
    return OpenAIRemoteRuntime(ArtifactSpec(path=path, options=options))


def _call(runtime: OpenAIRemoteRuntime, method: str, request: dict[str, Any]) -> Any:
    async def run() -> Any:
        await runtime.load()
        try:
            result = getattr(runtime, method)(request)
            if method.endswith("_stream"):
                return [chunk async for chunk in result]
            return await result
        finally:
            await runtime.unload()

    return asyncio.run(run())


def _stream_until_error(
    runtime: OpenAIRemoteRuntime, request: dict[str, Any]
) -> tuple[list[dict[str, Any]], OpenMaaSError]:
    chunks: list[dict[str, Any]] = []

    async def run() -> OpenMaaSError:
        await runtime.load()
        try:
            async for chunk in runtime.chat_stream(request):
                chunks.append(chunk)
        except OpenMaaSError as error:
            return error
        finally:
            await runtime.unload()
        raise AssertionError("the stream did not fail")

    return chunks, asyncio.run(run())


def test_the_fake_speaks_openai_to_the_official_client(fake: FakeOpenAI) -> None:
    import openai

    client = openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=0)
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "You said: hi"
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    client.close()


def test_chat_passes_through_with_the_upstream_name(tmp_path: Path, fake: FakeOpenAI) -> None:
    runtime = _runtime(tmp_path, fake.url, model="upstream-llama")
    answer = _call(runtime, "chat", CHAT)
    ChatCompletion.model_validate(answer)
    assert answer["model"] == "chat-model"
    assert answer["choices"][0]["message"]["content"] == "You said: hello there friend"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert fake.requests[-1]["model"] == "upstream-llama"
    assert fake.headers[-1]["authorization"] == "Bearer sk-upstream"


def test_streams_pass_through_and_end_with_usage(tmp_path: Path, fake: FakeOpenAI) -> None:
    chunks = _call(_runtime(tmp_path, fake.url, model="llama"), "chat_stream", CHAT)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    words = [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]]
    assert words == ["You", " said:", " hello", " there", " friend"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["model"] == "chat-model" for c in chunks)
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}
    request = {"model": "c", "prompt": "one two", "max_tokens": 3}
    completion = _call(_runtime(tmp_path, fake.url), "complete", request)
    Completion.model_validate(completion)
    assert completion["choices"][0] == {
        "index": 0,
        "text": "You said: one",
        "finish_reason": "length",
    }
    streamed = _call(_runtime(tmp_path, fake.url), "complete_stream", request)
    assert "".join(c["choices"][0]["text"] for c in streamed if c["choices"]) == "You said: one"
    assert streamed[-1]["usage"]["completion_tokens"] == 3


def test_missing_usage_is_counted(tmp_path: Path, fake: FakeOpenAI, tokenizer_dir: Path) -> None:
    estimated = _call(_runtime(tmp_path, fake.url, model="no-usage"), "chat", CHAT)
    assert estimated["usage"]["completion_tokens"] == 7  # 28 characters, four a token
    assert estimated["usage"]["prompt_tokens"] == 6  # "user: hello there friend"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    exact = _runtime(tmp_path, fake.url, model="no-usage", tokenizer=str(tokenizer_dir))
    answer = _call(exact, "chat", CHAT)
    text = answer["choices"][0]["message"]["content"]
    count = len(tokenizer.encode(text, add_special_tokens=False).ids)
    assert answer["usage"]["completion_tokens"] == count
    chunks = _call(exact, "chat_stream", CHAT)
    assert chunks[-1]["usage"]["completion_tokens"] == count
    embedded = _call(exact, "embed", {"model": "e", "input": ["a b", "c"]})
    CreateEmbeddingResponse.model_validate(embedded)
    expected = sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in ["a b", "c"])
    assert embedded["usage"]["prompt_tokens"] == expected


def test_embeddings_pass_through(tmp_path: Path, fake: FakeOpenAI) -> None:
    answer = _call(_runtime(tmp_path, fake.url), "embed", {"model": "e", "input": "a b c"})
    assert answer["data"][0]["embedding"] == fake.vector("a b c")
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_upstream_failures_are_clean_errors(tmp_path: Path, fake: FakeOpenAI) -> None:
    for method in ("chat", "chat_stream", "embed"):
        request = {**CHAT, "input": "x"}
        with pytest.raises(BadGateway) as failed:
            _call(_runtime(tmp_path, fake.url, model="fail"), method, request)
        assert failed.value.code == "upstream_error" and failed.value.status_code == 502
    with pytest.raises(BadRequest) as rejected:
        _call(_runtime(tmp_path, fake.url, model="reject"), "chat", CHAT)
    assert rejected.value.code == "upstream_rejected"
    assert "the fake rejects this" in rejected.value.message
    with pytest.raises(BadGateway):
        _call(_runtime(tmp_path, fake.url, model="cut"), "chat", CHAT)  # cut JSON


def test_a_stalled_upstream_times_out(tmp_path: Path, fake: FakeOpenAI) -> None:
    runtime = _runtime(tmp_path, fake.url, model="stall", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as error:
        _call(runtime, "chat", CHAT)
    assert error.value.code == "upstream_timeout" and error.value.status_code == 504
    chunks, stream_error = _stream_until_error(runtime, CHAT)
    assert isinstance(stream_error, GatewayTimeout)
    assert chunks[0]["choices"][0]["delta"]["content"] == "You"
    assert chunks[-1]["usage"]["completion_tokens"] == 1  # what was sent before the stall
    assert time.monotonic() - started < 2.5


def test_a_cut_stream_ends_with_an_error(tmp_path: Path, fake: FakeOpenAI) -> None:
    for model in ("cut", "error-event"):
        chunks, error = _stream_until_error(_runtime(tmp_path, fake.url, model=model), CHAT)
        assert isinstance(error, BadGateway) and error.code == "upstream_error"
        assert [c["choices"][0]["delta"]["content"] for c in chunks[:-1]] == ["You", " said:"]
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == approximate_tokens("You said:")


def test_a_refused_connection_is_unavailable(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    for method in ("chat", "chat_stream"):
        with pytest.raises(ServiceUnavailable) as error:
            _call(runtime, method, CHAT)
        assert error.value.code == "upstream_unavailable"


def test_inspect_and_catalog(tmp_path: Path) -> None:
    assert runtime_for_filename("llama.openai.json") is OpenAIRemoteRuntime
    good = _runtime(tmp_path, "http://vllm:8000/v1", model="meta-llama/Llama-3.2-1B-Instruct")
    OpenAIRemoteRuntime.inspect(good.spec)  # no network needed to register
    bad = [
        _runtime(tmp_path, "ftp://vllm/v1").spec,
        _runtime(tmp_path, "not a url").spec,
        _runtime(tmp_path, "http://vllm:8000/v1", timeout=-1).spec,
        _runtime(tmp_path, "http://vllm:8000/v1", options={"api_key": "leak"}).spec,
    ]
    for spec in bad:
        with pytest.raises(BadRequest):
            OpenAIRemoteRuntime.inspect(spec)
    with pytest.raises(ServiceUnavailable):
        asyncio.run(good.chat(CHAT))  # not loaded
