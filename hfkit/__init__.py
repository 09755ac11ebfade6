"""hfkit: train, adapt and evaluate language models on the Hugging Face stack by running recipes."""
from .errors import HfkitError

from .version import __version__  # noqa: E402

# public name -> the module that defines it; imported on first use, so `import hfkit` stays light
_API = {
    "train": "sweep", "prepare_data": "job",
    "load_recipe": "recipe",
    "perplexity": "inference.scoring", "conditional_perplexity": "inference.scoring",
    "generate": "inference.generation",
    "corpus_metrics": "evaluation.text_metrics", "classification_report": "evaluation.text_metrics",
    "evaluate_icl": "evaluation.icl", "load_task": "evaluation.icl", "IclConfig": "evaluation.icl",
    "compare": "evaluation.compare",
    "train_tokenizer": "data.tokenizer",
}
__all__ = ["HfkitError", *_API]

# the classic LMs (n-gram, RNN/LSTM/GRU, WaveNet, ...) registered with AutoConfig and
# AutoModelForCausalLM, so a saved one loads with `AutoModelForCausalLM.from_pretrained(dir)` after `import hfkit`
from .models import classic as _classic  # noqa: E402,F401


def __getattr__(name):
    if name not in _API:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
