"""Sequence classification (`task: classification`): one text or a pair of texts -> a label, or a
number (`problem_type: regression`), through `AutoModelForSequenceClassification`.

The shapes of transformers' `run_glue.py`: the tokenizer takes (text, text_pair) with truncation,
`token_type_ids` go to models that embed them, batches are padded dynamically. Encoders classify
from their pooled first token; decoders (GPT-2, Llama) from the last non-padding token, which
transformers finds from `pad_token_id` (set from the tokenizer) with right or left padding — with
left padding the collator adds position ids that start at the first real token, so a padded row
scores as it would alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
from transformers import DataCollatorWithPadding

from ..errors import HfkitError
from . import Prepared, register
from .labelled import LabelledTask, keeps_token_types

if TYPE_CHECKING:
    from ..sections import Recipe


@dataclass
class ClassificationConfig:
    """Recipe section `classification`."""
    text_field: str = "text"
    text_pair_field: Optional[str] = None  # a second text: sentence-pair classification
    label_field: str = "label"
    labels: Optional[list[str]] = None  # label names in id order; default: the training records' labels, sorted
    problem_type: Literal["single_label_classification", "regression"] = "single_label_classification"
    max_length: int = 128  # tokens per example (pair: both texts together); longer ones are truncated
    group_field: Optional[str] = None  # records sharing this field's value stay on one side of the split
    padding_side: Optional[Literal["left", "right"]] = None  # default: the tokenizer's own

    def validate(self, prefix: str) -> None:
        if self.max_length < 2:
            raise HfkitError(f"recipe key '{prefix}.max_length' must be >= 2, got {self.max_length}")
        if self.problem_type == "regression" and self.labels:
            raise HfkitError(f"recipe key '{prefix}.labels': a regression predicts a number, it has no labels")


class ClassificationCollator(DataCollatorWithPadding):
    """Dynamic padding; with left padding, position ids that start at each row's first real token."""

    def __call__(self, features):
        batch = super().__call__(features)
        if self.tokenizer.padding_side == "left":
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        return batch


def classification_metrics(eval_pred, regression: bool, n_labels: int) -> dict:
    """accuracy and macro-F1 (x100) — or, for a regression, MSE and Pearson/Spearman correlation."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if regression:
        from scipy.stats import pearsonr, spearmanr

        pred = np.asarray(logits).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        return {"mse": float(np.mean((pred - labels) ** 2)), "pearson": float(pearsonr(pred, labels)[0]),
                "spearman": float(spearmanr(pred, labels)[0])}
    from sklearn.metrics import f1_score

    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": float(100 * (pred == labels).mean()),
            "macro_f1": float(100 * f1_score(labels, pred, average="macro", labels=list(range(n_labels)),
                                              zero_division=0))}


@register
class SequenceClassification(LabelledTask):
    name = "classification"
    section = "classification"
    config_class = ClassificationConfig
    auto_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"  # peft keeps the new head (classifier / score) trainable: modules_to_save
    pipeline_tag = "text-classification"
    pipeline_task = "text-classification"

    def fields(self, cfg: ClassificationConfig) -> list[str]:
        return [f for f in (cfg.text_field, cfg.text_pair_field, cfg.label_field) if f]

    def text_columns(self, cfg: ClassificationConfig) -> list[str]:
        return [f for f in (cfg.text_field, cfg.text_pair_field) if f]

    def record_labels(self, cfg: ClassificationConfig, ds) -> list[list[str]]:
        return [[str(v)] for v in ds[cfg.label_field]]

    def check_records(self, cfg: ClassificationConfig, ds) -> None:
        if cfg.problem_type != "regression":
            return
        for value, src, rec in zip(ds[cfg.label_field], ds["_source"], ds["_record"]):  # every record, up front
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise HfkitError(f"data source '{src}' record {rec}: label {value!r} is not a finite number "
                                 f"(problem_type regression)")

    def labels(self, recipe: "Recipe", records) -> list[str]:
        if recipe.task_config.problem_type == "regression":
            return ["score"]
        return super().labels(recipe, records)

    def model_overrides(self, recipe: "Recipe", data, tokenizer) -> dict:
        return {**super().model_overrides(recipe, data, tokenizer), "problem_type": recipe.task_config.problem_type}

    def setup(self, recipe: "Recipe", tokenizer, model, data: Any = None) -> None:
        if recipe.task_config.padding_side:
            tokenizer.padding_side = recipe.task_config.padding_side
            tokenizer.init_kwargs["padding_side"] = recipe.task_config.padding_side  # saved with the run

    def prepare(self, recipe: "Recipe", tokenizer, model, records, seed: int) -> Prepared:
        cfg = recipe.task_config
        regression = cfg.problem_type == "regression"
        labels = records.labels
        label2id = {name: i for i, name in enumerate(labels)}
        keep_types = keeps_token_types(model)

        def encode(batch: dict) -> dict:
            pair = batch[cfg.text_pair_field] if cfg.text_pair_field else None
            enc = tokenizer(batch[cfg.text_field], pair, truncation=True, max_length=cfg.max_length)
            if not keep_types:
                enc.pop("token_type_ids", None)
            enc["labels"] = [float(v) for v in batch[cfg.label_field]] if regression else \
                [label2id[str(v)] for v in batch[cfg.label_field]]
            return dict(enc)

        def tokenize(ds):
            return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenize (classification)")

        train = tokenize(records.train)
        validation = tokenize(records.validation) if records.validation is not None else None
        truncated = sum(len(x) >= cfg.max_length for x in train["input_ids"])
        counts = {} if regression else {name: 0 for name in labels}
        for v in ([] if regression else train["labels"]):
            counts[labels[v]] += 1
        stats = {**records.stats, "labels": labels, "train_label_counts": counts, "truncated": truncated}
        overview = [("train records", len(train)), ("validation records", len(validation) if validation else 0),
                    ("labels", "regression" if regression else f"{len(labels)}: {', '.join(labels[:8])}"
                     + (" ..." if len(labels) > 8 else "")),
                    ("truncated to max_length", truncated),
                    ("padding", tokenizer.padding_side)]
        return Prepared(train, validation, ClassificationCollator(tokenizer), stats, overview,
                        compute_metrics=lambda p: classification_metrics(p, regression, len(labels)),
                        loss_is_token_nll=False)

    def training_defaults(self, recipe: "Recipe") -> dict:
        return {"train_sampling_strategy": "group_by_length"}  # similar lengths share a batch: little padding

