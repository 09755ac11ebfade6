"""hfkit: train, adapt and evaluate language models on the Hugging Face stack by running recipes."""
from .errors import HfkitError

__version__ = "0.1.0"
__all__ = ["HfkitError", "train", "prepare_data", "perplexity", "conditional_perplexity", "generate", "train_tokenizer",
           "corpus_metrics", "classification_report", "evaluate_icl", "load_task", "IclConfig", "compare"]


def __getattr__(name):  # keep `import hfkit` light: torch/transformers load on first use
    if name in ("train", "prepare_data"):
        from . import runner
        return getattr(runner, name)
    if name in ("perplexity", "conditional_perplexity"):
        from .evaluation import perplexity as m
        return getattr(m, name)
    if name == "generate":
        from .evaluation.generation import generate
        return generate
    if name in ("corpus_metrics", "classification_report"):
        from .evaluation import metrics as m
        return getattr(m, name)
    if name in ("evaluate_icl", "load_task", "IclConfig"):
        from .evaluation import icl as m
        return getattr(m, name)
    if name == "compare":
        from .evaluation.commands import compare
        return compare
    if name == "train_tokenizer":
        from .data.tokenizer import train_tokenizer
        return train_tokenizer
    raise AttributeError(name)
