"""The recipe's `training` section: `transformers.TrainingArguments` fields under their own names."""
from __future__ import annotations

import dataclasses
import functools

from ..errors import HfkitError
from ..schema import check_fields, one_line

# hfkit's defaults for TrainingArguments; a task adds its own, and the recipe's `training` section wins.
TRAINING_DEFAULTS = {
    "report_to": "none",
    "logging_steps": 10,
    "eval_strategy": "steps",
    "eval_steps": 100,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": 2,
    "seed": 42,
    "ddp_find_unused_parameters": False,  # every parameter takes part in the loss; True costs a graph walk per step
    "dataloader_pin_memory": False,  # set per run: only useful (and warning-free) with a GPU
}


@functools.lru_cache(maxsize=1)
def training_keys() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


def validate_training_args(training: dict) -> dict:
    """Check `training` keys and value types against `transformers.TrainingArguments`."""
    from transformers import TrainingArguments

    out = check_fields(TrainingArguments, training, "training")
    if not out.get("output_dir"):
        raise HfkitError("recipe key 'training.output_dir' is required (set it, or pass output_dir=PATH)")
    return out


def training_arguments(training: dict, task_defaults: dict, has_validation: bool):
    """TrainingArguments from hfkit's defaults, the task's and the recipe's (in that order of precedence)."""
    import torch
    from transformers import TrainingArguments

    # use_cpu on a machine without GPUs: also what makes torchrun/accelerate start a real multi-process
    # (gloo) run there instead of N independent single-process runs
    kw = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available(),
          "use_cpu": not torch.cuda.is_available(), **task_defaults, **training}
    if not has_validation and "eval_strategy" not in training:
        kw["eval_strategy"] = "no"
    kw.setdefault("eval_on_start", has_validation)  # the "before" figure, measured inside train()
    try:
        return TrainingArguments(**kw)
    except (ValueError, TypeError) as e:
        raise HfkitError(f"recipe section 'training': {one_line(e)}") from None
