"""Causal-LM pretraining (`task: clm`): the corpus is packed into blocks and every token is a target.

The shapes are those of transformers' `run_clm.py`: tokenize -> weighted mixture -> pack -> Trainer,
with exact packing (hfkit.data.packing) and perplexity logged next to every evaluation loss.
`PackedTextTask` is what every pretraining objective on running text shares (clm, mlm, t5_span,
bart_denoise): read the corpus, pack blocks; the collator makes inputs and targets.
"""
from __future__ import annotations

from ..data.corpus import Corpus, build_corpus
from ..data.packing import PackedData, pack_corpus, packed_lm_collator
from ..data.streaming import StreamingCorpus, build_streaming_corpus, stream_corpus, training_texts
from ..models import CLASSIC
from . import Prepared, Task, register


def packing_overview(data: PackedData) -> list[tuple[str, object]]:
    tp = data.stats["train_packing"]
    if tp.get("streaming"):
        return [("train blocks", f"streamed x {tp['block_size']} (shuffle buffer "
                                 f"{data.stats['shuffle_buffer_size']} documents)"),
                ("validation blocks", len(data.validation) if data.validation is not None else 0)]
    return [("train tokens", tp["tokens"]), ("train blocks", f"{tp['blocks']} x {tp['block_size']}"),
            ("dropped (final partial block)", tp["dropped_tokens"]),
            ("validation blocks", len(data.validation) if data.validation is not None else 0)]


def fixed_noise(validation, collator, seed: int):
    """Apply a noising collator (masks, spans, permutations) to every validation example once, with a
    fixed seed, so that every evaluation (before, during, after training) scores the same inputs. The
    collators pass examples that already carry labels through unchanged."""
    import torch

    def noise(example: dict) -> dict:
        return {k: v[0].tolist() for k, v in collator([example]).items()}

    with torch.random.fork_rng():  # the training run's own random stream is left as it was
        torch.manual_seed(seed)
        return validation.with_format(None).map(noise, desc="noise validation (fixed)")


class PackedTextTask(Task):
    """A task that trains on blocks of running text cut from the corpus; its collator makes the targets."""
    noisy = False  # the collator draws noise: validation gets it once, fixed (see fixed_noise)
    streams = True  # sources may stream (hfkit.data.streaming): blocks packed on the fly

    def collator(self, recipe, tokenizer):
        raise NotImplementedError

    def block_length(self, recipe) -> int:
        """Tokens per packed block (an objective may need more than the model sees, or fewer)."""
        return recipe.data.block_size

    def load(self, recipe, seed: int) -> Corpus | StreamingCorpus:
        if recipe.data.streaming:
            return build_streaming_corpus(recipe.data, seed)
        return build_corpus(recipe.data, seed)

    def tokenizer_texts(self, corpus: Corpus | StreamingCorpus):
        if isinstance(corpus, StreamingCorpus):
            return training_texts(corpus)
        return (t for ds in corpus.train.values() for t in ds["text"])

    def examples(self, recipe, tokenizer, corpus: Corpus | StreamingCorpus, seed: int) -> Prepared:
        if isinstance(corpus, StreamingCorpus):
            data = stream_corpus(recipe.data, tokenizer, corpus, seed, self.block_length(recipe))
        else:
            data = pack_corpus(recipe.data, tokenizer, corpus, seed, self.block_length(recipe))
        return Prepared(data.train, data.validation, self.collator(recipe, tokenizer), data.stats,
                        packing_overview(data))

    def prepare(self, recipe, tokenizer, model, corpus: Corpus, seed: int) -> Prepared:
        prepared = self.examples(recipe, tokenizer, corpus, seed)
        if self.noisy and prepared.validation is not None:
            prepared.validation = fixed_noise(prepared.validation, prepared.collator, seed)
        return prepared


@register
class CausalLM(PackedTextTask):
    name = "clm"
    architectures = ("gpt2", "llama", *CLASSIC)  # the classic LMs (hfkit.models.classic) train on the same blocks

    def collator(self, recipe, tokenizer):
        return packed_lm_collator  # labels = inputs; the model shifts them

    def examples(self, recipe, tokenizer, corpus: Corpus, seed: int) -> Prepared:
        prepared = super().examples(recipe, tokenizer, corpus, seed)
        if prepared.validation is not None:
            prepared.chars_per_token = chars_per_scored_token(prepared.validation["input_ids"], tokenizer)
            prepared.stats["validation_chars_per_token"] = round(prepared.chars_per_token, 4)
        return prepared


def chars_per_scored_token(blocks, tokenizer) -> float:
    """Characters of text per scored token of the validation blocks (every token of a block but its
    first is a target): loss / ln 2 / this = bits per character, which does not depend on the tokenizer."""
    chars = sum(len(tokenizer.decode(list(b[1:]), skip_special_tokens=True)) for b in blocks)
    tokens = sum(len(b) - 1 for b in blocks)
    return chars / max(tokens, 1)
