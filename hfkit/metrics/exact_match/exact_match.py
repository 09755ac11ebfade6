"""`evaluate` module: hfkit's exact_match (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class ExactMatch(_hfkit.HfkitMetric):
    NAME = "exact_match"
