"""`evaluate` module: hfkit's token_f1 (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class TokenF1(_hfkit.HfkitMetric):
    NAME = "token_f1"
