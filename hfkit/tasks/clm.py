"""Causal-LM pretraining (`task: clm`): the corpus is packed into blocks and every token is a target.

The shapes are those of transformers' `run_clm.py`: tokenize -> weighted mixture -> pack -> Trainer,
with exact packing (hfkit.data.packing) and perplexity logged next to every evaluation loss.
"""
from __future__ import annotations

from ..data.corpus import Corpus, build_corpus
from ..data.packing import PackedData, pack_corpus, packed_lm_collator
from . import Prepared, Task, register


def packing_overview(data: PackedData) -> list[tuple[str, object]]:
    tp = data.stats["train_packing"]
    return [("train tokens", tp["tokens"]), ("train blocks", f"{tp['blocks']} x {tp['block_size']}"),
            ("dropped (final partial block)", tp["dropped_tokens"]),
            ("validation blocks", len(data.validation) if data.validation is not None else 0)]


class PackedTextTask(Task):
    """A task that trains on blocks of running text cut from the corpus; its collator makes the targets."""

    def collator(self, recipe, tokenizer):
        raise NotImplementedError

    def load(self, recipe, seed: int) -> Corpus:
        return build_corpus(recipe.data, seed)

    def tokenizer_texts(self, corpus: Corpus):
        return (t for ds in corpus.train.values() for t in ds["text"])

    def prepare(self, recipe, tokenizer, model, corpus: Corpus, seed: int) -> Prepared:
        data = pack_corpus(recipe.data, tokenizer, corpus, seed)
        return Prepared(data.train, data.validation, self.collator(recipe, tokenizer), data.stats,
                        packing_overview(data))


@register
class CausalLM(PackedTextTask):
    name = "clm"

    def collator(self, recipe, tokenizer):
        return packed_lm_collator  # labels = inputs; the model shifts them
