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

import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..errors import HfkitError
from ..inference.scoring import loglikelihoods
from ..models import require_causal
from .text_metrics import normalize_answer, token_f1

DEFAULT_TEMPLATE = "Question: {{question}}\nAnswer:"
COT_TRIGGER = " Let's think step by step."
ANSWER_REGEX = r"(?i)the answer is[:\s]*(.+?)\s*(?:\.\s|\.?$|\n)"


@dataclass
class IclConfig:
    """One in-context evaluation: `hfkit eval icl`, `hfkit.evaluate_icl`, and each entry of a
    recipe's `eval.icl` list (where `path` is required)."""
    path: Optional[str] = None  # the task file (JSONL: question, answer, optional choices / rationale)
    shots: int = 0
    seed: int = 1234  # chooses the demonstrations (and seeds sampling)
    select: Literal["random", "similar"] = "random"  # similar: TF-IDF cosine, most similar last
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

    RENAMED = {"task": "path"}

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
        return out

    def validate(self, prefix: str) -> None:
        for name, what in self.problems()[:1]:
            raise HfkitError(f"recipe key '{prefix}.{name}' {what}")


@dataclass
class Example:
    index: int
    doc: dict
    gold: str  # the gold answer text
    gold_index: int | None = None  # multiple choice
    choices: list[str] = field(default_factory=list)


def load_task(path: str | Path, input_field: str = "question") -> list[Example]:
    """Read and check an ICL task file (JSONL); errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise HfkitError(f"--task: no such file: {path}")
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise HfkitError(f"{path}: not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise HfkitError(f"{path} line {n}: invalid JSON ({e.msg})") from None
        if not isinstance(doc, dict):
            raise HfkitError(f"{path} line {n}: expected a JSON object")
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


def render(template: str, doc: dict, where: str) -> str:
    import jinja2

    from ..data.templates import compile_template

    try:
        return compile_template(template).render(**doc)
    except jinja2.UndefinedError as e:
        raise HfkitError(f"{where}: the template uses a field the example lacks ({e.message})") from None
    except jinja2.TemplateSyntaxError as e:
        raise HfkitError(f"--template: invalid Jinja template ({e.message})") from None


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class SimilarSelector:
    """TF-IDF cosine similarity between the inputs of the example and of the demonstrations."""

    def __init__(self, texts: list[str]):
        docs = [Counter(_tokens(t)) for t in texts]
        df = Counter(w for d in docs for w in d)
        n = len(docs)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}
        self.vectors = [self._vector(d) for d in docs]

    def _vector(self, counts: Counter) -> dict:
        v = {w: c * self.idf.get(w, math.log(1 + len(self.idf)) + 1) for w, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    def top(self, text: str, k: int, exclude: int | None) -> list[int]:
        q = self._vector(Counter(_tokens(text)))
        scores = [(sum(q.get(w, 0.0) * x for w, x in v.items()), -i) for i, v in enumerate(self.vectors) if i != exclude]
        best = sorted(scores, reverse=True)[:k]
        return [-i for _, i in reversed(best)]  # the most similar demonstration last, next to the question


def demo_text(ex: Example, cfg: IclConfig, where: str) -> str:
    body = render(cfg.template, ex.doc, where) + (COT_TRIGGER if cfg.cot else "")
    answer = ex.gold
    if cfg.cot:
        rationale = ex.doc.get("rationale")
        if not rationale:
            raise HfkitError(f"{where}: chain-of-thought demonstrations need a 'rationale' field")
        answer = f"{rationale} The answer is {ex.gold}."
    return body + cfg.target_delimiter + answer


def build_prompts(examples: list[Example], demos: list[Example] | None, cfg: IclConfig,
                  task_name: str = "task", demos_name: str | None = None) -> list[str]:
    """Prompt of every example with `cfg.shots` demonstrations (from `demos`, else from the task file
    itself without the example); deterministic for a given seed and the same as lm-eval's."""
    same_pool = demos is None
    pool = examples if same_pool else demos
    available = len(pool) - (1 if same_pool else 0)
    if cfg.shots < 0:
        raise HfkitError(f"--shots must be >= 0, got {cfg.shots}")
    if cfg.shots > available:
        raise HfkitError(f"--shots {cfg.shots} but only {available} demonstrations are available in "
                         f"{demos_name or task_name}" + (" (the task file minus the example itself)" if same_pool else ""))
    selector = SimilarSelector([str(d.doc[cfg.input_field]) for d in pool]) if cfg.select == "similar" and cfg.shots else None
    # random: lm-evaluation-harness's ContextSampler, so that a seed gives the same demonstrations there
    # and here: one Random(seed) drawn from in example order; from the task's own pool it draws K+1 and
    # drops the example itself (lm-eval does this when fewshot_split is the test split)
    rnd = random.Random(cfg.seed)
    prompts = []
    for ex in examples:
        where = f"{task_name} example {ex.index + 1}"
        chosen: list[int] = []
        if cfg.shots:
            exclude = ex.index if same_pool else None
            if selector is not None:
                chosen = selector.top(str(ex.doc[cfg.input_field]), cfg.shots, exclude)
            elif same_pool:
                chosen = [i for i in rnd.sample(range(len(pool)), cfg.shots + 1) if pool[i].doc != ex.doc][:cfg.shots]
                if len(chosen) < cfg.shots:  # the example appears more than once in the pool
                    chosen = rnd.sample([i for i in range(len(pool)) if pool[i].doc != ex.doc], cfg.shots)
            else:
                chosen = rnd.sample(range(len(pool)), cfg.shots)
        parts = [demo_text(pool[i], cfg, f"{demos_name or task_name} example {i + 1}") for i in chosen]
        parts.append(render(cfg.template, ex.doc, where) + (COT_TRIGGER if cfg.cot else ""))
        prompts.append(cfg.fewshot_delimiter.join(parts))
    return prompts


def extract_answer(text: str, regex: str | None, cot: bool) -> str | None:
    """The answer in a generation: the regex's first group (default for chain-of-thought: "The answer
    is X"), else the first non-empty line."""
    pattern = regex or (ANSWER_REGEX if cot else None)
    if pattern:
        m = re.search(pattern, text)
        if not m:
            return None
        return (m.group(1) if m.groups() else m.group(0)).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent extracted answer (compared after SQuAD normalisation); ties go to the answer
    seen first; paths with no extractable answer do not vote."""
    votes = [a for a in answers if a is not None and normalize_answer(a) != ""]
    if not votes:
        return None
    counts = Counter(normalize_answer(a) for a in votes)
    best = max(counts.values())
    for a in votes:  # first seen among the most frequent
        if counts[normalize_answer(a)] == best:
            return a
    return None


def evaluate_icl(model, tokenizer, examples: list[Example], cfg: IclConfig, demos: list[Example] | None = None,
                 task_name: str = "task", demos_name: str | None = None, progress: bool = False) -> dict:
    """Run an ICL evaluation; returns {"metrics": ..., "samples": [...]}."""
    from ..inference.generation import generate

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
