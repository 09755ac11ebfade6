"""Causal-LM pretraining: tokenize -> weighted mixture -> pack into blocks -> `Trainer`.

The shapes are those of transformers' `run_clm.py`, with exact packing and perplexity logging.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from datasets import Dataset
from transformers import Trainer

from ..data.corpus import Corpus, sample_mixture
from ..data.packing import pack_sequences, tokenize_documents
from ..errors import HfkitError
from ..recipe import Recipe


class CausalLMTrainer(Trainer):
    """`Trainer` that also reports perplexity = exp(eval loss) wherever it logs an eval loss."""

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for key in [k for k in logs if k.endswith("eval_loss")]:
            logs[key[: -len("loss")] + "perplexity"] = math.exp(min(logs[key], 50.0))
        super().log(logs, *args, **kwargs)


@dataclass
class ClmData:
    train: Dataset
    validation: Dataset | None
    stats: dict


def prepare_clm_data(recipe: Recipe, tokenizer, corpus: Corpus, seed: int) -> ClmData:
    """Tokenize each training source, draw the weighted mixture, and pack train and validation."""
    cfg = recipe.data
    tokenized = {k: tokenize_documents(ds, tokenizer, cfg.num_proc) for k, ds in corpus.train.items()}
    mixture, mix_report = sample_mixture(tokenized, corpus.sources, cfg.mixture_tokens, seed)
    train, train_pack = pack_sequences(mixture, cfg.block_size)
    if train_pack.blocks == 0:
        raise HfkitError(
            f"data: the training mixture has {train_pack.tokens} tokens, fewer than one block "
            f"(data.block_size={cfg.block_size}); add data or lower block_size"
        )
    validation, val_stats = None, None
    if len(corpus.validation):
        val_tok = tokenize_documents(corpus.validation, tokenizer, cfg.num_proc)
        validation, val_pack = pack_sequences(val_tok, cfg.block_size)
        val_stats = val_pack.as_dict()
        if val_pack.blocks == 0:
            validation = None  # too little held-out text for one block: no validation
    stats = {**corpus.stats, "mixture": mix_report, "train_packing": train_pack.as_dict(),
             "validation_packing": val_stats}
    return ClmData(train.with_format("numpy"), validation.with_format("numpy") if validation else None, stats)
