"""Token-by-token generation with a Hugging Face model, off the event loop.

``model.generate`` is blocking, so each request runs it in its own thread and a streamer
hands every step's token ids to the event loop through an ``asyncio.Queue``. We do not use
``TextIteratorStreamer``: it takes one sequence only (no ``n``), holds text back until a
word ends, and its iterator blocks, which an event loop must not do.

Generations of one process run one at a time: on CPU they would only fight for the same
cores, and a request with a ``seed`` must own torch's global random generator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openmaas.domain.errors import BadRequest
from openmaas.incidents import reported

_GENERATION_LOCK = threading.Lock()
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@dataclass(frozen=True, slots=True)
class TokenScore:
    """A token's log-probability under the model, and the likeliest tokens at its place."""

    token: int
    logprob: float | None
    """None for the first token of a prompt: nothing comes before it."""
    top: tuple[tuple[int, float], ...] | None = ()


Step = tuple[list[int], list[TokenScore] | None]
"""One generation step: a new token id per sequence, and their scores when asked for."""


def _top(row: Any, count: int) -> tuple[tuple[int, float], ...]:
    import torch

    if count <= 0:
        return ()
    values, ids = torch.topk(row, count)
    return tuple(zip(ids.tolist(), values.tolist(), strict=True))


def _score_recorder(top: int) -> Any:
    """A logits processor that keeps each step's log-probabilities, changing nothing.

    Placed first among our processors, it sees the model's scores after the model's own
    generation config (suppressed tokens) and before sampling settings (temperature,
    top-p) or the request's penalties and biases: the model's own distribution.
    """
    import torch
    from transformers import LogitsProcessor

    class ScoreRecorder(LogitsProcessor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.last: Any = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.last = torch.log_softmax(scores.float(), dim=-1)
            return scores

        def pick(self, ids: list[int]) -> list[TokenScore]:
            return [
                TokenScore(token, float(self.last[row, token]), _top(self.last[row], top))
                for row, token in enumerate(ids)
            ]

    return ScoreRecorder()


def _penalties(
    prompt_length: int, frequency: float, presence: float, bias: Mapping[int, float]
) -> Any:
    """OpenAI's frequency and presence penalties (on the generated tokens) and logit bias."""
    import torch
    from transformers import LogitsProcessor

    class Penalties(LogitsProcessor):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.clone()
            if frequency or presence:
                generated = input_ids[:, prompt_length:]
                counts = torch.zeros_like(scores).scatter_add_(
                    1, generated, torch.ones_like(generated, dtype=scores.dtype)
                )
                scores -= counts * frequency + (counts > 0).to(scores.dtype) * presence
            for token, value in bias.items():
                scores[:, token] += value
            return scores

    return Penalties()


@dataclass(frozen=True, slots=True)
class Sampling:
    """What a request asks of the generation beyond the generation config."""

    seed: int | None = None
    logprobs: int | None = None
    """Alternatives to report per token (0: the chosen token's only); None: no scores."""
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[int, float] | None = None


def _streamer(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], recorder: Any = None
) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first echoes the prompt
                self.prompt_seen = True
                return
            ids = value.reshape(-1).tolist()
            step: Step = (ids, recorder.pick(ids) if recorder is not None else None)
            loop.call_soon_threadsafe(queue.put_nowait, step)

        def end(self) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    return QueueStreamer()


def _stopper(event: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria

    class StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool)

    return StopWhenAsked()


class Generations:
    """The generations one model runs, so unloading it can stop and wait for them.

    A thread killed at interpreter exit in the middle of a torch operation aborts the
    process, hence the join.
    """

    def __init__(self) -> None:
        self._running: dict[threading.Thread, threading.Event] = {}

    def stop_all(self, timeout: float = 30.0) -> None:
        """Ask every generation to stop and wait for it (blocking)."""
        running = list(self._running.items())
        for _thread, stop in running:
            stop.set()
        for thread, _stop in running:
            thread.join(timeout)

    def steps(
        self, model: Any, inputs: dict[str, Any], config: Any, sampling: Sampling
    ) -> AsyncGenerator[Step, None]:
        return _generate_steps(self._running, model, inputs, config, sampling)


def prompt_scores(model: Any, ids: list[int], top: int) -> list[TokenScore]:
    """Each prompt token's log-probability given the tokens before it (blocking).

    The first token has none, as in OpenAI's ``echo`` answers. Tokens the model's
    generation config suppresses are left out, as they are when it generates.
    """
    import torch

    with _GENERATION_LOCK, torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        suppressed = getattr(model.generation_config, "suppress_tokens", None)
        if suppressed:
            logits[:, suppressed] = float("-inf")
        scores = torch.log_softmax(logits, dim=-1)
    found = [TokenScore(ids[0], None, None)]
    for position in range(1, len(ids)):
        row = scores[position - 1]
        token = ids[position]
        found.append(TokenScore(token, float(row[token]), _top(row, top)))
    return found


async def _generate_steps(
    running: dict[threading.Thread, threading.Event],
    model: Any,
    inputs: dict[str, Any],
    config: Any,
    sampling: Sampling,
) -> AsyncGenerator[Step, None]:
    """Yield, per generation step, one new token id for each returned sequence.

    Leaving the loop early (a finished request, a client gone) stops the generation at
    its next step, so the lock is not held for tokens nobody reads.
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    processors = []
    recorder = None
    if sampling.logprobs is not None:
        recorder = _score_recorder(sampling.logprobs)
        processors.append(recorder)
    if sampling.frequency_penalty or sampling.presence_penalty or sampling.logit_bias:
        prompt_length = int(inputs["input_ids"].shape[1])
        processors.append(
            _penalties(
                prompt_length,
                sampling.frequency_penalty,
                sampling.presence_penalty,
                sampling.logit_bias or {},
            )
        )
    seed = sampling.seed

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def run() -> None:
        try:
            with _GENERATION_LOCK:
                if stop.is_set():
                    return
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    model.generate(
                        **inputs,
                        generation_config=config,
                        streamer=_streamer(loop, queue, recorder),
                        stopping_criteria=StoppingCriteriaList([_stopper(stop)]),
                        logits_processor=LogitsProcessorList(processors),
                    )
        except BaseException as exc:
            post(_Failure(exc))
        finally:
            running.pop(threading.current_thread(), None)
            post(_END)

    thread = threading.Thread(target=run, name="openmaas-generate", daemon=True)
    running[thread] = stop
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise reported(
                    BadRequest,
                    "the model failed to generate",
                    code="model_error",
                    detail=repr(item.error),
                ) from item.error
            yield item
    finally:
        stop.set()


class Detokenizer:
    """Turns token ids into text one token at a time without splitting a character.

    Decoding a growing window and emitting the new suffix keeps the spaces and merges a
    tokenizer adds between tokens, and waits while a UTF-8 character is incomplete.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""


class Choice:
    """One generated sequence: its text so far, its token count and why it ended."""

    def __init__(self, tokenizer: Any, *, eos: set[int], stops: list[str], max_tokens: int) -> None:
        self.detokenizer = Detokenizer(tokenizer)
        self.eos = eos
        self.stops = stops
        # Text that may be the start of a stop sequence is held back until it is not.
        self.holdback = max((len(s) for s in stops), default=1) - 1
        self.max_tokens = max_tokens
        self.text = ""
        self.sent = 0
        self.tokens = 0
        self.finish_reason: str | None = None

    def add(self, token: int) -> str:
        """Take one token; return the text the client may now see."""
        if self.finish_reason is not None:
            return ""
        self.tokens += 1
        if token in self.eos:
            self.finish_reason = "stop"
            return self._release(len(self.text))
        self.text += self.detokenizer.add(token)
        for stop in self.stops:
            at = self.text.find(stop, max(0, self.sent - len(stop)))
            if at != -1:
                self.text = self.text[:at]
                self.finish_reason = "stop"
                return self._release(at)
        if self.tokens >= self.max_tokens:
            self.finish_reason = "length"
            return self._release(len(self.text))
        return self._release(max(self.sent, len(self.text) - self.holdback))

    def close(self) -> str:
        """The generation ended without this choice finishing: the length ran out."""
        if self.finish_reason is not None:
            return ""
        self.finish_reason = "length"
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        released = self.text[self.sent : upto]
        self.sent = max(self.sent, upto)
        return released
