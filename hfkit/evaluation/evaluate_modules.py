"""hfkit's metrics as `evaluate` modules, loadable offline from the installed package:

    import evaluate
    from hfkit.evaluation.evaluate_modules import module_path
    bleu = evaluate.load(module_path("bleu"))          # also: chrf, ter, rouge, exact_match, token_f1, accuracy
    bleu.compute(predictions=["the cat sat"], references=[["the cat sat down"]])

Each module is a folder under `hfkit/evaluation/modules/` holding one script; the numbers are those of
`hfkit.evaluation.text_metrics` (sacrebleu, rouge-score, SQuAD matching), so `evaluate`-based code and
`hfkit eval` agree.
"""
from __future__ import annotations

from pathlib import Path

import datasets
import evaluate

from .text_metrics import corpus_metrics

MODULES = ("bleu", "chrf", "ter", "rouge", "exact_match", "token_f1", "accuracy")
_DIR = Path(__file__).resolve().parent / "modules"


def module_path(name: str) -> str:
    """The local path `evaluate.load` takes for one of hfkit's metric modules."""
    if name not in MODULES:
        raise ValueError(f"unknown hfkit metric module '{name}' (one of: {', '.join(MODULES)})")
    return str(_DIR / name)


class HfkitMetric(evaluate.Metric):
    """Base of the shipped modules: `NAME` selects the metric of `corpus_metrics`."""

    NAME = ""

    def _info(self):
        return evaluate.MetricInfo(
            description=f"hfkit {self.NAME}: {corpus_metrics.__doc__.splitlines()[0]}",
            citation="", inputs_description="predictions: list of str; references: list of str, or list of lists "
                                            "of str (several references per prediction, the same number for each)",
            features=[datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Sequence(datasets.Value("string"))}),
                      datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Value("string")})],
        )

    def _compute(self, predictions, references, **options):
        if references and not isinstance(references[0], str):  # per-prediction lists -> reference streams
            counts = {len(r) for r in references}
            if len(counts) != 1:
                raise ValueError("every prediction needs the same number of references")
            references = [[r[k] for r in references] for k in range(counts.pop())]
        return corpus_metrics(predictions, references, (self.NAME,), **options)
