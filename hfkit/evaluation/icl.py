"""In-context evaluation: zero/few-shot prompts, multiple choice by log-likelihood, generation with
answer extraction, chain-of-thought and self-consistency.

Conventions follow lm-evaluation-harness, so that scores are comparable:
- a prompt is `demo_1 + "\\n\\n" + ... + demo_K + "\\n\\n" + template(example)`; each demonstration
  is `template(demo) + " " + answer` (`fewshot_delimiter`, `target_delimiter`);
- a choice is scored as the continuation `" " + choice` of the prompt; the pair is encoded whole
  and split where the prompt's own encoding ends (trailing spaces move to the continuation), as
  lm-eval's `_encode_pair` does; no BOS is added (an empty prompt starts from the EOS/BOS token);
- `acc` picks the highest summed log-likelihood, `acc_norm` the highest per character of the
  choice text (lm-eval's length normalisation).

Task files are JSONL: `question` (or `--input-field`), `answer` (index into `choices` or the answer
text), optional `choices` (multiple choice) and `rationale` (worked reasoning for chain-of-thought
demonstrations).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional

from ..errors import HfkitError
from ..inference.scoring import loglikelihoods
from ..prompting.fewshot import (ANSWER_REGEX, COT_TRIGGER, DEFAULT_TEMPLATE, Example, SimilarSelector,  # noqa: F401
                                 build_prompts, demo_text, extract_answer, majority_vote, render)
from ..models import require_causal
from .text_metrics import normalize_answer, token_f1


@dataclass
class IclConfig:
    """One in-context evaluation: `hfkit eval icl`, `hfkit.evaluate_icl`, and each entry of a
    recipe's `eval.icl` list (where `path` is required)."""
    path: Optional[str] = None  # the task file (JSONL: question, answer, optional choices / rationale)
    shots: int = 0
    seed: int = 1234  # chooses the demonstrations (and seeds sampling)
    # random; tfidf (or similar): TF-IDF cosine; embedding: MiniLM cosine. The most similar goes last
    select: Literal["random", "tfidf", "similar", "embedding"] = "random"
    template: str = DEFAULT_TEMPLATE
    demos: Optional[str] = None  # JSONL of demonstrations; default: the task file minus the example
    limit: Optional[int] = None  # the first N examples only
    input_field: str = "question"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    mode: Literal["auto", "multiple_choice", "generate"] = "auto"
    cot: bool = False
    self_consistency: int = 0  # N sampled reasoning paths, majority vote (0: greedy, one path)
    temperature: float = 1.0  # sampling temperature of self-consistency paths
    top_p: Optional[float] = None
    max_new_tokens: int = 64
    answer_regex: Optional[str] = None
    batch_size: int = 16
    # a library template (hfkit.prompting.library): its prompt, shots, selection, CoT and self-consistency
    # for every one of those fields left at its default here
    prompt_template: Optional[str] = None
    # a task definition (Natural Instructions style: hfkit.data.task_definitions), a file or a mapping: put in
    # front of every prompt with its first positive_examples / negative_examples, the template as the input
    definition: Any = None
    positive_examples: int = 2
    negative_examples: int = 0

    RENAMED = {"task": "path"}

    def resolved(self) -> "IclConfig":
        """The settings with the task definition rendered into the template (as is, without one)."""
        if self.definition is None:
            return self
        from ..data.task_definitions import definition_template, load_definition

        defn = load_definition(self.definition, "definition")
        return replace(self, definition=None, template=definition_template(
            defn, self.template, self.positive_examples, self.negative_examples))

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for every bad setting; the recipe and the CLI name them their own way."""
        out = []
        if not self.path:
            out.append(("path", "is required: the task file (JSONL)"))
        if self.shots < 0:
            out.append(("shots", f"must be >= 0, got {self.shots}"))
        if self.self_consistency < 0:
            out.append(("self_consistency", f"must be >= 0, got {self.self_consistency}"))
        if self.self_consistency and self.temperature <= 0:
            out.append(("temperature", "must be > 0 to sample self-consistency paths"))
        for key in ("positive_examples", "negative_examples"):
            if getattr(self, key) < 0:
                out.append((key, f"must be >= 0, got {getattr(self, key)}"))
        return out

    def validate(self, prefix: str) -> None:
        if self.prompt_template:
            from ..prompting import get_template

            settings = get_template(self.prompt_template, f"recipe key '{prefix}.prompt_template'").icl_settings()
            defaults = IclConfig()
            for k, v in settings.items():
                if getattr(self, k) == getattr(defaults, k):
                    setattr(self, k, v)
        for name, what in self.problems()[:1]:
            raise HfkitError(f"recipe key '{prefix}.{name}' {what}")


def load_task(path: str | Path, input_field: str = "question") -> list[Example]:
    """Read and check an ICL task file (JSONL); errors name the file, line and field."""
    from ..io import read_jsonl_objects

    path = Path(path)
    examples = []
    for n, doc in read_jsonl_objects(path, "--task"):
        for f in (input_field, "answer"):
            if f not in doc:
                raise HfkitError(f"{path} line {n}: missing field '{f}' (fields: {', '.join(doc) or 'none'})")
        choices = doc.get("choices") or []
        if choices:
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices) or len(choices) < 2:
                raise HfkitError(f"{path} line {n}: 'choices' must be a list of at least two strings")
            ans = doc["answer"]
            if isinstance(ans, bool) or not isinstance(ans, (int, str)):
                raise HfkitError(f"{path} line {n}: 'answer' must be a choice index or one of the choices")
            if isinstance(ans, str):
                if ans not in choices:
                    raise HfkitError(f"{path} line {n}: answer '{ans}' is not one of the choices")
                ans = choices.index(ans)
            if not 0 <= ans < len(choices):
                raise HfkitError(f"{path} line {n}: answer index {ans} out of range for {len(choices)} choices")
            examples.append(Example(len(examples), doc, choices[ans], ans, choices))
        else:
            examples.append(Example(len(examples), doc, str(doc["answer"])))
    if not examples:
        raise HfkitError(f"{path}: no examples in the file")
    return examples


def evaluate_icl(model, tokenizer, examples: list[Example], cfg: IclConfig, demos: list[Example] | None = None,
                 task_name: str = "task", demos_name: str | None = None, progress: bool = False) -> dict:
    """Run an ICL evaluation; returns {"metrics": ..., "samples": [...]}."""
    from ..inference.generation import generate

    cfg = cfg.resolved()
    if cfg.limit is not None:
        examples = examples[:cfg.limit]
    require_causal(model, "in-context evaluation")
    mc = all(ex.choices for ex in examples)
    mode = cfg.mode if cfg.mode != "auto" else ("multiple_choice" if mc and not cfg.cot and not cfg.self_consistency
                                                else "generate")
    if mode == "multiple_choice" and not mc:
        first = next(ex for ex in examples if not ex.choices)
        raise HfkitError(f"{task_name} example {first.index + 1}: multiple choice needs a 'choices' field")
    prompts = build_prompts(examples, demos, cfg, task_name, demos_name)
    samples = []
    if mode == "multiple_choice":
        requests = [(p, cfg.target_delimiter + c) for p, ex in zip(prompts, examples) for c in ex.choices]
        lls = loglikelihoods(model, tokenizer, requests, cfg.batch_size, progress)
        acc = acc_norm = 0
        pos = 0
        for p, ex in zip(prompts, examples):
            scores = lls[pos:pos + len(ex.choices)]
            pos += len(ex.choices)
            raw = [s for s, _ in scores]
            norm = [s / len(c) for s, c in zip(raw, ex.choices)]
            pick, pick_norm = max(range(len(raw)), key=raw.__getitem__), max(range(len(norm)), key=norm.__getitem__)
            acc += pick == ex.gold_index
            acc_norm += pick_norm == ex.gold_index
            samples.append({"index": ex.index, "prompt": p, "choices": ex.choices, "gold": ex.gold_index,
                            "loglikelihoods": raw, "is_greedy": [g for _, g in scores],
                            "prediction": pick, "prediction_norm": pick_norm})
        n = len(examples)
        metrics = {"acc": 100 * acc / n, "acc_norm": 100 * acc_norm / n, "n": n}
    else:
        n_paths = max(1, cfg.self_consistency)
        sampling = cfg.self_consistency > 0
        outs = generate(model, tokenizer, prompts, batch_size=cfg.batch_size, seed=cfg.seed,
                        max_new_tokens=cfg.max_new_tokens, do_sample=sampling, temperature=cfg.temperature,
                        top_p=cfg.top_p, num_return_sequences=n_paths, progress=progress,
                        desc="generate (icl)")
        em = f1 = first_em = agree = 0.0
        for p, ex, paths in zip(prompts, examples, outs):
            cut = [t.split(cfg.fewshot_delimiter)[0] if not cfg.cot else t for t in paths]  # stop at the next demo
            answers = [extract_answer(t, cfg.answer_regex, cfg.cot) for t in cut]
            final = majority_vote(answers) if sampling else answers[0]
            pred = final or ""
            em += normalize_answer(pred) == normalize_answer(ex.gold)
            f1 += token_f1(pred, ex.gold)
            first_em += normalize_answer(answers[0] or "") == normalize_answer(ex.gold)
            if sampling and final is not None:
                agree += sum(a is not None and normalize_answer(a) == normalize_answer(final) for a in answers) / n_paths
            samples.append({"index": ex.index, "prompt": p, "gold": ex.gold, "generations": paths,
                            "answers": answers, "prediction": pred})
        n = len(examples)
        metrics = {"exact_match": 100 * em / n, "token_f1": 100 * f1 / n, "n": n}
        if sampling:
            metrics.update(single_path_exact_match=100 * first_em / n, vote_agreement=100 * agree / n,
                           paths=n_paths)
    settings = {"mode": mode, "shots": cfg.shots, "seed": cfg.seed, "select": cfg.select, "template": cfg.template,
                "cot": cfg.cot, "self_consistency": cfg.self_consistency, "target_delimiter": cfg.target_delimiter,
                "fewshot_delimiter": cfg.fewshot_delimiter}
    if mode == "generate":
        settings.update(max_new_tokens=cfg.max_new_tokens, answer_regex=cfg.answer_regex or (ANSWER_REGEX if cfg.cot else None))
        if cfg.self_consistency:
            settings.update(temperature=cfg.temperature, top_p=cfg.top_p)
    return {"metrics": metrics, "settings": settings, "samples": samples}
