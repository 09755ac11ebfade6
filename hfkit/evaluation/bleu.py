"""Corpus BLEU and chrF through sacrebleu: the same numbers and signature as the sacrebleu CLI."""
from __future__ import annotations

from ..errors import HfkitError


def corpus_metrics(predictions: list[str], references: list[str], metrics: tuple[str, ...] = ("bleu", "chrf")) -> dict:
    """Score predictions against one reference each; returns {metric: score, metric_signature: str}."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(predictions) != len(references):
        raise HfkitError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise HfkitError("no references to score against")
    out = {}
    for name in metrics:
        metric = {"bleu": BLEU, "chrf": CHRF}[name]()
        out[name] = metric.corpus_score(predictions, [references]).score
        out[f"{name}_signature"] = str(metric.get_signature())
    return out
