"""Batched text generation (greedy, sampling, top-k/top-p, beam) with left padding.

`GenerationSettings` holds the decoding knobs with hfkit's one set of defaults: the recipe's
`generate:` section, the CLI's generation options and the evaluation commands all read them here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel

from ..errors import HfkitError
from .encoding import doc_start_token_id, seq2seq_ids  # noqa: F401 (seq2seq_ids: re-exported)


@dataclass
class GenerationSettings:
    """Decoding settings (GenerationConfig's names); the `help` metadata is the CLI's help text."""
    max_new_tokens: int = field(default=64, metadata={"help": "tokens to generate per prompt", "min": 1})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy/beam decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (with --do-sample)", "above": 0})
    top_k: Optional[int] = field(default=None, metadata={"help": "sample from the k most likely tokens", "min": 0})
    top_p: Optional[float] = field(default=None, metadata={"help": "nucleus sampling: the smallest set of tokens "
                                                                    "with this much probability", "above": 0, "max": 1})
    num_beams: int = field(default=1, metadata={"help": "beam search with this many beams (1: greedy)", "min": 1})
    num_return_sequences: int = field(default=1, metadata={"help": "continuations per prompt", "min": 1})
    repetition_penalty: Optional[float] = field(default=None, metadata={"help": "> 1 discourages repeats", "above": 0})

    def kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(GenerationSettings)}

    def validate(self, prefix: str) -> None:
        """The settings' own errors, up front (before any training or loading)."""
        for f in dataclasses.fields(GenerationSettings):
            problem = out_of_range(getattr(self, f.name), f.metadata)
            if problem:
                raise HfkitError(f"recipe key '{prefix}.{f.name}' {problem}")
        try:
            generation_config(None, **self.kwargs())
        except HfkitError as e:
            raise HfkitError(f"recipe section '{prefix}': {e}") from None


def out_of_range(value, limits: dict) -> str | None:
    """Why a number breaks its field's limits (`min`, `max`, `above`: exclusive), or None; NaN and
    infinity never pass."""
    import math

    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if "min" in limits and value < limits["min"]:
        return f"must be >= {limits['min']}, got {value}"
    if "above" in limits and value <= limits["above"]:
        return f"must be > {limits['above']}, got {value}"
    if "max" in limits and value > limits["max"]:
        return f"must be <= {limits['max']}, got {value}"
    return None


@dataclass
class GenerateConfig(GenerationSettings):
    """Recipe section `generate`: samples written to metrics.json at the end of a run."""
    prompts: list[str] = field(default_factory=list)


def generation_config(tokenizer, max_new_tokens: int = 64, do_sample: bool = False,
                      temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      num_beams: int = 1, num_return_sequences: int = 1,
                      repetition_penalty: float | None = None) -> GenerationConfig:
    """A `GenerationConfig` from plain settings; unset knobs keep transformers' neutral values."""
    given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                 num_return_sequences=num_return_sequences, repetition_penalty=repetition_penalty)
    for f in dataclasses.fields(GenerationSettings):
        if f.name in given and (problem := out_of_range(given[f.name], f.metadata)):
            raise HfkitError(f"{f.name} {problem}")
    if num_return_sequences > 1 and not do_sample and num_return_sequences > num_beams:
        raise HfkitError(
            f"num_return_sequences={num_return_sequences} needs sampling (--do-sample) or at least as many beams"
        )
    if do_sample and temperature <= 0:
        raise HfkitError(f"temperature must be > 0 when sampling, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise HfkitError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 0:
        raise HfkitError(f"top_k must be >= 0, got {top_k}")
    if repetition_penalty is not None and repetition_penalty <= 0:
        raise HfkitError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams,
                              num_return_sequences=num_return_sequences)
    if tokenizer is not None:
        kw.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if do_sample:
        kw.update(temperature=temperature, top_k=top_k if top_k is not None else 0, top_p=top_p if top_p is not None else 1.0)
    if repetition_penalty is not None:
        kw["repetition_penalty"] = repetition_penalty
    return GenerationConfig(**kw)


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer, prompts: list[str], batch_size: int = 16,
             seed: int | None = None, add_special_tokens: bool = False, stop_token_ids: list[int] | None = None,
             streamer=None, progress: bool = False, desc: str = "generate", **settings) -> list[list[str]]:
    """Continue every prompt; returns, per prompt, `num_return_sequences` continuations (prompt removed).

    Prompts are run in batches with left padding (decoder-only models must see the prompt's last
    token at the right edge; encoder-decoder models get their input right-padded and return only
    the output); they are grouped by length to waste little compute on padding. `progress`: a bar
    over the batches (on stderr).
    """
    if not prompts:
        return []
    bad = next((i for i, p in enumerate(prompts) if not isinstance(p, str)), None)
    if bad is not None:
        raise HfkitError(f"prompt {bad} is {type(prompts[bad]).__name__} {prompts[bad]!r}, not text")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen_cfg = generation_config(tokenizer, **settings)
    if stop_token_ids:
        gen_cfg.eos_token_id = list(stop_token_ids)
    if seed is not None:
        torch.manual_seed(seed)
    model.eval()
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right" if seq2seq else "left"  # an encoder reads the input; a decoder continues it
    try:
        encoded = ([seq2seq_ids(tokenizer, model.config, p) for p in prompts] if seq2seq else
                   [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts])
        empty = [i for i, e in enumerate(encoded) if not e]
        if empty:
            # nothing to condition on: start from the document separator the model was trained with
            for i in empty:
                encoded[i] = [doc_start_token_id(tokenizer)]
        from ..models import max_positions

        limit = None if seq2seq else max_positions(model.config)
        longest = max(range(len(encoded)), key=lambda i: len(encoded[i]))
        if limit is not None and len(encoded[longest]) + gen_cfg.max_new_tokens > limit:
            raise HfkitError(f"prompt {longest + 1} has {len(encoded[longest])} tokens: with max_new_tokens="
                             f"{gen_cfg.max_new_tokens} it exceeds the model's {limit} positions (shorten it, or "
                             f"generate fewer tokens)")
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[list[str]] = [[] for _ in prompts]
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress,
                          leave=False):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            seqs = model.generate(**batch, generation_config=gen_cfg, streamer=streamer)
            new = seqs if seq2seq else seqs[:, batch["input_ids"].shape[1]:]  # seq2seq outputs hold no prompt
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            n = gen_cfg.num_return_sequences
            for j, i in enumerate(idx):
                out[i] = texts[j * n:(j + 1) * n]
        return out
    finally:
        tokenizer.padding_side = old_side
