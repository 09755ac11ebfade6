"""WaveNet-style LM (van den Oord et al., 2016): a stack of dilated causal convolutions (kernel 2,
dilations 1, 2, 4, ...) with gated tanh/sigmoid units and residual connections; the receptive field
is 2^num_layers tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ClassicConfig, ClassicLM


class WaveNetConfig(ClassicConfig):
    model_type = "hfkit_wavenet"


class GatedCausalConv(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size=2, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x):  # (batch, channels, time)
        h = self.conv(F.pad(x, (self.dilation, 0)))  # left padding only: position t sees t - dilation and t
        a, b = h.chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b))


class WaveNetLM(ClassicLM):
    config_class = WaveNetConfig

    def __init__(self, config: WaveNetConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GatedCausalConv(config.hidden_size, 2 ** i) for i in range(config.num_layers))
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def logits(self, input_ids):
        x = self.embed(input_ids).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return self.head(x.transpose(1, 2))
