"""Prompting without training: the prompt library (named templates), few-shot demonstrations chosen
at random, by TF-IDF or by MiniLM embedding, chain-of-thought and self-consistency, Auto-CoT, and
retrieval-augmented generation (hfkit.prompting.rag)."""
from __future__ import annotations

from .fewshot import PromptSettings, build_prompts, records_as_examples
from .library import LIBRARY, PromptTemplate, get_template

__all__ = ["LIBRARY", "PromptTemplate", "get_template", "library_prompts"]


def library_prompts(template: PromptTemplate, records: list[dict], demos: list[dict] | None = None,
                    seed: int = 1234, where: str = "input") -> list[str]:
    """The prompt of every record with the template's demonstrations (from `demos`)."""
    from ..errors import HfkitError

    if template.shots and not demos:
        raise HfkitError(f"prompt template '{template.name}' puts {template.shots} demonstrations in front: give "
                         f"--demos FILE (JSONL: question, answer{', rationale' if template.cot else ''})")
    settings = PromptSettings(template=template.template, shots=template.shots if demos else 0,
                              select=template.select, seed=seed, cot=template.cot)
    return build_prompts(records_as_examples(records), records_as_examples(demos) if demos else None, settings,
                         where, "--demos")
