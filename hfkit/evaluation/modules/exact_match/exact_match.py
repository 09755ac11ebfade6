"""`evaluate` module: hfkit's exact_match (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class ExactMatch(_hfkit.HfkitMetric):
    NAME = "exact_match"
