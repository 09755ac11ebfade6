"""Few-shot prompts: demonstrations chosen at random (as lm-evaluation-harness draws them), by TF-IDF
or by embedding similarity, chain-of-thought, answer extraction and the self-consistency vote.

Used by in-context evaluation (hfkit.evaluation.icl), the prompt library (hfkit.prompting.library),
Auto-CoT and RAG. A prompt is `demo_1 + fewshot_delimiter + ... + demo_K + fewshot_delimiter +
template(example)`; each demonstration is `template(demo) + target_delimiter + answer`.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from ..data.answers import normalize_answer
from ..errors import HfkitError

DEFAULT_TEMPLATE = "Question: {{question}}\nAnswer:"
COT_TRIGGER = " Let's think step by step."
ANSWER_REGEX = r"(?i)the answer is[:\s]*(.+?)\s*(?:\.\s|\.?$|\n)"


@dataclass
class Example:
    index: int
    doc: dict
    gold: str  # the gold answer text
    gold_index: int | None = None  # multiple choice
    choices: list[str] = field(default_factory=list)


@dataclass
class PromptSettings:
    """What building a few-shot prompt needs (evaluation's `IclConfig` has the same fields and is passed
    where these are)."""
    template: str = DEFAULT_TEMPLATE
    shots: int = 0
    select: str = "random"
    seed: int = 1234
    cot: bool = False
    input_field: str = "question"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"


def records_as_examples(records: list[dict], answer_field: str = "answer") -> list[Example]:
    """Records (a question to prompt with, or a demonstration with its answer) as `Example`s."""
    return [Example(i, r, str(r.get(answer_field, ""))) for i, r in enumerate(records)]


def render(template: str, doc: dict, where: str) -> str:
    import jinja2

    from ..data.templates import compile_template, render_template

    try:
        return render_template(compile_template(template), doc, where)
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


SELECT = ("random", "tfidf", "similar", "embedding")  # similar: TF-IDF (its earlier name)


def demo_selector(select: str, texts: list[str]):
    """The selector for `select` over the demonstrations' inputs (None: random, drawn as lm-eval does)."""
    if select in ("similar", "tfidf"):
        return SimilarSelector(texts)
    if select == "embedding":
        from .embeddings import EmbeddingSelector

        return EmbeddingSelector(texts)
    if select != "random":
        raise HfkitError(f"select '{select}': expected one of {', '.join(SELECT)}")
    return None


def demo_text(ex: Example, cfg: PromptSettings, where: str) -> str:
    body = render(cfg.template, ex.doc, where) + (COT_TRIGGER if cfg.cot else "")
    answer = ex.gold
    if cfg.cot:
        rationale = ex.doc.get("rationale")
        if not rationale:
            raise HfkitError(f"{where}: chain-of-thought demonstrations need a 'rationale' field")
        answer = f"{rationale} The answer is {ex.gold}."
    return body + cfg.target_delimiter + answer


def build_prompts(examples: list[Example], demos: list[Example] | None, cfg: PromptSettings,
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
    selector = demo_selector(cfg.select, [str(d.doc[cfg.input_field]) for d in pool]) if cfg.shots else None
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
