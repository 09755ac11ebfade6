"""What every classic LM shares: a `PreTrainedModel` + `GenerationMixin` whose forward maps token ids to
next-token logits (and the shifted cross-entropy loss), so Trainer, perplexity, `generate()`, saving
and `AutoModelForCausalLM.from_pretrained` work on it unchanged. No KV cache here: `generate()`
re-reads the sequence each step (these models are small); the recurrent LMs carry their state instead
(recurrent.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Cross-entropy of the next token at every position, as every causal LM in transformers."""
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


class ClassicConfig(PretrainedConfig):
    """Sizes shared by the classic models (each model reads the ones it uses)."""
    model_type = "hfkit_classic"
    # class-level defaults too: transformers 5 may leave a field equal to its default off the instance
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 1
    context_size: int = 4
    dropout: float = 0.0

    def __init__(self, vocab_size: int = 1024, hidden_size: int = 128, num_layers: int = 1, context_size: int = 4,
                 dropout: float = 0.0, **kwargs):
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.context_size = context_size  # the fixed window of the feed-forward LM
        self.dropout = dropout


class ClassicLM(PreTrainedModel, GenerationMixin):
    """Subclasses implement `logits(input_ids) -> (batch, time, vocab)`; position t sees tokens <= t."""
    config_class = ClassicConfig
    base_model_prefix = "classic"
    main_input_name = "input_ids"

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # no attention: generate() must not build a KV cache for it

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_input_embeddings(self):
        return self.embed  # every neural classic LM names its token embedding `embed`

    def forward(self, input_ids: torch.Tensor, attention_mask=None, labels: torch.Tensor | None = None, **kwargs):
        logits = self.logits(input_ids)
        return CausalLMOutput(loss=next_token_loss(logits, labels), logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _init_weights(self, module):
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
            torch.nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.02)
