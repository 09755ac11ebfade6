"""`evaluate` module: hfkit's rouge (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class Rouge(_hfkit.HfkitMetric):
    NAME = "rouge"
