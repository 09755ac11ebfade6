"""The classic language models as Hugging Face models (one file each): count-based n-gram (add-k,
Kneser-Ney), neural bigram, context
average, fixed-window feed-forward, RNN/LSTM/GRU and WaveNet. Importing this package registers their
configs with `AutoConfig` and their models with `AutoModelForCausalLM`, so a saved one loads with
`AutoModelForCausalLM.from_pretrained(dir)` once hfkit is imported."""
from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from .base import ClassicConfig, ClassicLM
from .context_average import ContextAverageConfig, ContextAverageLM
from .neural_bigram import BigramConfig, BigramLM
from .ngram import NGramConfig, NGramLM
from .recurrent import CELLS, RecurrentConfig, RecurrentLM
from .wavenet import WaveNetConfig, WaveNetLM
from .window_ffn import WindowFfnConfig, WindowFfnLM

MODELS = {NGramConfig: NGramLM, BigramConfig: BigramLM, ContextAverageConfig: ContextAverageLM, WindowFfnConfig: WindowFfnLM,
          RecurrentConfig: RecurrentLM, WaveNetConfig: WaveNetLM}

for _config, _model in MODELS.items():
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForCausalLM.register(_config, _model, exist_ok=True)

__all__ = ["CELLS", "MODELS", "ClassicConfig", "ClassicLM", "NGramConfig", "NGramLM", "BigramConfig", "BigramLM", "ContextAverageConfig",
           "ContextAverageLM", "WindowFfnConfig", "WindowFfnLM", "RecurrentConfig", "RecurrentLM", "WaveNetConfig",
           "WaveNetLM"]
