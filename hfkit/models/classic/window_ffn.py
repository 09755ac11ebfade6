"""Fixed-window feed-forward LM (Bengio et al., 2003): the embeddings of the last `context_size`
tokens, concatenated, through a tanh hidden layer to next-token logits (missing context at the start
of a sequence is zero)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ClassicConfig, ClassicLM


class WindowFfnConfig(ClassicConfig):
    model_type = "hfkit_window_ffn"


class WindowFfnLM(ClassicLM):
    config_class = WindowFfnConfig

    def __init__(self, config: WindowFfnConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.hidden = nn.Linear(config.context_size * config.hidden_size, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def logits(self, input_ids):
        k = self.config.context_size
        x = F.pad(self.embed(input_ids), (0, 0, k - 1, 0))  # k-1 zero vectors before the first token
        windows = torch.cat([x[:, i:i + input_ids.shape[1]] for i in range(k)], dim=-1)  # tokens t-k+1..t
        return self.head(self.drop(torch.tanh(self.hidden(windows))))
