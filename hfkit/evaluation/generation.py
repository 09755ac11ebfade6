"""Batched text generation (greedy, sampling, top-k/top-p, beam) with left padding."""
from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel

from ..errors import HfkitError
from .perplexity import doc_start_token_id


def generation_config(tokenizer, max_new_tokens: int = 40, do_sample: bool = False,
                      temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      num_beams: int = 1, num_return_sequences: int = 1,
                      repetition_penalty: float | None = None) -> GenerationConfig:
    """A `GenerationConfig` from plain settings; unset knobs keep transformers' neutral values."""
    if num_return_sequences > 1 and not do_sample and num_return_sequences > num_beams:
        raise HfkitError(
            f"num_return_sequences={num_return_sequences} needs sampling (--do-sample) or at least as many beams"
        )
    if do_sample and temperature <= 0:
        raise HfkitError(f"temperature must be > 0 when sampling, got {temperature}")
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams,
                              num_return_sequences=num_return_sequences,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              bos_token_id=tokenizer.bos_token_id)
    if do_sample:
        kw.update(temperature=temperature, top_k=top_k if top_k is not None else 0, top_p=top_p if top_p is not None else 1.0)
    if repetition_penalty is not None:
        kw["repetition_penalty"] = repetition_penalty
    return GenerationConfig(**kw)


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer, prompts: list[str], batch_size: int = 16,
             seed: int | None = None, add_special_tokens: bool = False, stop_token_ids: list[int] | None = None,
             streamer=None, **settings) -> list[list[str]]:
    """Continue every prompt; returns, per prompt, `num_return_sequences` continuations (prompt removed).

    Prompts are run in batches with left padding (decoder-only models must see the prompt's last
    token at the right edge; encoder-decoder models get their input right-padded and return only
    the output); they are grouped by length to waste little compute on padding.
    """
    if not prompts:
        return []
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
        encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        empty = [i for i, e in enumerate(encoded) if not e]
        if empty:
            # nothing to condition on: start from the document separator the model was trained with
            for i in empty:
                encoded[i] = [doc_start_token_id(tokenizer)]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[list[str]] = [[] for _ in prompts]
        for start in range(0, len(order), batch_size):
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
