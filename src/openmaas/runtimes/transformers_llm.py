"""Hugging Face causal language models, in process, behind the OpenAI contract.

The artifact is an archive of a model directory (``config.json``, tokenizer files,
``*.safetensors`` weights) or a JSON location file naming a local ``path``. Nothing is
downloaded: every load passes ``local_files_only``. Remote code and pickled ``.bin``
weights run code when they load, so they need the version's ``allow_code``.

Options: ``max_tokens`` (default completion length, 256), ``max_n`` (most choices a request
may ask for, 8), ``context_length`` (default: the model's ``max_position_embeddings``),
``served_name``, ``path``.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio

from openmaas.domain.errors import BadRequest, OpenMaaSError, ServiceUnavailable
from openmaas.domain.models import Signature, TensorSpec
from openmaas.runtimes import openai_objects as wire
from openmaas.runtimes.base import ArtifactSpec
from openmaas.runtimes.generation import Choice, Generations
from openmaas.runtimes.language import ChatRuntime
from openmaas.runtimes.model_dirs import model_directory, settings_of

_MARKERS = ("config.json",)
_SIGNATURE = Signature(
    inputs=(TensorSpec("prompt", "BYTES", (-1,)),),
    outputs=(TensorSpec("text", "BYTES", (-1,)),),
)
# Without a chat template a model still gets a readable transcript to continue.
_FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _check_directory(directory: Path, allow_code: bool) -> None:
    weights = list(directory.glob("*.safetensors"))
    if not weights and not (allow_code and list(directory.glob("*.bin"))):
        raise BadRequest(
            "the model directory has no *.safetensors weights (pickled *.bin weights need "
            "allow_code)",
            code="invalid_artifact",
        )


def _load(spec: ArtifactSpec, *, with_weights: bool) -> tuple[Any, Any, dict[str, Any], str]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    settings = settings_of(spec)
    directory = model_directory(spec, settings, _MARKERS)
    _check_directory(directory, spec.allow_code)
    common = {"local_files_only": True, "trust_remote_code": spec.allow_code}
    try:
        config = AutoConfig.from_pretrained(directory, **common)
        tokenizer = AutoTokenizer.from_pretrained(directory, **common)
        model = None
        if with_weights:
            model = AutoModelForCausalLM.from_pretrained(
                directory, use_safetensors=not spec.allow_code, **common
            ).eval()
        elif not any(
            arch.endswith(("ForCausalLM", "LMHeadModel"))
            for arch in getattr(config, "architectures", None) or ()
        ):
            raise BadRequest("the model is not a causal language model", code="invalid_artifact")
    except OpenMaaSError:
        raise
    except Exception as exc:
        raise BadRequest(f"not a loadable model: {exc}", code="invalid_artifact") from exc
    return tokenizer, model, settings, directory.name


class TransformersRuntime(ChatRuntime):
    name = "transformers"

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._tokenizer: Any = None
        self._model: Any = None
        self._settings: dict[str, Any] = {}
        self._name = spec.path.name
        self._generations = Generations()

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        _load(spec, with_weights=False)
        return spec.signature if not spec.signature.empty else _SIGNATURE

    async def load(self) -> None:
        tokenizer, model, settings, name = await anyio.to_thread.run_sync(
            lambda: _load(self.spec, with_weights=True)
        )
        if self.signature.empty:
            self.signature = _SIGNATURE
        self._tokenizer, self._model, self._settings, self._name = tokenizer, model, settings, name

    async def unload(self) -> None:
        self._tokenizer = self._model = None
        await anyio.to_thread.run_sync(self._generations.stop_all)

    @property
    def ready(self) -> bool:
        return self._model is not None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    @property
    def default_max_tokens(self) -> int:  # type: ignore[override]
        return int(self._settings.get("max_tokens", 256))

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        """Exact: the prompt tokenized as generation will see it (chat template included)."""
        if "messages" in request:
            return len(self._chat_prompt(request))
        return sum(len(ids) for ids in self._completion_prompts(request))

    @property
    def _context_length(self) -> int:
        given: Any = self._settings.get("context_length")
        return int(given or getattr(self._model.config, "max_position_embeddings", 2048))

    def _model_name(self, request: Mapping[str, Any]) -> str:
        return wire.response_model(request, self._settings, self._name)

    def _chat_prompt(self, request: Mapping[str, Any]) -> list[int]:
        if self._tokenizer is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        messages = wire.chat_messages(request)
        template = None if self._tokenizer.chat_template else _FALLBACK_TEMPLATE
        text = self._tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )
        # A chat template writes its own special tokens (BOS included); the fallback does not.
        ids = self._tokenizer.encode(text, add_special_tokens=template is not None)
        return list(ids)

    def _completion_prompts(self, request: Mapping[str, Any]) -> list[list[int]]:
        if self._tokenizer is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        return [list(self._tokenizer.encode(p)) for p in wire.prompts(request)]

    def _generation_config(self, request: Mapping[str, Any], n: int, max_new: int) -> Any:
        # The model's own generation config carries its end tokens and suppressed tokens.
        config = copy.deepcopy(self._model.generation_config)
        temperature = request.get("temperature")
        top_p = request.get("top_p")
        sample = temperature is None or float(temperature) > 0
        config.do_sample = sample
        config.temperature = float(temperature) if sample and temperature is not None else 1.0
        config.top_p = float(top_p) if sample and top_p is not None else 1.0
        config.top_k = None
        config.max_new_tokens = max_new
        config.max_length = None
        # Greedy choices are all the same: compute one, copy it n times.
        config.num_return_sequences = n if sample else 1
        if config.pad_token_id is None:
            config.pad_token_id = self._tokenizer.pad_token_id or self._tokenizer.eos_token_id
        return config

    def _eos_ids(self, config: Any) -> set[int]:
        eos = config.eos_token_id if config.eos_token_id is not None else []
        ids = set(eos) if isinstance(eos, list) else {eos}
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return ids

    async def _events(
        self, request: Mapping[str, Any], prompts: list[list[int]], spent: dict[str, int]
    ) -> AsyncGenerator[tuple[int, str, str | None], None]:
        """(choice index, new text, finish reason or None) for every choice of every prompt."""
        import torch

        if not self.ready:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        n = wire.choice_count(request, int(self._settings.get("max_n", 8)))
        requested = wire.max_new_tokens(request, int(self._settings.get("max_tokens", 256)))
        stops = wire.stop_sequences(request)
        seed = request.get("seed")
        spent["prompt_tokens"] = sum(len(ids) for ids in prompts)
        for number, ids in enumerate(prompts):
            room = self._context_length - len(ids)
            if room < 1:
                raise BadRequest(
                    f"the prompt has {len(ids)} tokens; this model reads at most "
                    f"{self._context_length}",
                    code="context_length_exceeded",
                )
            max_new = min(requested, room)
            config = self._generation_config(request, n, max_new)
            choices = [
                Choice(self._tokenizer, eos=self._eos_ids(config), stops=stops, max_tokens=max_new)
                for _ in range(n)
            ]
            inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
            seed_value = seed if isinstance(seed, int) else None
            async with aclosing(
                self._generations.steps(self._model, inputs, config, seed_value)
            ) as steps:
                async for step in steps:
                    tokens = step if len(step) == n else step * n
                    for offset, (choice, token) in enumerate(zip(choices, tokens, strict=True)):
                        if choice.finish_reason is not None:
                            continue
                        text = choice.add(token)
                        spent["completion_tokens"] += 1
                        if text or choice.finish_reason:
                            yield number * n + offset, text, choice.finish_reason
                    if all(choice.finish_reason for choice in choices):
                        break
            for offset, choice in enumerate(choices):
                if choice.finish_reason is None:
                    yield number * n + offset, choice.close(), choice.finish_reason

    async def _collect(
        self, request: Mapping[str, Any], prompts: list[list[int]]
    ) -> tuple[list[str], list[str], dict[str, int]]:
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        texts: dict[int, str] = {}
        reasons: dict[int, str] = {}
        async for index, text, reason in self._events(request, prompts, spent):
            texts[index] = texts.get(index, "") + text
            if reason:
                reasons[index] = reason
        order = sorted(reasons)
        used = wire.usage(spent["prompt_tokens"], spent["completion_tokens"])
        return [texts.get(i, "") for i in order], [reasons[i] for i in order], used

    async def _stream(
        self, request: Mapping[str, Any], prompts: list[list[int]], *, chat: bool
    ) -> AsyncIterator[dict[str, Any]]:
        factory = wire.ChunkFactory(model=self._model_name(request), chat=chat)
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        started: set[int] = set()
        yielded = False
        try:
            async with aclosing(self._events(request, prompts, spent)) as events:
                async for index, text, reason in events:
                    if chat and index not in started:
                        started.add(index)
                        yield factory.role(index)
                    yielded = True
                    yield factory.text(index, text, reason)
        except OpenMaaSError:
            # Failing before the first chunk, the route can still answer a plain error.
            if yielded or spent["completion_tokens"]:
                yield factory.usage(wire.usage(spent["prompt_tokens"], spent["completion_tokens"]))
            raise
        yield factory.usage(wire.usage(spent["prompt_tokens"], spent["completion_tokens"]))

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        texts, reasons, used = await self._collect(request, [self._chat_prompt(request)])
        model = self._model_name(request)
        return wire.chat_completion(model=model, texts=texts, finish_reasons=reasons, used=used)

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream(request, [self._chat_prompt(request)], chat=True)

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        texts, reasons, used = await self._collect(request, self._completion_prompts(request))
        model = self._model_name(request)
        return wire.text_completion(model=model, texts=texts, finish_reasons=reasons, used=used)

    def complete_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream(request, self._completion_prompts(request), chat=False)
