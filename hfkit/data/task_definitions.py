"""Task definitions in the Natural Instructions style (Mishra et al. 2022; Wang et al. 2022,
Super-NaturalInstructions): a task is described by a title, a definition, emphasis & caution, things
to avoid, positive and negative examples each with the reason, and a short prompt. A model tuned on
many such tasks is asked to do a new one from its definition alone.

A definition is a YAML/JSON file or a mapping, with hfkit's keys (`title`, `definition`, `emphasis`,
`avoid`, `prompt`, `positive_examples`, `negative_examples`: [{input, output, reason}]) or the keys of
the Natural Instructions task files themselves (v1: "Title", "Prompt", "Definition", "Emphasis &
Caution", "Things to Avoid", "Examples": {"Positive Examples", "Negative Examples"}; v2 /
Super-NaturalInstructions: "Definition": [..], "Positive Examples", "Negative Examples", each example
with "input", "output", "explanation"/"reason").

`definition_template(defn, prompt, positives, negatives)` is a Jinja prompt: the definition rendered as
Tk-Instruct encodes it (definition, then "Positive Example 1 -" blocks with input, output and
explanation, then "Negative Example ..." blocks), then "Now complete the following example -",
"Input: " + the record's own prompt, "Output: ". SFT templates (`sft.templates[].definition`) and
`eval icl` (`definition`) take it, with the number of positive and negative examples shown.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HfkitError


@dataclass
class DefinitionExample:
    input: str
    output: str
    reason: str = ""


@dataclass
class TaskDefinition:
    definition: str
    title: str = ""
    emphasis: str = ""  # "Emphasis & Caution"
    avoid: str = ""  # "Things to Avoid"
    prompt: str = ""  # the short instruction ("Prompt" in Natural Instructions v1)
    positive_examples: list[DefinitionExample] = field(default_factory=list)
    negative_examples: list[DefinitionExample] = field(default_factory=list)

    def render(self, positives: int = 2, negatives: int = 0, explanations: bool = True) -> str:
        """The definition and its first `positives` / `negatives` examples, as a model reads them."""
        for what, n, have in (("positive", positives, self.positive_examples), ("negative", negatives,
                                                                                 self.negative_examples)):
            if n < 0 or n > len(have):
                raise HfkitError(f"task definition{f' {self.title!r}' if self.title else ''}: {n} {what} examples "
                                 f"asked for, it has {len(have)}")
        parts = []
        if self.title:
            parts.append(f"Title: {self.title.strip()}")
        if self.prompt:
            parts.append(f"Prompt: {self.prompt.strip()}")
        parts.append(f"Definition: {self.definition.strip()}")
        if self.emphasis:
            parts.append(f"Emphasis & Caution: {self.emphasis.strip()}")
        if self.avoid:
            parts.append(f"Things to Avoid: {self.avoid.strip()}")
        text = "\n".join(parts) + "\n\n"
        for kind, examples in (("Positive", self.positive_examples[:positives]),
                               ("Negative", self.negative_examples[:negatives])):
            for i, ex in enumerate(examples, 1):
                text += f"{kind} Example {i} -\nInput: {ex.input.strip()}\nOutput: {ex.output.strip()}\n"
                if explanations and ex.reason:
                    text += f"Explanation: {ex.reason.strip()}\n"
                text += "\n"
        return text


_NI = {"Title": "title", "Prompt": "prompt", "Definition": "definition", "Emphasis & Caution": "emphasis",
       "Things to Avoid": "avoid", "Positive Examples": "positive_examples", "Negative Examples": "negative_examples"}
_KEYS = {"title", "definition", "emphasis", "avoid", "prompt", "positive_examples", "negative_examples"}


def _text(value: Any, where: str) -> str:
    if isinstance(value, list):  # Super-NaturalInstructions keeps a definition as a list of strings
        value = "\n".join(str(v) for v in value)
    if value is None or value == "-":
        return ""
    if not isinstance(value, str):
        raise HfkitError(f"{where}: expected text, got {type(value).__name__}")
    return value


def _examples(value: Any, where: str) -> list[DefinitionExample]:
    if value in (None, "-", ""):
        return []
    if not isinstance(value, list):
        raise HfkitError(f"{where}: expected a list of {{input, output, reason}}")
    out = []
    for i, ex in enumerate(value):
        if not isinstance(ex, dict) or "input" not in ex or "output" not in ex:
            raise HfkitError(f"{where}.{i}: an example needs 'input' and 'output'")
        output = ex["output"][0] if isinstance(ex["output"], list) and ex["output"] else ex["output"]
        reason = ex.get("reason", ex.get("explanation", ""))
        out.append(DefinitionExample(_text(ex["input"], f"{where}.{i}.input"), _text(output, f"{where}.{i}.output"),
                                     _text(reason, f"{where}.{i}.reason")))
    return out


def parse_definition(data: Any, where: str) -> TaskDefinition:
    """A definition from a mapping with hfkit's keys or Natural Instructions' (v1 or v2)."""
    if not isinstance(data, dict):
        raise HfkitError(f"{where}: a task definition is a mapping (title, definition, positive_examples, ...)")
    data = dict(data)
    if isinstance(data.get("Examples"), dict):  # Natural Instructions v1 nests the examples
        data.update(data.pop("Examples"))
    mapped = {}
    for key, value in data.items():
        name = _NI.get(key, key)
        if name in _KEYS:
            mapped[name] = value
    if not _text(mapped.get("definition"), f"{where}.definition").strip():
        raise HfkitError(f"{where}: a task definition needs 'definition' (what the task asks, in words)")
    return TaskDefinition(
        definition=_text(mapped["definition"], f"{where}.definition"),
        **{k: _text(mapped.get(k), f"{where}.{k}") for k in ("title", "emphasis", "avoid", "prompt")},
        positive_examples=_examples(mapped.get("positive_examples"), f"{where}.positive_examples"),
        negative_examples=_examples(mapped.get("negative_examples"), f"{where}.negative_examples"))


SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "tasks"  # the built-in tasks' definitions


def shipped_definitions() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def load_definition(source: str | dict, where: str) -> TaskDefinition:
    """A definition from a YAML or JSON file (a Natural Instructions task file too), a shipped one by name
    (`shipped_definitions()`: the built-in tasks'), or an inline mapping."""
    if isinstance(source, dict):
        return parse_definition(source, where)
    if not isinstance(source, str):
        raise HfkitError(f"{where}: a task definition is a file, a shipped name or a mapping")
    path = Path(source)
    if not path.is_file() and (SHIPPED / f"{source}.yaml").is_file() and "/" not in source:
        path = SHIPPED / f"{source}.yaml"
    if not path.is_file():
        raise HfkitError(f"{where}: no such task definition file: {source} (shipped: {', '.join(shipped_definitions())})")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise HfkitError(f"{source}: not a readable task definition ({str(e).splitlines()[0]})") from None
    except Exception as e:  # yaml's errors
        raise HfkitError(f"{source}: not a readable task definition ({str(e).splitlines()[0]})") from None
    return parse_definition(data, str(source))


def definition_template(defn: TaskDefinition, prompt: str, positives: int = 2, negatives: int = 0,
                        explanations: bool = True) -> str:
    """A Jinja prompt: the rendered definition (as text, never interpreted as Jinja), then the record's own
    prompt (`prompt`, Jinja over its fields) as the example to complete."""
    header = defn.render(positives, negatives, explanations)
    if "{% endraw %}" in header:
        raise HfkitError("task definition: its text contains '{% endraw %}', which a prompt template cannot hold")
    return "{% raw %}" + header + "Now complete the following example -\nInput: {% endraw %}" + prompt + \
        "{% raw %}\nOutput: {% endraw %}"
