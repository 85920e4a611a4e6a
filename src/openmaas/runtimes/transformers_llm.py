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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from openmaas.domain.errors import BadRequest, OpenMaaSError, ServiceUnavailable
from openmaas.domain.models import Signature
from openmaas.runtimes import openai_objects as wire
from openmaas.runtimes.base import ArtifactSpec, invalid_artifact
from openmaas.runtimes.generation import (
    Choice,
    Generations,
    Sampling,
    TokenScore,
    prompt_scores,
)
from openmaas.runtimes.language import GENERATION_SIGNATURE, ChatRuntime
from openmaas.runtimes.model_dirs import model_directory, settings_of

_MARKERS = ("config.json",)
_SIGNATURE = GENERATION_SIGNATURE
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


def _load(spec: ArtifactSpec, *, with_weights: bool) -> tuple[Any, Any, dict[str, Any], str, Any]:
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
        raise invalid_artifact("not a loadable model", exc) from exc
    return tokenizer, model, settings, directory.name, config


class TransformersRuntime(ChatRuntime):
    name = "transformers"

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._tokenizer: Any = None
        self._model: Any = None
        self._config: Any = None
        self._settings: dict[str, Any] = {}
        self._name = spec.path.name
        self._generations = Generations()

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        _load(spec, with_weights=False)
        return spec.signature if not spec.signature.empty else _SIGNATURE

    async def load(self) -> None:
        tokenizer, model, settings, name, _ = await anyio.to_thread.run_sync(
            lambda: _load(self.spec, with_weights=True)
        )
        self._config = model.config
        if self.signature.empty:
            self.signature = _SIGNATURE
        self._tokenizer, self._model, self._settings, self._name = tokenizer, model, settings, name

    async def load_tokenizer(self) -> None:
        """What counting tokens needs, without the weights: for a gateway in front of
        replicas that run the model elsewhere (Ray)."""
        tokenizer, _, settings, name, config = await anyio.to_thread.run_sync(
            lambda: _load(self.spec, with_weights=False)
        )
        self._tokenizer, self._settings, self._name = tokenizer, settings, name
        self._config = config

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
    def context_length(self) -> int | None:
        return self._context_length if self._model is not None else None

    @property
    def _context_length(self) -> int:
        given: Any = self._settings.get("context_length")
        return int(given or getattr(self._config, "max_position_embeddings", 2048))

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
        vocabulary = int(self._config.vocab_size)
        ids = []
        for prompt in wire.prompts(request):
            if isinstance(prompt, str):
                ids.append(list(self._tokenizer.encode(prompt)))
            elif max(prompt) >= vocabulary:
                raise BadRequest(
                    f"prompt: token id {max(prompt)} is not in this model's vocabulary "
                    f"(0 to {vocabulary - 1})",
                    code="invalid_request",
                    details={"param": "prompt"},
                )
            else:
                ids.append(prompt)
        return ids

    def _generation_config(self, request: Mapping[str, Any], n: int, max_new: int) -> Any:
        # The model's own generation config carries its end tokens and suppressed tokens.
        config = copy.deepcopy(self._model.generation_config)
        temperature = wire.number_between(request, "temperature", 0, 2, 1.0)
        sample = request.get("temperature") is None or temperature > 0
        config.do_sample = sample
        config.temperature = temperature if sample else 1.0
        config.top_p = wire.number_between(request, "top_p", 0, 1, 1.0) if sample else 1.0
        top_k = request.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
            raise BadRequest(
                "top_k is an integer", code="invalid_request", details={"param": "top_k"}
            )
        config.top_k = top_k if sample and top_k is not None and top_k > 0 else None
        config.min_p = wire.number_between(request, "min_p", 0, 1, 0.0) or None
        config.repetition_penalty = wire.number_between(
            request, "repetition_penalty", 0.01, 10, 1.0
        )
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

    def _plan(self, request: Mapping[str, Any], *, chat: bool) -> _Plan:
        """Everything the request asks for, checked before any token is generated."""
        if not self.ready:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        wire.refuse_unsupported(request, _CHAT_FIELDS if chat else _COMPLETION_FIELDS)
        n = wire.choice_count(request, int(self._settings.get("max_n", 8)))
        best_of = request.get("best_of")
        if not chat and best_of is not None and best_of != n:
            raise BadRequest(
                "best_of other than n is not supported by this model",
                code="unsupported_parameter",
                details={"param": "best_of"},
            )
        seed = request.get("seed")
        sampling = Sampling(
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            logprobs=wire.requested_logprobs(request, chat=chat),
            frequency_penalty=wire.number_between(request, "frequency_penalty", -2, 2),
            presence_penalty=wire.number_between(request, "presence_penalty", -2, 2),
            logit_bias=wire.logit_bias(request, int(self._model.config.vocab_size)),
        )
        prompts = [self._chat_prompt(request)] if chat else self._completion_prompts(request)
        return _Plan(
            request=request,
            chat=chat,
            n=n,
            max_new=wire.max_new_tokens(request, int(self._settings.get("max_tokens", 256))),
            stops=wire.stop_sequences(request),
            sampling=sampling,
            echo=not chat and request.get("echo") is True,
            prompts=prompts,
        )

    def _token_texts(self, scores: list[TokenScore]) -> list[wire.TokenLogprob]:
        decode = self._tokenizer.decode
        return [
            (
                str(decode([score.token])),
                score.logprob,
                None if score.top is None else [(str(decode([t])), lp) for t, lp in score.top],
            )
            for score in scores
        ]

    def _prompt_text(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    async def _echo(self, plan: _Plan, number: int) -> AsyncGenerator[_Event, None]:
        """The prompt as the first piece of each of its choices (``echo``), with its scores."""
        ids = plan.prompts[number]
        scores = None
        if plan.sampling.logprobs is not None:
            scores = await anyio.to_thread.run_sync(
                prompt_scores, self._model, ids, plan.sampling.logprobs
            )
        for offset in range(plan.n):
            yield _Event(number * plan.n + offset, self._prompt_text(ids), None, scores)

    async def _events(self, plan: _Plan, spent: dict[str, int]) -> AsyncGenerator[_Event, None]:
        """The pieces of text of every choice of every prompt, in the order they are made."""
        import torch

        n = plan.n
        spent["prompt_tokens"] = sum(len(ids) for ids in plan.prompts)
        for number, ids in enumerate(plan.prompts):
            room = self._context_length - len(ids)
            if room < 1:
                raise BadRequest(
                    f"the prompt has {len(ids)} tokens; this model reads at most "
                    f"{self._context_length}",
                    code="context_length_exceeded",
                )
            if plan.echo:
                async for echoed in self._echo(plan, number):
                    yield echoed
            max_new = min(plan.max_new, room)
            if max_new == 0:  # echo only: the prompt scored, nothing generated
                for offset in range(n):
                    yield _Event(number * n + offset, "", "length", None)
                continue
            config = self._generation_config(plan.request, n, max_new)
            eos = self._eos_ids(config)
            choices = [
                Choice(self._tokenizer, eos=eos, stops=plan.stops, max_tokens=max_new)
                for _ in range(n)
            ]
            pending: list[list[TokenScore]] = [[] for _ in range(n)]
            inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
            async with aclosing(
                self._generations.steps(self._model, inputs, config, plan.sampling)
            ) as steps:
                async for step, scores in steps:
                    tokens = step if len(step) == n else step * n
                    scored = scores if scores is None or len(scores) == n else scores * n
                    for offset, (choice, token) in enumerate(zip(choices, tokens, strict=True)):
                        if choice.finish_reason is not None:
                            continue
                        text = choice.add(token)
                        spent["completion_tokens"] += 1
                        if scored is not None and token not in eos:
                            pending[offset].append(scored[offset])
                        if text or choice.finish_reason:
                            taken = pending[offset] if scored is not None else None
                            pending[offset] = []
                            yield _Event(number * n + offset, text, choice.finish_reason, taken)
                    if all(choice.finish_reason for choice in choices):
                        break
            for offset, choice in enumerate(choices):
                if choice.finish_reason is None:
                    taken = pending[offset] if plan.sampling.logprobs is not None else None
                    yield _Event(number * n + offset, choice.close(), choice.finish_reason, taken)

    def _first_offset(self, plan: _Plan, index: int) -> int:
        """Where a completion's text starts, counted from the prompt's start (OpenAI's
        ``text_offset``): at the prompt's end, or at 0 when the prompt is echoed."""
        if plan.echo:
            return 0
        return len(self._prompt_text(plan.prompts[index // plan.n]))

    def _format(self, plan: _Plan, event: _Event, offsets: dict[int, int]) -> dict[str, Any] | None:
        """The event's ``logprobs`` in the shape of its API; None when none were asked for."""
        if event.scores is None:
            return None
        tokens = self._token_texts(event.scores)
        if plan.chat:
            return wire.chat_logprobs(tokens)
        start = offsets.get(event.index)
        if start is None:
            start = self._first_offset(plan, event.index)
        offsets[event.index] = start + sum(len(text) for text, _lp, _top in tokens)
        return wire.completion_logprobs(tokens, start)

    async def _collect(self, plan: _Plan) -> dict[str, Any]:
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        texts: dict[int, str] = {}
        reasons: dict[int, str] = {}
        scores: dict[int, list[TokenScore]] = {}
        async for event in self._events(plan, spent):
            texts[event.index] = texts.get(event.index, "") + event.text
            if event.scores is not None:
                scores.setdefault(event.index, []).extend(event.scores)
            if event.reason:
                reasons[event.index] = event.reason
        order = sorted(reasons)
        logprobs = None
        if plan.sampling.logprobs is not None:
            logprobs = [
                self._format(plan, _Event(i, "", None, scores.get(i, [])), {}) for i in order
            ]
        return {
            "model": self._model_name(plan.request),
            "texts": [texts.get(i, "") for i in order],
            "finish_reasons": [reasons[i] for i in order],
            "used": wire.usage(spent["prompt_tokens"], spent["completion_tokens"]),
            "logprobs": logprobs,
        }

    async def _planned(self, request: Mapping[str, Any], *, chat: bool) -> _Plan:
        """``_plan`` in a worker thread: chat templates and tokenizing a long prompt take
        long enough to stall every other request if run on the event loop."""
        return await anyio.to_thread.run_sync(lambda: self._plan(request, chat=chat))

    async def _stream(
        self, request: Mapping[str, Any], *, chat: bool
    ) -> AsyncIterator[dict[str, Any]]:
        plan = await self._planned(request, chat=chat)
        factory = wire.ChunkFactory(model=self._model_name(plan.request), chat=chat)
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        started: set[int] = set()
        offsets: dict[int, int] = {}
        yielded = False
        try:
            async with aclosing(self._events(plan, spent)) as events:
                async for event in events:
                    if chat and event.index not in started:
                        started.add(event.index)
                        yield factory.role(event.index)
                    yielded = True
                    logprobs = self._format(plan, event, offsets)
                    yield factory.text(event.index, event.text, event.reason, logprobs)
        except OpenMaaSError:
            # Failing before the first chunk, the route can still answer a plain error.
            if yielded or spent["completion_tokens"]:
                yield factory.usage(wire.usage(spent["prompt_tokens"], spent["completion_tokens"]))
            raise
        yield factory.usage(wire.usage(spent["prompt_tokens"], spent["completion_tokens"]))

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return wire.chat_completion(**await self._collect(await self._planned(request, chat=True)))

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream(request, chat=True)

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        plan = await self._planned(request, chat=False)
        return wire.text_completion(**await self._collect(plan))

    def complete_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream(request, chat=False)


# Request fields this runtime acts on, besides those that change nothing
# (``openai_objects.refuse_unsupported``); ``top_k``, ``min_p`` and ``repetition_penalty``
# are vLLM's extensions.
_SAMPLING_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "stop",
        "n",
        "seed",
        "logprobs",
    }
)
_CHAT_FIELDS = _SAMPLING_FIELDS | {"messages", "max_completion_tokens", "top_logprobs"}
_COMPLETION_FIELDS = _SAMPLING_FIELDS | {"prompt", "echo", "best_of"}


@dataclass(frozen=True, slots=True)
class _Plan:
    request: Mapping[str, Any]
    chat: bool
    n: int
    max_new: int
    stops: list[str]
    sampling: Sampling
    echo: bool
    prompts: list[list[int]]


@dataclass(frozen=True, slots=True)
class _Event:
    """A piece of one choice's text, why the choice ended (when it did), and the scores of
    the tokens behind the piece (None when no log-probabilities were asked for)."""

    index: int
    text: str
    reason: str | None
    scores: list[TokenScore] | None
