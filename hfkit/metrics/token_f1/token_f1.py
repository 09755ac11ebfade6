"""`evaluate` module: hfkit's token_f1 (see hfkit.evaluation.hf_metrics)."""
import hfkit.evaluation.hf_metrics as _hfkit


class TokenF1(_hfkit.HfkitMetric):
    NAME = "token_f1"
