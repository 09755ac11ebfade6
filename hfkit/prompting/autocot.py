"""Auto-CoT (Zhang et al., 2022, "Automatic Chain of Thought Prompting in Large Language Models"):
demonstrations for chain-of-thought prompting without hand-written rationales.

1. embed the questions (Sentence-BERT: MiniLM) and cluster them with k-means (scikit-learn);
2. in each cluster, try the questions from the nearest to the centre outwards: generate a rationale
   with zero-shot CoT ("Let's think step by step."), then the answer ("Therefore, the answer is");
3. keep the first that passes the paper's heuristics (a question of at most 60 tokens, a rationale of
   at most 5 reasoning steps), one demonstration per cluster: diverse questions, short rationales.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import HfkitError
from .fewshot import COT_TRIGGER

ANSWER_TRIGGER = " Therefore, the answer is"
_STEP = re.compile(r"(?<=[.!?])\s+|\n+")


def cluster_order(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    """k-means labels, and per cluster its members ordered by distance to the cluster's centre."""
    from sklearn.cluster import KMeans

    if k > len(vectors):
        raise HfkitError(f"--clusters {k}: only {len(vectors)} questions")
    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(vectors)
    dist = np.linalg.norm(vectors - km.cluster_centers_[km.labels_], axis=1)
    order = [sorted(np.flatnonzero(km.labels_ == c).tolist(), key=lambda i: (dist[i], i)) for c in range(k)]
    return km.labels_, order


def reasoning_steps(rationale: str) -> int:
    return len([s for s in _STEP.split(rationale.strip()) if s.strip()])


def zero_shot_cot(model, tokenizer, questions: list[str], max_new_tokens: int = 128, batch_size: int = 16,
                  template: str = "Q: {question}\nA:") -> list[tuple[str, str]]:
    """(rationale, answer) for each question: zero-shot CoT's two stages, greedy."""
    from ..inference.generation import generate

    prompts = [template.format(question=q) + COT_TRIGGER for q in questions]
    rationales = [o[0].split("\n\n")[0].strip() for o in generate(model, tokenizer, prompts, batch_size=batch_size,
                                                                     max_new_tokens=max_new_tokens)]
    second = [p + " " + r + ANSWER_TRIGGER for p, r in zip(prompts, rationales)]
    answers = [o[0].strip().split("\n")[0].strip().rstrip(".").strip()
               for o in generate(model, tokenizer, second, batch_size=batch_size, max_new_tokens=16)]
    return list(zip(rationales, answers))


def auto_cot(records: list[dict], model, tokenizer, k: int = 4, max_question_tokens: int = 60, max_steps: int = 5,
             max_new_tokens: int = 128, seed: int = 0, question_field: str = "question", progress: bool = False,
             encoder: str | None = None) -> tuple[list[dict], dict]:
    """Demonstrations {question, rationale, answer, cluster} (one per cluster that yields one) and a report."""
    from .embeddings import DEFAULT_ENCODER, embed

    for n, r in enumerate(records, 1):
        if not isinstance(r.get(question_field), str) or not r[question_field].strip():
            raise HfkitError(f"--data record {n}: no '{question_field}' text")
    questions = [r[question_field] for r in records]
    _, order = cluster_order(embed(questions, encoder or DEFAULT_ENCODER, progress=progress), k, seed)
    demos, skipped = [], {"question_length": 0, "rationale_steps": 0, "no_answer": 0}
    for c, members in enumerate(order):
        candidates = []
        for i in members:
            if len(questions[i].split()) > max_question_tokens:
                skipped["question_length"] += 1
                continue
            candidates.append(i)
        # generate for a few candidates at a time, nearest to the centre first, until one passes
        for start in range(0, len(candidates), 4):
            batch = candidates[start:start + 4]
            found = None
            for i, (rationale, answer) in zip(batch, zero_shot_cot(model, tokenizer, [questions[j] for j in batch],
                                                                   max_new_tokens)):
                if not rationale or reasoning_steps(rationale) > max_steps:
                    skipped["rationale_steps"] += 1
                elif not answer:
                    skipped["no_answer"] += 1
                else:
                    found = {"question": questions[i], "rationale": rationale, "answer": answer, "cluster": c,
                             "index": i}
                    break
            if found:
                demos.append(found)
                break
    report = {"clusters": k, "demonstrations": len(demos), "skipped": sum(skipped.values()), "skipped_by": skipped}
    return demos, report
