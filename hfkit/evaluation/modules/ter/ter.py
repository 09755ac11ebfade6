"""`evaluate` module: hfkit's ter (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class Ter(_hfkit.HfkitMetric):
    NAME = "ter"
