"""`evaluate` module: hfkit's bleu (see hfkit.evaluation.evaluate_modules)."""
import hfkit.evaluation.evaluate_modules as _hfkit


class Bleu(_hfkit.HfkitMetric):
    NAME = "bleu"
