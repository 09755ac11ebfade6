"""Recipe section `eval`: what a run evaluates before and after training, besides validation loss.

- `metrics`: tasks that generate (sft) generate greedily for held-out records and score the answers.
- `icl`: in-context evaluations (as `hfkit eval icl` runs them) on any causal LM.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import HfkitError
from .icl import IclConfig


@dataclass
class EvalConfig:
    # tasks that generate: score held-out generations before and after training with these metrics
    # (bleu, chrf, ter, rouge, accuracy, exact_match, token_f1)
    metrics: list[str] = field(default_factory=list)
    max_examples: Optional[int] = 200  # held-out records to generate for (None: all)
    max_new_tokens: int = 64
    num_beams: int = 1
    batch_size: int = 32
    # any causal task: in-context evaluations before and after training
    icl: list[IclConfig] = field(default_factory=list)

    def validate(self, prefix: str) -> None:
        from .text_metrics import TEXT_METRICS

        unknown = [m for m in self.metrics if m not in TEXT_METRICS]
        if unknown:
            raise HfkitError(f"recipe key '{prefix}.metrics': unknown metric '{unknown[0]}' "
                             f"(expected {', '.join(TEXT_METRICS)})")


@dataclass
class IclTask:
    """An `eval.icl` entry, loaded and checked."""
    name: str
    examples: list
    demos: list | None
    config: IclConfig


def load_icl_tasks(cfg: EvalConfig) -> list[IclTask]:
    """The recipe's `eval.icl` tasks, read and checked (fields, shots) before any long work."""
    from .icl import build_prompts, load_task

    out, names = [], set()
    for i, t in enumerate(cfg.icl):
        examples = load_task(t.path, t.input_field)
        demos = load_task(t.demos, t.input_field) if t.demos else None
        build_prompts(examples[: t.limit] if t.limit else examples, demos, t, f"eval.icl.{i} ({t.path})", t.demos)
        name = Path(t.path).stem
        while name in names:
            name += "_"
        names.add(name)
        out.append(IclTask(name, examples, demos, t))
    return out


def run_icl_tasks(tasks: list[IclTask], model, tokenizer, progress: bool = False) -> dict:
    """{task name: metrics} for every loaded ICL task."""
    from .icl import evaluate_icl

    return {t.name: evaluate_icl(model, tokenizer, t.examples, t.config, t.demos, t.config.path, t.config.demos,
                                 progress=progress)["metrics"]
            for t in tasks}
