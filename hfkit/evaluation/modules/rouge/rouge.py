"""`evaluate` module: hfkit's rouge (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class Rouge(_hfkit.HfkitMetric):
    NAME = "rouge"
