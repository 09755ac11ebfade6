"""Recurrent LMs: an Elman RNN, LSTM or GRU (`cell`) over the embeddings, its state projected to
next-token logits. `generate()` carries the state from step to step (`RecurrentState`, the
recurrent counterpart of a KV cache): each new token costs one step of the cell, not a re-read."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from .base import ClassicConfig, ClassicLM, next_token_loss

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentConfig(ClassicConfig):
    model_type = "hfkit_recurrent"
    cell: str = "lstm"

    def __init__(self, cell: str = "lstm", **kwargs):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        super().__init__(**kwargs)
        self.cell = cell


class RecurrentState:
    """The cell's state after the first `length` tokens (h, or (h, c) for the LSTM; batch in dim 1).
    `reorder_cache` is what beam search calls to follow the surviving beams."""

    def __init__(self, state, length: int):
        self.state, self.length = state, length

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        pick = lambda s: s.index_select(1, beam_idx.to(s.device))  # noqa: E731
        self.state = tuple(map(pick, self.state)) if isinstance(self.state, tuple) else pick(self.state)


@dataclass
class RecurrentLMOutput(CausalLMOutput):
    cache: RecurrentState | None = None  # generate() hands it back on the next step (transformers' "cache")


class RecurrentLM(ClassicLM):
    config_class = RecurrentConfig

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rnn = CELLS[config.cell](config.hidden_size, config.hidden_size, num_layers=config.num_layers,
                                      batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def logits(self, input_ids):
        out, _ = self.rnn(self.embed(input_ids))
        return self.head(out)

    def forward(self, input_ids, attention_mask=None, labels=None, cache: RecurrentState | None = None,
                use_cache: bool | None = None, **kwargs):
        if not use_cache and cache is None:
            return super().forward(input_ids, attention_mask=attention_mask, labels=labels)
        # input_ids: the tokens after the `cache.length` already read (all of them on the first step)
        out, state = self.rnn(self.embed(input_ids), cache.state if cache is not None else None)
        length = (cache.length if cache is not None else 0) + input_ids.shape[1]
        logits = self.head(out)
        return RecurrentLMOutput(loss=next_token_loss(logits, labels), logits=logits,
                                 cache=RecurrentState(state, length))

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, cache: RecurrentState | None = None,
                                      use_cache: bool | None = True, **kwargs):
        if not use_cache:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        if cache is not None:
            input_ids = input_ids[:, cache.length:]
        return {"input_ids": input_ids, "cache": cache, "use_cache": True}
