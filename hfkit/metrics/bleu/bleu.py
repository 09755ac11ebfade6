"""`evaluate` module: hfkit's bleu (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class Bleu(_hfkit.HfkitMetric):
    NAME = "bleu"
