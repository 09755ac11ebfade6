"""Extractive question answering (`task: extractive_qa`): the answer is a span of the context, found
by start/end logits of `AutoModelForQuestionAnswering`.

The shapes of transformers' `run_qa.py`: records in SQuAD's layout (question, context, answers
{text, answer_start}; nested SQuAD JSON files are flattened); a context longer than the window is
split into overlapping features (`doc_stride`) with the offset mapping of each; a feature that does
not hold the answer points at the first token ("no answer"); predictions are post-processed as
run_qa does (n-best start/end pairs over every feature of an example, spans inside the context and
at most `max_answer_length` tokens, mapped back to characters; with `version_2_with_negative` the
null answer wins when its score beats the best span by `null_score_diff_threshold`). Scores are
SQuAD's exact match and F1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
from datasets import Dataset
from transformers import default_data_collator

from ..errors import HfkitError
from ..inference.question_answering import postprocess_qa_predictions, qa_features
from . import Prepared, register
from .labelled import LabelledTask, keeps_token_types, require_fast

if TYPE_CHECKING:
    from ..sections import Recipe


@dataclass
class QaConfig:
    """Recipe section `extractive_qa` (run_qa's names)."""
    question_field: str = "question"
    context_field: str = "context"
    answers_field: str = "answers"  # {"text": [...], "answer_start": [...]}; empty lists: no answer
    max_length: int = 384  # tokens per feature (question + a window of the context)
    doc_stride: int = 128  # tokens of overlap between consecutive windows of a long context
    n_best_size: int = 20  # start and end candidates per feature
    max_answer_length: int = 30  # tokens
    version_2_with_negative: bool = False  # some questions have no answer in their context (SQuAD 2.0)
    null_score_diff_threshold: float = 0.0  # predict "no answer" when null score - best span score exceeds it
    group_field: Optional[str] = None  # records sharing this field's value stay on one side of the split

    def validate(self, prefix: str) -> None:
        if self.doc_stride >= self.max_length:
            raise HfkitError(f"recipe key '{prefix}.doc_stride'={self.doc_stride} must be smaller than "
                             f"{prefix}.max_length={self.max_length}")
        for key in ("max_length", "n_best_size", "max_answer_length"):
            if getattr(self, key) < 1:
                raise HfkitError(f"recipe key '{prefix}.{key}' must be >= 1, got {getattr(self, key)}")


def flatten_squad(ds: Dataset, where: str) -> Dataset:
    """A SQuAD JSON file as `datasets` reads it (one row with `data`: articles -> paragraphs -> qas)
    -> one record per question: id, title, context, question, answers {text, answer_start}."""
    if "data" not in ds.column_names or "question" in ds.column_names:
        return ds
    rows = []
    for articles in ds["data"]:
        for article in articles:
            for p in article.get("paragraphs", []):
                for qa in p.get("qas", []):
                    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                    rows.append({"id": str(qa.get("id", len(rows))), "title": article.get("title", ""),
                                 "context": p["context"], "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in answers],
                                             "answer_start": [int(a["answer_start"]) for a in answers]}})
    if not rows:
        raise HfkitError(f"{where}: a SQuAD file with no questions")
    return Dataset.from_list(rows)


def check_answers(ds: Dataset, cfg: QaConfig) -> None:
    """Every answer's text is the context's text at its answer_start; no-answer records need v2."""
    for row in ds:
        where = f"data source '{row['_source']}' record {row['_record']}"
        ans, context = row[cfg.answers_field], row[cfg.context_field]
        if not isinstance(ans, dict) or not isinstance(ans.get("text"), list) or \
                not isinstance(ans.get("answer_start"), list) or len(ans["text"]) != len(ans["answer_start"]):
            raise HfkitError(f"{where}: field '{cfg.answers_field}' must be {{text: [...], answer_start: [...]}} "
                             f"with lists of the same length")
        if not ans["text"] and not cfg.version_2_with_negative:
            raise HfkitError(f"{where}: no answer; set extractive_qa.version_2_with_negative=true for questions "
                             f"without one")
        for text, start in zip(ans["text"], ans["answer_start"]):
            if context[start:start + len(text)] != text:
                raise HfkitError(f"{where}: answer {text[:40]!r} does not match the context at answer_start={start} "
                                 f"(the context has {context[start:start + len(text)][:40]!r} there)")


def squad_scores(predictions: list[str], gold: list[list[str]]) -> dict:
    """SQuAD exact match and F1 (x100), best over the gold answers; an unanswerable question's gold
    is the empty answer (SQuAD 2.0), with has-answer / no-answer breakdowns when both occur."""
    from ..evaluation.text_metrics import gold_answers, normalize_answer, token_f1

    em, f1, has, none = [], [], [], []
    for pred, answers in zip(predictions, gold):
        answers = gold_answers(answers)
        em.append(100.0 * max(normalize_answer(pred) == normalize_answer(a) for a in answers))
        f1.append(100.0 * max(token_f1(pred, a) for a in answers))
        (has if answers != [""] else none).append(len(em) - 1)
    out = {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}
    if has and none:
        out.update({"has_answer_exact_match": float(np.mean([em[i] for i in has])),
                    "has_answer_f1": float(np.mean([f1[i] for i in has])),
                    "no_answer_accuracy": float(np.mean([em[i] for i in none]))})
    return out


@register
class ExtractiveQA(LabelledTask):
    name = "extractive_qa"
    section = "extractive_qa"
    config_class = QaConfig
    auto_class = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"  # peft keeps qa_outputs trainable
    pipeline_tag = "question-answering"
    pipeline_task = None  # transformers 5 removed its question-answering pipeline (`hfkit pipeline` keeps one)

    def fields(self, cfg: QaConfig) -> list[str]:
        return [cfg.question_field, cfg.context_field, cfg.answers_field]

    def text_columns(self, cfg: QaConfig) -> list[str]:
        return [cfg.question_field, cfg.context_field]

    def reshape(self, ds, where: str):
        return flatten_squad(ds, where)

    def check_records(self, cfg: QaConfig, ds) -> None:
        check_answers(ds, cfg)

    def labels(self, recipe: "Recipe", records) -> list[str]:
        return ["start", "end"]  # no label list: the head scores start and end positions

    def model_overrides(self, recipe: "Recipe", data, tokenizer) -> dict:
        return {"pad_token_id": tokenizer.pad_token_id} if tokenizer is not None else {}

    def prepare(self, recipe: "Recipe", tokenizer, model, records, seed: int) -> Prepared:
        cfg = recipe.task_config
        require_fast(tokenizer, "task extractive_qa")
        keep_types = keeps_token_types(model)

        def features(ds, for_eval: bool):
            ds = ds.add_column("_example", list(range(len(ds))))
            return ds.map(qa_features, batched=True, remove_columns=ds.column_names,
                          fn_kwargs={"tokenizer": tokenizer, "cfg": cfg, "keep_types": keep_types,
                                     "for_eval": for_eval},
                          desc="features (extractive_qa)")

        train = features(records.train, False)
        stats = {**records.stats, "train_features": len(train)}
        overview = [("train questions", len(records.train)), ("train features (windows)", len(train))]
        if records.validation is None:
            return Prepared(train, None, default_data_collator, stats, overview, loss_is_token_nll=False)
        val_features = features(records.validation, True)
        contexts = records.validation[cfg.context_field]
        gold = [a["text"] for a in records.validation[cfg.answers_field]]
        stats["validation_features"] = len(val_features)
        overview += [("validation questions", len(contexts)), ("validation features", len(val_features))]

        def compute_metrics(eval_pred) -> dict:
            start, end = eval_pred.predictions
            answers = postprocess_qa_predictions(contexts, val_features, start, end, cfg.version_2_with_negative,
                                                 cfg.n_best_size, cfg.max_answer_length, cfg.null_score_diff_threshold)
            return squad_scores(answers, gold)

        validation = val_features.remove_columns(["offset_mapping", "example_index"])
        return Prepared(train, validation, default_data_collator, stats, overview, compute_metrics=compute_metrics,
                        loss_is_token_nll=False)
