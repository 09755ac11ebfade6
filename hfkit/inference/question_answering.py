"""Extractive question answering at inference, below the task that trains it and the pipeline that
serves it (transformers' run_qa.py shapes): a (question, context) pair -> overlapping windows of the
context with their offset mappings (`qa_features`), and the windows' start/end logits -> the answer
text of every example (`postprocess_qa_predictions`).

`cfg` is anything with run_qa's names: question_field, context_field, answers_field, max_length,
doc_stride (the recipe's `extractive_qa` section, or `QaWindows`)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from datasets import Dataset


@dataclass
class QaWindows:
    """How questions and contexts are windowed (the fields `qa_features` reads)."""
    max_length: int = 384
    doc_stride: int = 128
    question_field: str = "question"
    context_field: str = "context"
    answers_field: str = "answers"


def qa_features(batch: dict, tokenizer, cfg: QaWindows, keep_types: bool, for_eval: bool) -> dict:
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
