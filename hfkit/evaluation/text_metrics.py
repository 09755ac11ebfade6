"""Text metrics, each computed by the library the papers use, plus SQuAD-style answer matching.

- BLEU, chrF, TER: `sacrebleu` (corpus level; same numbers and signature string as its CLI).
- ROUGE-1/2/L/Lsum: Google's `rouge-score` (F-measure averaged over examples, x100).
- accuracy (exact string after stripping), exact match and token F1 with SQuAD's answer
  normalisation (lower case, no punctuation or articles, single spaces; best over references), and
  a per-class precision/recall/F1 report.

Scores are on a 0-100 scale throughout, so that runs can be charted side by side.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..data.answers import normalize_answer  # noqa: F401 (one rule, shared with prompting)
from ..errors import HfkitError

SACREBLEU = ("bleu", "chrf", "ter")
ROUGE = ("rouge",)
MATCHING = ("accuracy", "exact_match", "token_f1")
TEXT_METRICS = SACREBLEU + ROUGE + MATCHING
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _ref_streams(predictions: Sequence[str], references) -> list[list[str]]:
    """References as sacrebleu wants them: a list of streams, each one reference per prediction."""
    if references and isinstance(references[0], str):
        references = [references]
    streams = [list(s) for s in references]
    if not streams or not streams[0]:
        raise HfkitError("no references to score against")
    for k, s in enumerate(streams):
        if len(s) != len(predictions):
            which = "references" if len(streams) == 1 else f"references (set {k + 1})"
            raise HfkitError(f"{len(predictions)} predictions but {len(s)} {which}")
    return streams


def sacrebleu_metric(name: str, **options):
    from sacrebleu.metrics import BLEU, CHRF, TER

    try:
        return {"bleu": BLEU, "chrf": CHRF, "ter": TER}[name](**options)
    except KeyError:
        raise HfkitError(f"unknown sacrebleu metric '{name}' (bleu, chrf, ter)") from None


def rouge_scores(predictions: Sequence[str], references, use_stemmer: bool = False) -> dict:
    """Mean ROUGE F-measures (x100) with `rouge-score`; with several references the best one counts.
    ROUGE-Lsum treats newlines as sentence boundaries (as rouge-score does)."""
    from rouge_score import rouge_scorer

    streams = _ref_streams(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for i, pred in enumerate(predictions):
        refs = [s[i] for s in streams]
        scores = scorer.score_multi(refs, pred) if len(refs) > 1 else scorer.score(refs[0], pred)
        for k in ROUGE_TYPES:
            sums[k] += scores[k].fmeasure
    n = len(predictions)
    return {k: 100 * v / n for k, v in sums.items()}


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token-overlap F1 between normalised answers (1.0 when both are empty)."""
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not p or not r:
        return float(p == r)
    common = Counter(p) & Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def gold_answers(refs: Sequence[str]) -> list[str]:
    """SQuAD v2.0's rule for an example's references: the empty ones are dropped when any other is
    left; only when all are empty is the answer "no answer" ("")."""
    kept = [r for r in refs if normalize_answer(r)]
    return kept or [""]


def matching_scores(predictions: Sequence[str], references) -> dict:
    """accuracy (stripped strings equal), exact_match and token_f1 (SQuAD), x100, best over the
    references as SQuAD v2.0 counts them (`gold_answers`)."""
    streams = _ref_streams(predictions, references)
    acc = em = f1 = 0.0
    for i, pred in enumerate(predictions):
        refs = gold_answers([s[i] for s in streams])
        acc += any(pred.strip() == r.strip() for r in refs)
        em += any(normalize_answer(pred) == normalize_answer(r) for r in refs)
        f1 += max(token_f1(pred, r) for r in refs)
    n = len(predictions)
    return {"accuracy": 100 * acc / n, "exact_match": 100 * em / n, "token_f1": 100 * f1 / n}


def classification_report(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Per-class precision/recall/F1/support (x100), macro averages and accuracy; labels compared
    after stripping. Predictions outside the reference labels count as errors for their class."""
    if len(predictions) != len(references):
        raise HfkitError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise HfkitError("no references to score against")
    preds = [p.strip() for p in predictions]
    refs = [r.strip() for r in references]
    per_class = {}
    for label in sorted(set(refs)):
        tp = sum(p == label and r == label for p, r in zip(preds, refs))
        fp = sum(p == label and r != label for p, r in zip(preds, refs))
        fn = sum(p != label and r == label for p, r in zip(preds, refs))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[label] = {"precision": 100 * prec, "recall": 100 * rec, "f1": 100 * f1, "support": tp + fn}
    k = len(per_class)
    return {
        "accuracy": 100 * sum(p == r for p, r in zip(preds, refs)) / len(refs),
        "macro_precision": sum(c["precision"] for c in per_class.values()) / k,
        "macro_recall": sum(c["recall"] for c in per_class.values()) / k,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / k,
        "per_class": per_class,
    }


def corpus_metrics(predictions: Sequence[str], references, metrics: Sequence[str] = ("bleu", "chrf"),
                   rouge_stemmer: bool = False, **sacrebleu_options) -> dict:
    """Score predictions against references (one list, or several lists for several references per
    prediction). Returns {metric: score} plus `<metric>_signature` for the sacrebleu metrics."""
    streams = _ref_streams(predictions, references)
    out: dict = {}
    for name in metrics:
        if name in SACREBLEU:
            opts = {k: v for k, v in sacrebleu_options.items() if k in _OPTIONS[name]}
            metric = sacrebleu_metric(name, **opts)
            out[name] = metric.corpus_score(list(predictions), streams).score
            out[f"{name}_signature"] = str(metric.get_signature())
        elif name == "rouge":
            out.update(rouge_scores(predictions, streams, rouge_stemmer))
        elif name in MATCHING:
            out[name] = matching_scores(predictions, streams)[name]
        else:
            raise HfkitError(f"unknown metric '{name}' (one of: {', '.join(TEXT_METRICS)})")
    return out


_OPTIONS = {"bleu": {"tokenize", "lowercase"}, "chrf": {"lowercase"}, "ter": {"case_sensitive"}}
