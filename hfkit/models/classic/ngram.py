"""Count-based n-gram LM with add-k or interpolated Kneser-Ney smoothing, as a Hugging Face model.

`fit(sequences)` counts every n-gram (no gradient steps); the counts are kept as the model's state
(`ngrams` (N, n) and `ngram_counts` (N,) buffers, so `save_pretrained`/`from_pretrained` carry them)
and the lower-order and continuation counts are rebuilt from them. `forward` returns the log of the
smoothed next-token distribution at every position as logits (softmax of a log-distribution is the
distribution), so perplexity, the loss and `generate()` work as for any causal LM.

Interpolated Kneser-Ney (Chen & Goodman, 1998) with one discount D: at the highest order
P(w|h) = max(c(hw) - D, 0)/c(h) + D N1+(h.)/c(h) P(w|h'), at lower orders the same with continuation
counts N1+(.hw) in place of counts, and the unigram level interpolated with the uniform distribution,
so every distribution sums to 1 and no token has probability 0. A context never seen backs off whole.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .base import ClassicConfig, ClassicLM


class NGramConfig(ClassicConfig):
    model_type = "hfkit_ngram"
    order: int = 3
    smoothing: str = "kneser_ney"
    add_k: float = 1.0
    discount: float = 0.75
    num_ngrams: int = 0

    def __init__(self, order: int = 3, smoothing: str = "kneser_ney", add_k: float = 1.0, discount: float = 0.75,
                 num_ngrams: int = 0, **kwargs):
        if smoothing not in ("kneser_ney", "add_k"):
            raise ValueError(f"smoothing must be kneser_ney or add_k, got {smoothing!r}")
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        super().__init__(**kwargs)
        self.order, self.smoothing, self.add_k, self.discount = order, smoothing, add_k, discount
        self.num_ngrams = num_ngrams  # how many distinct n-grams the fitted model holds (sizes its buffers)


class NGramLM(ClassicLM):
    config_class = NGramConfig
    counted = True  # fitted by counting (`fit_counts`), not by gradient steps: hfkit's CountingTrainer
    def __init__(self, config: NGramConfig):
        super().__init__(config)
        self.register_buffer("ngrams", torch.zeros((config.num_ngrams, config.order), dtype=torch.long))
        self.register_buffer("ngram_counts", torch.zeros(config.num_ngrams, dtype=torch.long))
        self._tables = None
        self.post_init()

    def get_input_embeddings(self):
        return None  # counts only: no embedding

    @property
    def dtype(self) -> torch.dtype:  # no parameters: counts only
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.ngram_counts.device

    # --- counting
    def fit_counts(self, sequences) -> "NGramLM":
        """Count the n-grams of token-id sequences (each padded on the left by nothing: a sequence's
        first tokens are counted with their shorter contexts at the lower orders only)."""
        n = self.config.order
        counts: dict[tuple, int] = defaultdict(int)
        for seq in sequences:
            seq = list(seq)
            for i in range(len(seq) - n + 1):
                counts[tuple(seq[i:i + n])] += 1
        keys = sorted(counts)
        self.ngrams = torch.tensor(keys, dtype=torch.long).reshape(-1, n)
        self.ngram_counts = torch.tensor([counts[k] for k in keys], dtype=torch.long)
        self.config.num_ngrams = len(keys)
        self._tables = None
        return self

    def _build(self) -> list[dict]:
        """tables[m][h] = (next ids, counts) for contexts h of length m-1: raw counts at the highest
        order (and everywhere for add-k), continuation counts below it for Kneser-Ney."""
        n, kn = self.config.order, self.config.smoothing == "kneser_ney"
        grams = [tuple(g) for g in self.ngrams.tolist()]
        cnt = self.ngram_counts.tolist()
        per_order: list[dict[tuple, float]] = [defaultdict(float) for _ in range(n + 1)]
        for g, c in zip(grams, cnt):
            per_order[n][g] += c
        for m in range(n - 1, 0, -1):  # lower orders: continuation counts (KN) or summed counts (add-k)
            for g, c in per_order[m + 1].items():
                per_order[m][g[1:]] += 1 if kn else c
        tables = [dict() for _ in range(n + 1)]
        for m in range(1, n + 1):
            by_context: dict[tuple, list] = defaultdict(list)
            for g, c in per_order[m].items():
                by_context[g[:-1]].append((g[-1], c))
            tables[m] = {h: (np.array([w for w, _ in v]), np.array([c for _, c in v], dtype=np.float64))
                         for h, v in by_context.items()}
        return tables

    def distribution(self, context: tuple) -> np.ndarray:
        """P(. | context) over the vocabulary (the last order-1 tokens of `context` are used)."""
        if self._tables is None:
            self._tables = self._build()
        n, V = self.config.order, self.config.vocab_size
        context = tuple(context)[-(n - 1):] if n > 1 else ()
        if self.config.smoothing == "add_k":  # the longest context seen (if any) with add-k
            k = self.config.add_k
            m = len(context) + 1
            h = context
            nexts, cs = self._tables[m].get(h, (np.array([], dtype=int), np.array([])))
            p = np.full(V, k)
            p[nexts] += cs
            return p / p.sum()
        D = self.config.discount
        p = np.full(V, 1.0 / V)
        for m in range(1, len(context) + 2):
            h = context[len(context) - (m - 1):] if m > 1 else ()
            if h not in self._tables[m]:
                continue  # never seen: the lower order stands
            nexts, cs = self._tables[m][h]
            total = cs.sum()
            lower = p * (D * len(nexts) / total)
            lower[nexts] += np.maximum(cs - D, 0) / total
            p = lower
        return p

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = self.config.order
        rows = []
        for seq in input_ids.tolist():
            rows.append([np.log(self.distribution(tuple(seq[max(0, t - n + 2):t + 1]))) for t in range(len(seq))])
        return torch.tensor(np.array(rows), dtype=torch.float32, device=input_ids.device)
