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

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
from datasets import Dataset
from transformers import default_data_collator

from ..errors import HfkitError
from . import Prepared, register
from .labelled import LabelledTask, keeps_token_types, require_fast

if TYPE_CHECKING:
    from ..recipe import Recipe


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


def qa_features(batch: dict, tokenizer, cfg: QaConfig, keep_types: bool, for_eval: bool) -> dict:
    """Windows of (question, context) with start/end positions (run_qa's prepare_train_features) and,
    for evaluation, the example index and the offsets of context tokens (None elsewhere)."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in batch[cfg.question_field]]
    contexts = batch[cfg.context_field]
    enc = tokenizer(questions if pad_on_right else contexts, contexts if pad_on_right else questions,
                    truncation="only_second" if pad_on_right else "only_first", max_length=cfg.max_length,
                    stride=cfg.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    context_id = 1 if pad_on_right else 0
    enc["start_positions"], enc["end_positions"], enc["example_index"] = [], [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        seq_ids = enc.sequence_ids(i)
        sample = sample_mapping[i]
        answers = batch[cfg.answers_field][sample]
        start = end = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            first = seq_ids.index(context_id)
            last = len(seq_ids) - 1 - seq_ids[::-1].index(context_id)
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:  # the answer is in this window
                start = first
                while start <= last and offsets[start][0] <= start_char:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= end_char:
                    end -= 1
                end += 1
        enc["start_positions"].append(start)
        enc["end_positions"].append(end)
        enc["example_index"].append(batch["_example"][sample])
        enc["offset_mapping"][i] = [o if seq_ids[k] == context_id else None for k, o in enumerate(offsets)]
    if not keep_types:
        enc.pop("token_type_ids", None)
    if not for_eval:
        enc.pop("offset_mapping")
        enc.pop("example_index")
    return dict(enc)


def postprocess_qa_predictions(contexts: list[str], features: Dataset, start_logits, end_logits,
                               version_2_with_negative: bool = False, n_best_size: int = 20,
                               max_answer_length: int = 30, null_score_diff_threshold: float = 0.0) -> list[str]:
    """The answer text of every example (run_qa's postprocess_qa_predictions): features carry
    `example_index` and `offset_mapping` (None outside the context)."""
    per_example = defaultdict(list)
    for i, ex in enumerate(features["example_index"]):
        per_example[ex].append(i)
    offsets_all = features["offset_mapping"]
    answers = []
    for ex, context in enumerate(contexts):
        null, prelim = None, []
        for fi in per_example[ex]:
            s_log, e_log, offsets = start_logits[fi], end_logits[fi], offsets_all[fi]
            null_score = s_log[0] + e_log[0]
            if null is None or null["score"] > null_score:
                null = {"offsets": (0, 0), "score": null_score}
            starts = np.argsort(s_log)[-1:-n_best_size - 1:-1].tolist()
            ends = np.argsort(e_log)[-1:-n_best_size - 1:-1].tolist()
            for s in starts:
                for e in ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append({"offsets": (offsets[s][0], offsets[e][1]), "score": s_log[s] + e_log[e]})
        if version_2_with_negative and null is not None:
            prelim.append(null)
        best = sorted(prelim, key=lambda p: p["score"], reverse=True)[:n_best_size]
        if version_2_with_negative and null is not None and not any(p["offsets"] == (0, 0) for p in best):
            best.append(null)
        for p in best:
            p["text"] = context[p["offsets"][0]:p["offsets"][1]]
        if not best or (len(best) == 1 and best[0]["text"] == ""):
            best.insert(0, {"text": "empty", "score": 0.0, "offsets": (0, 0)})
        if not version_2_with_negative:
            answers.append(best[0]["text"])
            continue
        non_null = next((p for p in best if p["text"] != ""), {"text": "", "score": -np.inf})
        answers.append("" if null["score"] - non_null["score"] > null_score_diff_threshold else non_null["text"])
    return answers


def squad_scores(predictions: list[str], gold: list[list[str]]) -> dict:
    """SQuAD exact match and F1 (x100), best over the gold answers; an unanswerable question's gold
    is the empty answer (SQuAD 2.0), with has-answer / no-answer breakdowns when both occur."""
    from ..evaluation.text_metrics import normalize_answer, token_f1

    em, f1, has, none = [], [], [], []
    for pred, answers in zip(predictions, gold):
        answers = [a for a in answers if normalize_answer(a)] or [""]
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
