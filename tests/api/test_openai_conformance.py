"""What the OpenAI specification asks that clients rely on, with the ``openai`` SDK over HTTP:
log-probabilities, echo, token-id prompts, ``refusal``, ``usage: null`` on stream chunks,
a clear 400 for what an in-process model cannot do, fields passed unchanged to a remote
engine, and upstream failures that never show where the upstream is."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from openmaas.demo.tiny_llm import tiny_llm_archive
from openmaas.testing import FakeOpenAI
from tests.conftest import ADMIN_KEY, Platform
from tests.serving.helpers import deploy, register

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(stall_seconds=3.0) as server:
        yield server


@pytest.fixture(scope="module")
def models(platform: Platform, fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("conformance")
    suffix = secrets.token_hex(3)
    names = {}
    for name, upstream in {"echo": "echo", "cut": "cut", "died": "error-event"}.items():
        model = f"conf-{name}-{suffix}"
        endpoint = directory / f"{name}.openai.json"
        endpoint.write_text(json.dumps({"base_url": fake.url, "model": upstream, "timeout": 2}))
        register(platform.admin, model, endpoint)
        deploy(platform.admin, model, endpoint_name=model, timeout_s=10)
        names[name] = model
    names["tiny"] = f"conf-tiny-{suffix}"
    register(platform.admin, names["tiny"], tiny_llm_archive(directory), runtime="transformers")
    deploy(platform.admin, names["tiny"], endpoint_name=names["tiny"])
    return names


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{platform.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=60
    ) as sdk:
        yield sdk


def _events(platform: Platform, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The data of every server-sent event of a streamed answer, read raw."""
    found = []
    with httpx.stream(
        "POST",
        f"{platform.url}/v1/chat/completions"
        if "messages" in body
        else f"{platform.url}/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                found.append(json.loads(line[6:]))
    return found


def test_logprobs_and_echo_from_the_local_model(client: openai.OpenAI, models: dict) -> None:
    answer = client.chat.completions.create(
        model=models["tiny"],
        messages=HELLO,
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert len(choice.logprobs.content) == 4
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob < 0 for t in choice.logprobs.content)
    scored = client.completions.create(
        model=models["tiny"], prompt="one two three", max_tokens=0, echo=True, logprobs=1
    )
    logprobs = scored.choices[0].logprobs
    assert scored.choices[0].text == "one two three"
    assert logprobs is not None and logprobs.token_logprobs is not None
    assert logprobs.token_logprobs[0] is None and all(lp < 0 for lp in logprobs.token_logprobs[1:])


def test_token_id_prompts(client: openai.OpenAI, models: dict) -> None:
    single = client.completions.create(model=models["tiny"], prompt=[1, 2, 3], max_tokens=2)
    assert single.usage is not None and single.usage.prompt_tokens == 3
    several = client.completions.create(
        model=models["tiny"], prompt=[[1, 2], [3]], max_tokens=2, temperature=0
    )
    assert len(several.choices) == 2 and several.usage is not None
    assert several.usage.prompt_tokens == 3
    remote = client.completions.create(model=models["echo"], prompt=[[7, 8], [9]])
    assert remote.choices[0].text == "You said: 7 8 9"
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=models["tiny"], prompt=[[1, -2]], max_tokens=2)
    assert error.value.param is not None and error.value.param.startswith("prompt")


def test_refusal_and_usage_null_on_the_wire(platform: Platform, models: dict) -> None:
    for model in (models["tiny"], models["echo"]):
        raw = platform.admin.post(
            "/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 3}
        ).json()
        message = raw["choices"][0]["message"]
        assert "refusal" in message and message["refusal"] is None
        body = {
            "model": model,
            "messages": HELLO,
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        chunks = _events(platform, body)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
        without = _events(platform, {**body, "stream_options": None})
        assert all("usage" not in c for c in without)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "lookup"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"extra_body": {"guided_json": {"type": "object"}}}, "guided_json"),
    ],
)
def test_an_in_process_model_refuses_what_it_cannot_do(
    client: openai.OpenAI, models: dict, fields: dict[str, Any], param: str
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(
                model=models["tiny"], messages=HELLO, max_tokens=2, stream=stream, **fields
            )
        assert error.value.param == param
        assert error.value.code == "unsupported_parameter"


def test_remote_engines_get_every_field_unchanged(
    client: openai.OpenAI, models: dict, fake: FakeOpenAI
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a word up",
                "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
            },
        }
    ]
    answer = client.chat.completions.create(
        model=models["echo"],
        messages=HELLO,
        tools=tools,  # type: ignore[arg-type]
        tool_choice="auto",
        parallel_tool_calls=False,
        logprobs=True,
        top_logprobs=2,
    )
    sent = fake.requests[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is False
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    call = answer.choices[0].message.tool_calls
    assert call is not None and call[0].function.name == "lookup"  # type: ignore[union-attr]
    assert answer.choices[0].finish_reason == "tool_calls"
    schema = {"name": "said", "schema": {"type": "object"}}
    formatted = client.chat.completions.create(
        model=models["echo"],
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": schema},  # type: ignore[typeddict-item]
        logprobs=True,
    )
    assert fake.requests[-1]["response_format"] == {"type": "json_schema", "json_schema": schema}
    assert json.loads(formatted.choices[0].message.content or "") == {"said": "hello there"}
    assert formatted.choices[0].logprobs is not None
    client.completions.create(model=models["echo"], prompt="x", echo=True, logprobs=3)
    assert fake.requests[-1]["echo"] is True and fake.requests[-1]["logprobs"] == 3


def test_a_failing_upstream_never_shows_where_it_is(
    platform: Platform, client: openai.OpenAI, models: dict, fake: FakeOpenAI
) -> None:
    host = fake.url.removeprefix("http://").removesuffix("/v1")
    for model in (models["cut"], models["died"]):
        chunks = _events(platform, {"model": model, "messages": HELLO, "stream": True})
        error = chunks[-1]["error"]
        assert error["code"] == "upstream_error" and error["type"] == "server_error"
        assert host not in json.dumps(chunks) and "127.0.0.1" not in error["message"]
        assert "reference" in error["message"]
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model=models["cut"], messages=HELLO)
    assert failed.value.status_code == 502 and host not in failed.value.message
