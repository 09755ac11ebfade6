"""Recurrent LMs: an Elman RNN, LSTM or GRU (`cell`) over the embeddings, its state projected to
next-token logits."""
from __future__ import annotations

from torch import nn

from .base import ClassicConfig, ClassicLM

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentConfig(ClassicConfig):
    model_type = "hfkit_recurrent"
    cell: str = "lstm"

    def __init__(self, cell: str = "lstm", **kwargs):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        super().__init__(**kwargs)
        self.cell = cell


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
