"""`evaluate` module: hfkit's chrf (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class Chrf(_hfkit.HfkitMetric):
    NAME = "chrf"
