"""`evaluate` module: hfkit's ter (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class Ter(_hfkit.HfkitMetric):
    NAME = "ter"
