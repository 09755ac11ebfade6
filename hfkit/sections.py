"""A recipe as data: the `Recipe` dataclass of sections, each section's class owned by the layer it
configures (model, tokenizer, data, adapter, generate, eval; `training` is TrainingArguments' fields;
the task's own section is its task's config). Below the tasks, which read it; `hfkit.recipe` reads
and checks recipe files into it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from .adapters import AdapterConfig
from .data.corpus import DataConfig
from .data.tokenizer import TokenizerConfig
from .evaluation.during_training import EvalConfig
from .inference.generation import GenerateConfig
from .models import ModelConfig

SECTIONS: dict[str, type | None] = {"model": ModelConfig, "tokenizer": TokenizerConfig, "data": DataConfig,
                                    "adapter": AdapterConfig, "training": None, "generate": GenerateConfig,
                                    "eval": EvalConfig}


@dataclass
class Recipe:
    task: str  # a name in hfkit.tasks.TASKS (the recipe reader fills in the default)
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    training: dict = field(default_factory=dict)  # transformers.TrainingArguments fields
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    task_config: Any = None  # the task's own section (`sft:`, `mlm:`), written under the task's section name
    task_section: str | None = field(default=None, repr=False, compare=False)  # that name (the task's `section`)

    @property
    def seed(self) -> int:
        from .training.arguments import default

        return self.training.get("seed", default("seed"))

    def to_dict(self) -> dict:
        """The resolved recipe as plain data, loadable again with `load_recipe`."""
        out: dict = {"task": self.task, "description": self.description}
        for name in ("model", "tokenizer", "data"):
            out[name] = plain(getattr(self, name))
        if self.task_section:
            out[self.task_section] = plain(self.task_config)
        for name in ("adapter", "training", "generate", "eval"):
            out[name] = plain(getattr(self, name))
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def plain(obj: Any) -> Any:
    """Dataclasses as dicts (recursively); a class's EXTRA_FIELD keys go back to the top level."""
    if dataclasses.is_dataclass(obj):
        out = {}
        extra_field = getattr(type(obj), "EXTRA_FIELD", None)
        for f in dataclasses.fields(obj):
            value = plain(getattr(obj, f.name))
            if f.name == extra_field:
                out.update(value)
            else:
                out[f.name] = value
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj
