"""Token classification (`task: token_classification`): words with one tag each (NER, POS, code
token types) through `AutoModelForTokenClassification`.

The shapes of transformers' `run_ner.py`: records hold pre-split words and their tags (CoNLL-style
JSONL, or a Hub dataset whose tags are `ClassLabel`s); the fast tokenizer splits each word into
sub-tokens and `word_ids()` aligns them: the first sub-token of a word carries its tag, the others
-100 (ignored by the loss and the scores) unless `label_all_tokens` (then the tag, with B- turned
into I- where the label list has it). Scores are entity-level precision/recall/F1 from `seqeval`,
as run_ner computes them, over the first sub-token of every word the model saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
from transformers import DataCollatorForTokenClassification

from ..errors import HfkitError
from . import Prepared, register
from .labelled import LabelledTask, require_fast

if TYPE_CHECKING:
    from ..sections import Recipe


@dataclass
class TokenClassificationConfig:
    """Recipe section `token_classification` (run_ner's names where it has them)."""
    tokens_field: str = "tokens"  # a list of words per record
    tags_field: str = "tags"  # a list of tags, one per word (names, or ClassLabel ids of a Hub dataset)
    labels: Optional[list[str]] = None  # tag names in id order; default: the training records' tags, sorted
    label_all_tokens: bool = False  # true: every sub-token carries its word's tag; false: the first only
    max_length: int = 256  # sub-tokens per record; words past it are cut (and not scored)
    group_field: Optional[str] = None  # records sharing this field's value stay on one side of the split

    def validate(self, prefix: str) -> None:
        if self.max_length < 2:
            raise HfkitError(f"recipe key '{prefix}.max_length' must be >= 2, got {self.max_length}")


def align_labels(word_ids: list[int | None], word_labels: list[int], label_all_tokens: bool = False,
                 b_to_i: dict[int, int] | None = None) -> list[int]:
    """Sub-token labels from word labels: a word's first sub-token gets its label; the rest get -100,
    or (label_all_tokens) the label again, B-X turned into I-X through `b_to_i`; special tokens -100."""
    out, previous = [], None
    for w in word_ids:
        if w is None:
            out.append(-100)
        elif w != previous:
            out.append(word_labels[w])
        else:
            label = word_labels[w]
            out.append((b_to_i or {}).get(label, label) if label_all_tokens else -100)
        previous = w
    return out


def seqeval_scores(pred_tags: list[list[str]], true_tags: list[list[str]]) -> dict:
    """Entity-level precision/recall/F1 (micro) and token accuracy (x100), as `seqeval` (and run_ner)
    compute them, and the F1 of each entity type (`f1_<type>`, run_ner's entity-level metrics)."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    out = {"precision": 100 * precision_score(true_tags, pred_tags, zero_division=0),
           "recall": 100 * recall_score(true_tags, pred_tags, zero_division=0),
           "f1": 100 * f1_score(true_tags, pred_tags, zero_division=0),
           "accuracy": 100 * accuracy_score(true_tags, pred_tags)}
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    for kind, row in sorted(report.items()):
        if " avg" not in kind:
            out[f"f1_{kind.lower()}"] = 100 * row["f1-score"]
    return out


def tag_metrics(eval_pred, labels: list[str]) -> dict:
    pred = np.asarray(eval_pred.predictions).argmax(-1)
    gold = np.asarray(eval_pred.label_ids)
    true_tags, pred_tags = [], []
    for p_row, g_row in zip(pred, gold):
        keep = g_row != -100
        true_tags.append([labels[i] for i in g_row[keep]])
        pred_tags.append([labels[i] for i in p_row[keep]])
    return seqeval_scores(pred_tags, true_tags)


@register
class TokenClassification(LabelledTask):
    name = "token_classification"
    section = "token_classification"
    config_class = TokenClassificationConfig
    auto_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pipeline_tag = "token-classification"
    pipeline_task = "token-classification"

    def fields(self, cfg: TokenClassificationConfig) -> list[str]:
        return [cfg.tokens_field, cfg.tags_field]

    def text_columns(self, cfg: TokenClassificationConfig) -> list[str]:
        return [cfg.tokens_field]

    def record_labels(self, cfg: TokenClassificationConfig, ds) -> list[list[str]]:
        return [[str(t) for t in tags] for tags in ds[cfg.tags_field]]

    def check_records(self, cfg: TokenClassificationConfig, ds) -> None:
        for row in ds:
            words, tags = row[cfg.tokens_field], row[cfg.tags_field]
            if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
                n = len(words) if isinstance(words, list) else "not a list"
                m = len(tags) if isinstance(tags, list) else "not a list"
                raise HfkitError(f"data source '{row['_source']}' record {row['_record']}: {cfg.tokens_field} ({n}) "
                                 f"and {cfg.tags_field} ({m}) must be lists of the same length")

    def prepare(self, recipe: "Recipe", tokenizer, model, records, seed: int) -> Prepared:
        cfg = recipe.task_config
        require_fast(tokenizer, "task token_classification")
        labels = records.labels
        label2id = {name: i for i, name in enumerate(labels)}
        b_to_i = {i: label2id["I-" + name[2:]] for i, name in enumerate(labels)
                  if name.startswith("B-") and "I-" + name[2:] in label2id}

        def encode(batch: dict) -> dict:
            enc = tokenizer(batch[cfg.tokens_field], is_split_into_words=True, truncation=True,
                            max_length=cfg.max_length)
            enc["labels"], enc["words_kept"] = [], []
            for i, tags in enumerate(batch[cfg.tags_field]):
                word_ids = enc.word_ids(i)
                enc["labels"].append(align_labels(word_ids, [label2id[str(t)] for t in tags], cfg.label_all_tokens,
                                                  b_to_i))
                kept = {w for w in word_ids if w is not None}
                enc["words_kept"].append(len(kept))
            return dict(enc)

        def tokenize(ds):
            out = ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenize (token_classification)")
            return out.remove_columns("words_kept"), sum(len(t) for t in ds[cfg.tags_field]) - sum(out["words_kept"])

        train, cut_train = tokenize(records.train)
        validation, cut_val = tokenize(records.validation) if records.validation is not None else (None, 0)
        stats = {**records.stats, "labels": labels,
                 "words_cut_by_max_length": {"train": cut_train, "validation": cut_val}}
        overview = [("train records", len(train)), ("validation records", len(validation) if validation else 0),
                    ("tags", f"{len(labels)}: {', '.join(labels[:8])}" + (" ..." if len(labels) > 8 else "")),
                    ("words cut by max_length (train)", cut_train)]
        return Prepared(train, validation, DataCollatorForTokenClassification(tokenizer), stats, overview,
                        compute_metrics=lambda p: tag_metrics(p, labels), loss_is_token_nll=False)
