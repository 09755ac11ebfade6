"""`evaluate` module: hfkit's accuracy (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class Accuracy(_hfkit.HfkitMetric):
    NAME = "accuracy"
