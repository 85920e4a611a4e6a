"""A tiny chat model built on the spot, so the demo has a language model without downloads.

A byte-level BPE tokenizer is trained on the docstrings of a few standard-library modules,
and a Llama-shaped model of about 150 thousand parameters is initialised at random. It
answers in the right format, token by token, and what it says is nonsense: it has never
been trained. It exists to show and test the plumbing (chat template, streaming, token
counting), not to chat.
"""

from __future__ import annotations

import inspect
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>")
END_OF_TURN = "<|eos|>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS_MODULES = ("json", "textwrap", "string", "collections", "pathlib", "functools")
_VOCABULARY = 1024
_SEED = 20240601


def _corpus() -> Iterator[str]:
    import importlib

    for module_name in _CORPUS_MODULES:
        module = importlib.import_module(module_name)
        yield inspect.getdoc(module) or ""
        for value in vars(module).values():
            doc = inspect.getdoc(value) if callable(value) else None
            if doc:
                yield doc


def _tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCABULARY,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token=END_OF_TURN, pad_token="<|pad|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _unprintable(tokenizer: object, end: int) -> list[int]:
    """Tokens a random model should not emit: role markers, control bytes, broken UTF-8."""
    unprintable = []
    for token_id in range(len(tokenizer)):  # type: ignore[arg-type]
        text = tokenizer.decode([token_id])  # type: ignore[attr-defined]
        if token_id != end and (
            "\ufffd" in text or not text or not (text.isprintable() or text.isspace())
        ):
            unprintable.append(token_id)
    return unprintable


def build_tiny_llm(directory: Path) -> Path:
    """Write the tokenizer and a random ``LlamaForCausalLM`` to ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tokenizer = _tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}  # type: ignore[attr-defined]
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=ids["<|bos|>"],
        eos_token_id=ids[END_OF_TURN],
        pad_token_id=ids["<|pad|>"],
        # Untied: a tied head is not saved, and on loading it came back freshly
        # initialised (sometimes NaN) instead of tied.
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.suppress_tokens = _unprintable(tokenizer, ids[END_OF_TURN])
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]
    return directory


def tiny_llm_archive(cache: Path) -> Path:
    """The model as a ``.tar.gz``, built once and then reused from ``cache``."""
    archive = cache / "tiny-chat.tar.gz"
    if archive.is_file():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f".build-{uuid.uuid4().hex}"
    try:
        build_tiny_llm(scratch / "tiny-chat")
        partial = scratch / archive.name
        with tarfile.open(partial, "w:gz") as bundle:
            bundle.add(scratch / "tiny-chat", arcname="tiny-chat")
        partial.replace(archive)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return archive
