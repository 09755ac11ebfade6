"""`evaluate` module: hfkit's accuracy (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class Accuracy(_hfkit.HfkitMetric):
    NAME = "accuracy"
