"""The prompt library: named prompt templates shipped with hfkit, listed by `hfkit prompts`, used by
`hfkit generate --prompt-template NAME`, `hfkit eval icl --prompt-template NAME`, `hfkit rag query`
and recipes (`eval.icl` entries take a `prompt_template`).

A template is a Jinja prompt over a record's fields (`question`, and whatever else it names) plus how
demonstrations are added: how many (`shots`), chosen how (`select`: random, tfidf, embedding),
with chain-of-thought (`cot`: reason first, then "The answer is X") and self-consistency (N sampled
reasoning paths, majority vote). A YAML file with the same keys is a template too.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from ..errors import HfkitError
from .fewshot import DEFAULT_TEMPLATE, SELECT

PERSONA = "a patient Python teacher"
INSTRUCTION = ("Below is an instruction that describes a task. Write a response that appropriately completes "
               "the request.\n\n### Instruction:\n{{ question }}\n\n### Response:\n")
RAG = ("Answer the question with the sources below; cite them by number.\n\n"
       "{% for c in chunks %}[{{ loop.index }}] {{ c.source }}: {{ c.text }}\n\n{% endfor %}"
       "Question: {{ question }}\nAnswer:")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    description: str
    template: str = DEFAULT_TEMPLATE  # Jinja over the record
    shots: int = 0  # demonstrations in front (from --demos, or the task file minus the example)
    select: str = "random"  # how they are chosen: random | tfidf | embedding (MiniLM)
    cot: bool = False  # chain-of-thought: "Let's think step by step." and "The answer is X" extraction
    self_consistency: int = 0  # sampled reasoning paths, majority vote (0: greedy)
    demos: Optional[str] = None  # where its demonstrations come from, when not --demos (e.g. Auto-CoT's file)

    def fields_needed(self) -> set[str]:
        """The record fields the template reads (Jinja's undeclared variables)."""
        from ..data.templates import template_fields

        return template_fields(self.template) - {"chunks"}

    def render(self, record: dict, where: str = "record") -> str:
        """The prompt for one record, without demonstrations; one line naming a missing field."""
        from .fewshot import render

        return render(self.template, record, where)

    def icl_settings(self) -> dict:
        return {"template": self.template, "shots": self.shots, "select": self.select, "cot": self.cot,
                "self_consistency": self.self_consistency}


LIBRARY = {t.name: t for t in [
    PromptTemplate("zero_shot", "the question alone"),
    PromptTemplate("few_shot", "3 demonstrations drawn at random (seeded, as lm-evaluation-harness)", shots=3),
    PromptTemplate("few_shot_tfidf", "3 demonstrations most similar to the question by TF-IDF cosine", shots=3,
                   select="tfidf"),
    PromptTemplate("few_shot_embedding", "3 demonstrations most similar to the question by MiniLM embedding",
                   shots=3, select="embedding"),
    PromptTemplate("chain_of_thought", "zero-shot chain-of-thought: \"Let's think step by step.\", then "
                                       "\"The answer is X\"", cot=True),
    PromptTemplate("few_shot_cot", "3 demonstrations with their worked rationale (a 'rationale' field)", shots=3,
                   cot=True),
    PromptTemplate("self_consistency", "chain-of-thought, 5 sampled reasoning paths, majority answer", cot=True,
                   self_consistency=5),
    PromptTemplate("auto_cot", "Auto-CoT: one demonstration per k-means cluster of the questions, its rationale "
                               "generated (`hfkit prompts autocot` writes them; pass them with --demos)", shots=4,
                   cot=True),
    PromptTemplate("persona", "a persona (the record's 'persona' field, default: a patient Python teacher) "
                              "answers", template=f"You are {{{{ persona | default('{PERSONA}') }}}}. Answer the "
                                                  f"question.\n\nQuestion: {{{{ question }}}}\nAnswer:"),
    PromptTemplate("instruction", "an Alpaca-style instruction and response", template=INSTRUCTION),
    PromptTemplate("rag", "retrieved passages with their sources, then the question (`hfkit rag query`)",
                   template=RAG),
]}


def get_template(name: str, what: str = "--prompt-template") -> PromptTemplate:
    """A library template by name, or a YAML file with a template's keys."""
    if name in LIBRARY:
        return LIBRARY[name]
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        import typing

        import yaml

        from ..schema import Mismatch, coerce, type_name, yaml_load

        try:
            tree = yaml_load(p.read_text(encoding="utf-8"), yaml.SafeLoader)
        except yaml.YAMLError as e:
            raise HfkitError(f"{p}: invalid YAML ({str(e).splitlines()[0]})") from None
        except UnicodeDecodeError:
            raise HfkitError(f"{p}: not UTF-8 text") from None
        known = {f.name for f in fields(PromptTemplate)}
        if not isinstance(tree, dict) or "template" not in tree:
            raise HfkitError(f"{p}: a prompt template is a mapping with at least 'template'")
        unknown = sorted(set(map(str, tree)) - known)
        if unknown:
            raise HfkitError(f"{p}: unknown key '{unknown[0]}' (keys: {', '.join(sorted(known))})")
        hints = typing.get_type_hints(PromptTemplate)
        for k, v in tree.items():
            try:
                tree[k] = coerce(v, hints[k], k)
            except Mismatch:
                raise HfkitError(f"{p}: key '{k}' expects {type_name(hints[k])}, got {type(v).__name__} {v!r}") from None
        for k in ("shots", "self_consistency"):
            if tree.get(k, 0) < 0:
                raise HfkitError(f"{p}: key '{k}' must be >= 0, got {tree[k]}")
        tree.setdefault("name", p.stem)
        tree.setdefault("description", f"from {p}")
        t = PromptTemplate(**tree)
        if t.select not in SELECT:
            raise HfkitError(f"{p}: select '{t.select}': expected one of {', '.join(SELECT)}")
        return t
    raise HfkitError(f"{what} '{name}': no such template (library: {', '.join(LIBRARY)}; or a .yaml file)")
