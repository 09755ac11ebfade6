"""`evaluate` module: hfkit's chrf (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class Chrf(_hfkit.HfkitMetric):
    NAME = "chrf"
