"""Masked-LM training (`task: mlm`) of encoders: BERT's objectives.

Masking is transformers' `DataCollatorForLanguageModeling`: `mlm_probability` of the tokens are
selected (never special tokens or padding), of which `mask_replace_prob` become [MASK],
`random_replace_prob` a random token and the rest stay; only selected positions carry labels.
`whole_word_mask` selects words and masks all their sub-tokens. With `next_sentence_prediction`
the data are sentence pairs (hfkit.data.sentence_pairs: half true next, half from another document,
`token_type_ids` 0/1) and the model is `AutoModelForPreTraining` (BertForPreTraining: MLM + NSP
heads); without it (RoBERTa style) blocks of the corpus are packed as for `clm`. Evaluation reports
masked-token accuracy, MLM perplexity and NSP accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from ..data.corpus import Corpus
from ..errors import HfkitError
from . import Prepared, register
from .clm import PackedTextTask


@dataclass
class MlmConfig:
    """Recipe section `mlm` (the masking knobs carry DataCollatorForLanguageModeling's names)."""
    mlm_probability: float = 0.15  # share of tokens selected; higher: more signal per block, harder task
    mask_replace_prob: float = 0.8  # of the selected: replaced by [MASK]
    random_replace_prob: float = 0.1  # of the selected: replaced by a random token (the rest stay)
    whole_word_mask: bool = False  # select words, mask every sub-token of a selected word
    next_sentence_prediction: bool = False  # BERT's second objective; false: MLM only (RoBERTa style)
    short_seq_prob: float = 0.1  # NSP: share of pairs made shorter than the block (as BERT does)

    def validate(self, prefix: str) -> None:
        for key in ("mlm_probability", "mask_replace_prob", "random_replace_prob", "short_seq_prob"):
            v = getattr(self, key)
            if not 0 <= v <= 1 or (key == "mlm_probability" and not 0 < v < 1):
                raise HfkitError(f"recipe key '{prefix}.{key}' must be in (0, 1), got {v}")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise HfkitError(f"recipe keys '{prefix}.mask_replace_prob' + '{prefix}.random_replace_prob' must "
                             f"not exceed 1, got {self.mask_replace_prob + self.random_replace_prob}")


def word_start_table(tokenizer) -> np.ndarray:
    """For every token id: does it start a word? (WordPiece: not '##...'; byte-level BPE: 'Ġ...';
    SentencePiece-style: '▁...'; special tokens and character/word vocabularies: always.)"""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if any(t.startswith("##") for t in tokens):
        starts = [not t.startswith("##") for t in tokens]
    elif any(t.startswith("Ġ") for t in tokens):
        starts = [t.startswith(("Ġ", "Ċ")) for t in tokens]
    elif any(t.startswith("▁") for t in tokens):
        starts = [t.startswith("▁") for t in tokens]
    else:
        starts = [True] * len(tokens)
    table = np.array(starts, dtype=bool)
    table[tokenizer.all_special_ids] = True
    return table


class MaskingCollator(DataCollatorForLanguageModeling):
    """transformers' MLM collator; for whole-word masking it works out word boundaries from the token
    ids (transformers wants character offsets, which packed blocks do not carry)."""

    def __init__(self, *args, word_starts: np.ndarray | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.word_starts = word_starts

    def __call__(self, features, return_tensors=None):
        if isinstance(features[0], dict) and "labels" in features[0]:  # masked already (validation: fixed masks)
            labels = [list(f["labels"]) for f in features]
            batch = self.tokenizer.pad([{k: v for k, v in f.items() if k != "labels"} for f in features],
                                       return_tensors="pt")
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
            return batch
        return super().__call__(features, return_tensors)

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        if self.whole_word_mask and offset_mapping is None:
            new_word = torch.as_tensor(self.word_starts)[inputs]
            # offsets with a gap before every word start and none inside a word: what transformers reads
            ends = torch.cumsum(1 + new_word.long(), dim=1)
            offset_mapping = torch.stack([ends - 1, ends], dim=-1)
        return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)


def mlm_metrics():
    """(preprocess_logits_for_metrics, compute_metrics): masked-token accuracy and perplexity over the
    selected positions, and NSP accuracy when the model has that head."""
    import torch.nn.functional as F

    def preprocess(logits, labels):
        mlm_logits = logits[0] if isinstance(logits, tuple) else logits
        mlm_labels = labels[0] if isinstance(labels, tuple) else labels
        nll = F.cross_entropy(mlm_logits.float().transpose(1, 2), mlm_labels.clamp(min=0), reduction="none")
        correct = (mlm_logits.argmax(-1) == mlm_labels).float()
        out = torch.stack([nll, correct], dim=-1)
        if isinstance(logits, tuple) and len(logits) > 1 and logits[1].dim() == 2:  # NSP head
            return out, logits[1].argmax(-1)
        return out

    def compute(pred) -> dict:
        preds = pred.predictions
        labels = pred.label_ids
        mlm, nsp = (preds if isinstance(preds, tuple) else (preds, None))
        mlm_labels = labels[0] if isinstance(labels, tuple) else labels
        selected = mlm_labels != -100
        out = {"masked_accuracy": float(100 * mlm[..., 1][selected].mean()),
               "mlm_perplexity": float(np.exp(mlm[..., 0][selected].mean())), "masked_tokens": int(selected.sum())}
        if nsp is not None and isinstance(labels, tuple):
            out["nsp_accuracy"] = float(100 * (nsp == labels[1]).mean())
        return out

    return preprocess, compute


@register
class MaskedLM(PackedTextTask):
    name = "mlm"
    section = "mlm"
    config_class = MlmConfig
    auto_class = "AutoModelForMaskedLM"
    peft_task_type = None  # peft has no masked-LM task type: a plain PeftModel passes everything through
    pipeline_tag = pipeline_task = "fill-mask"
    architectures = ("bert",)
    causal = False
    noisy = True
    perplexity_keys = ("eval_perplexity", "eval_mlm_perplexity")  # the latter: MLM's alone, next to NSP's loss

    def model_class(self, recipe) -> str:
        return "AutoModelForPreTraining" if recipe.task_config.next_sentence_prediction else self.auto_class

    def check_tokenizer(self, tokenizer, where: str) -> None:
        if tokenizer.mask_token is None:
            raise HfkitError(f"tokenizer '{where}' has no mask_token, needed for masked-LM training: add one "
                             f"(tokenizer.add_special_tokens({{'mask_token': '[MASK]'}}) and save it), or train "
                             f"one here (tokenizer.path: null)")
        if tokenizer.eos_token is None and tokenizer.sep_token is None:
            raise HfkitError(f"tokenizer '{where}' has neither a sep_token nor an eos_token to separate documents")

    def collator(self, recipe, tokenizer):
        cfg = recipe.task_config
        return MaskingCollator(tokenizer, mlm=True, mlm_probability=cfg.mlm_probability,
                               mask_replace_prob=cfg.mask_replace_prob, random_replace_prob=cfg.random_replace_prob,
                               whole_word_mask=cfg.whole_word_mask,
                               word_starts=word_start_table(tokenizer) if cfg.whole_word_mask else None)

    def prepare(self, recipe, tokenizer, model, corpus: Corpus, seed: int) -> Prepared:
        prepared = super().prepare(recipe, tokenizer, model, corpus, seed)  # validation masked once, fixed
        prepared.preprocess_logits_for_metrics, prepared.compute_metrics = mlm_metrics()
        prepared.loss_is_token_nll = not recipe.task_config.next_sentence_prediction  # MLM + NSP loss
        return prepared

    def examples(self, recipe, tokenizer, corpus: Corpus, seed: int) -> Prepared:
        if not recipe.task_config.next_sentence_prediction:
            return super().examples(recipe, tokenizer, corpus, seed)
        return self._sentence_pairs(recipe, tokenizer, corpus, seed)

    def _sentence_pairs(self, recipe, tokenizer, corpus: Corpus, seed: int) -> Prepared:
        from ..data.sentence_pairs import sentence_pairs

        cfg, block = recipe.task_config, recipe.data.block_size
        texts = [t for ds in corpus.train.values() for t in ds["text"]]
        train, stats = sentence_pairs(texts, tokenizer, block, seed, cfg.short_seq_prob)
        validation, val_stats = None, None
        if len(corpus.validation) >= 2:
            validation, val_stats = sentence_pairs(corpus.validation["text"], tokenizer, block, seed + 1,
                                                   cfg.short_seq_prob)
        report = {**corpus.stats, "mixture": {}, "sentence_pairs": stats.as_dict(),
                  "validation_sentence_pairs": val_stats.as_dict() if val_stats else None}
        overview = [("train pairs", f"{stats.pairs:,} ({stats.is_next:,} next, {stats.random_next:,} random)"),
                    ("validation pairs", val_stats.pairs if val_stats else 0)]
        return Prepared(train, validation, self.collator(recipe, tokenizer), report, overview)
