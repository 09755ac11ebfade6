"""Context-average LM: the mean of the embeddings of every token so far (a bag of the prefix),
projected to next-token logits."""
from __future__ import annotations

import torch
from torch import nn

from .base import ClassicConfig, ClassicLM


class ContextAverageConfig(ClassicConfig):
    model_type = "hfkit_context_average"


class ContextAverageLM(ClassicLM):
    config_class = ContextAverageConfig

    def __init__(self, config: ContextAverageConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def logits(self, input_ids):
        x = self.embed(input_ids)
        counts = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[None, :, None]
        return self.head(x.cumsum(1) / counts)  # position t: mean over tokens 0..t
