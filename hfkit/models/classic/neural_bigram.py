"""Neural bigram LM: the next token depends on the current one only; the embedding matrix (V x V) is
the table of next-token logits."""
from __future__ import annotations

from torch import nn

from .base import ClassicConfig, ClassicLM


class BigramConfig(ClassicConfig):
    model_type = "hfkit_bigram"


class BigramLM(ClassicLM):
    config_class = BigramConfig

    def __init__(self, config: BigramConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.vocab_size)  # row t: the logits after token t
        self.post_init()

    def logits(self, input_ids):
        return self.embed(input_ids)
