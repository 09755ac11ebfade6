"""Masked-LM training (`task: mlm`) of encoders: BERT-style masking of packed blocks.

Blocks are packed as for `clm` (documents joined by the separator token); transformers'
`DataCollatorForLanguageModeling` selects `mlm_probability` of the tokens, of which 80% become
[MASK], 10% a random token and 10% stay, and only those positions carry labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import HfkitError
from . import register
from .clm import PackedTextTask


@dataclass
class MlmConfig:
    """Recipe section `mlm`."""
    mlm_probability: float = 0.15  # share of tokens selected (80% [MASK], 10% random, 10% kept); higher: harder

    def validate(self, prefix: str) -> None:
        if not 0 < self.mlm_probability < 1:
            raise HfkitError(f"recipe key '{prefix}.mlm_probability' must be in (0, 1), got {self.mlm_probability}")


@register
class MaskedLM(PackedTextTask):
    name = "mlm"
    section = "mlm"
    config_class = MlmConfig
    auto_class = "AutoModelForMaskedLM"
    peft_task_type = None  # peft has no masked-LM task type: a plain PeftModel passes everything through
    pipeline_tag = "fill-mask"
    architectures = ("bert",)
    causal = False

    def check_tokenizer(self, tokenizer, where: str) -> None:
        if tokenizer.mask_token is None:
            raise HfkitError(f"tokenizer '{where}' has no mask_token, needed for masked-LM training")
        if tokenizer.eos_token is None and tokenizer.sep_token is None:
            raise HfkitError(f"tokenizer '{where}' has neither a sep_token nor an eos_token to separate documents")

    def collator(self, recipe, tokenizer):
        from transformers import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=recipe.task_config.mlm_probability)
