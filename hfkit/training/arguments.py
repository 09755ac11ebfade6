"""The recipe's `training` section: `transformers.TrainingArguments` fields under their own names
(built as `Seq2SeqTrainingArguments`, which adds the generation fields encoder-decoder runs may use),
plus `overwrite_output_dir` (the name TrainingArguments used until transformers 5 dropped it; hfkit
keeps it: replace the earlier run in output_dir)."""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os

from ..errors import HfkitError
from ..schema import check_fields, one_line

# hfkit's defaults where they differ from TrainingArguments' own (those are read from the class, never
# repeated here); a task adds its own, and the recipe's `training` section wins.
TRAINING_DEFAULTS = {
    "report_to": "none",
    "logging_steps": 10,
    "eval_strategy": "steps",
    "eval_steps": 100,
    "save_total_limit": 2,
    "ddp_find_unused_parameters": False,  # every parameter takes part in the loss; True costs a graph walk per step
    "dataloader_pin_memory": False,  # set per run: only useful (and warning-free) with a GPU
    "include_num_input_tokens_seen": "non_padding",  # tokens trained on, for tokens/s in every run's metrics
    "bf16": "auto",  # bf16 autocast where the GPU or CPU computes bf16 natively (resolve_bf16), else fp32
}
# TrainingArguments fields transformers renamed or removed, and their names now ("did you mean")
RENAMED = {"evaluation_strategy": "eval_strategy", "per_gpu_train_batch_size": "per_device_train_batch_size",
           "per_gpu_eval_batch_size": "per_device_eval_batch_size", "no_cuda": "use_cpu", "use_mps_device": "use_cpu",
           "push_to_hub_token": "hub_token", "push_to_hub_model_id": "hub_model_id",
           "push_to_hub_organization": "hub_model_id", "fp16_backend": "half_precision_backend"}
# keys of the training section that hfkit handles itself (not passed to TrainingArguments)
HFKIT_KEYS = {"overwrite_output_dir": bool}
# values that must never be written anywhere (recipe.yaml, training_args.bin, logs)
SECRET_KEYS = ("hub_token",)


@functools.lru_cache(maxsize=1)
def training_keys() -> frozenset[str]:
    from transformers import Seq2SeqTrainingArguments

    return frozenset(f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init) | frozenset(HFKIT_KEYS)


def class_defaults(args_class: type | None = None) -> dict:
    """Every init field of the arguments class (default Seq2SeqTrainingArguments) with its own default."""
    if args_class is None:
        from transformers import Seq2SeqTrainingArguments as args_class
    out = {}
    for f in dataclasses.fields(args_class):
        if f.init:
            out[f.name] = (f.default if f.default is not dataclasses.MISSING else
                           f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return out


def default(name: str):
    """TrainingArguments' default of one field, as hfkit runs it (hfkit's own where it has one)."""
    return TRAINING_DEFAULTS[name] if name in TRAINING_DEFAULTS else class_defaults()[name]


def resolved(training: dict, task_defaults: dict, args_class: type | None = None):
    """The run's training settings, typed and read without building the arguments (which would set up
    devices): the class's own defaults, hfkit's, the task's, the recipe's, in that order of precedence."""
    import types

    return types.SimpleNamespace(**{**class_defaults(args_class), **TRAINING_DEFAULTS, **task_defaults,
                                    **{k: v for k, v in training.items() if k not in HFKIT_KEYS}})


def validate_training_args(training: dict) -> dict:
    """Check `training` keys and value types against `transformers.TrainingArguments` (and the
    generation fields of its Seq2Seq subclass)."""
    from transformers import Seq2SeqTrainingArguments as TrainingArguments

    own = {k: training[k] for k in HFKIT_KEYS if k in training}
    for k, v in own.items():
        if not isinstance(v, HFKIT_KEYS[k]):
            raise HfkitError(f"recipe key 'training.{k}' expects {HFKIT_KEYS[k].__name__}, got {type(v).__name__} {v!r}")
    auto = {"bf16": "auto"} if training.get("bf16") == "auto" else {}  # hfkit's value for TrainingArguments.bf16
    out = check_fields(TrainingArguments, {k: v for k, v in training.items() if k not in HFKIT_KEYS and k not in auto},
                       "training", renamed=RENAMED)
    out.update(auto)
    if not out.get("output_dir"):
        raise HfkitError("recipe key 'training.output_dir' is required (set it, or pass output_dir=PATH)")
    return {**out, **own}


def take_secrets(training: dict) -> list[str]:
    """Remove secret values (`hub_token`) from the section, so that nothing writes them anywhere; the
    token is kept in this process's environment (HF_TOKEN), where huggingface_hub reads it."""
    taken = []
    for k in SECRET_KEYS:
        value = training.pop(k, None)
        if value:
            os.environ["HF_TOKEN"] = str(value)
            taken.append(k)
    return taken


def training_arguments(training: dict, task_defaults: dict, has_validation: bool, output_dir: str | None = None,
                       args_class: type | None = None, bf16_auto: bool | None = None):
    """TrainingArguments from hfkit's defaults, the task's and the recipe's (in that order of precedence);
    `args_class`: the subclass the task's trainer takes (a TRL config), default Seq2SeqTrainingArguments."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    TrainingArguments = args_class or Seq2SeqTrainingArguments
    # use_cpu on a machine without GPUs: also what makes torchrun/accelerate start a real multi-process
    # (gloo) run there instead of N independent single-process runs
    kw = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available(),
          "use_cpu": not torch.cuda.is_available(), **task_defaults,
          **{k: v for k, v in training.items() if k not in HFKIT_KEYS}}
    if kw.get("bf16") == "auto":  # `bf16_auto`: the run's measured choice (hfkit.training.precision)
        from .precision import resolve_bf16

        kw["bf16"] = not kw.get("fp16") and (resolve_bf16()[0] if bf16_auto is None else bf16_auto)
    if output_dir is not None:
        kw["output_dir"] = output_dir
    if not kw.get("run_name") and training.get("output_dir"):  # trackio, wandb, mlflow: the run's folder name
        kw["run_name"] = os.path.basename(os.path.normpath(training["output_dir"]))
    if not has_validation and "eval_strategy" not in training:
        kw["eval_strategy"] = "no"
    kw.setdefault("eval_on_start", has_validation)  # the "before" figure, measured inside train()
    try:
        return TrainingArguments(**kw)
    except (ValueError, TypeError, ImportError) as e:
        raise HfkitError(f"recipe section 'training': {one_line(e)}") from None


def _check_best_model(kw: dict, given: dict) -> None:
    """`load_best_model_at_end` keeps the checkpoint of the best evaluation: checkpoints must be saved
    at evaluation steps. Said in hfkit's words, with the fix, before transformers says it without."""
    if not kw.get("load_best_model_at_end"):
        return
    save, ev = str(kw.get("save_strategy", "steps")), str(kw.get("eval_strategy", "no"))
    fix = "add load_best_model_at_end=false"
    if save == "no":
        raise HfkitError(f"recipe key 'training.save_strategy'=no: the recipe keeps the best checkpoint "
                         f"(training.load_best_model_at_end=true), which needs checkpoints: {fix}")
    if save != "best" and save != ev:
        raise HfkitError(f"recipe keys 'training.save_strategy'={save} and 'training.eval_strategy'={ev} differ: "
                         f"keeping the best checkpoint (load_best_model_at_end=true) needs them equal: set both, or "
                         f"{fix}")
    if save == ev == "steps":
        s_steps, e_steps = kw.get("save_steps", 500), kw.get("eval_steps") or kw.get("logging_steps", 500)
        if e_steps and s_steps and s_steps % e_steps and not (s_steps < 1 and e_steps < 1):
            s_steps, e_steps = (int(x) if float(x).is_integer() else x for x in (s_steps, e_steps))
            raise HfkitError(f"recipe key 'training.save_steps'={s_steps} is not a multiple of eval_steps={e_steps}: "
                             f"keeping the best checkpoint (load_best_model_at_end=true) needs a checkpoint at an "
                             f"evaluation: make it a multiple, or {fix}")


def check_training(training: dict, task_defaults: dict, args_class: type | None = None) -> None:
    """Everything about the training section that would otherwise fail after the data is prepared:
    TrainingArguments' own checks, the optimizer they describe, sizes that must be positive, and the
    loggers and DeepSpeed they ask for."""
    import torch
    from transformers import Trainer

    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if key in training and training[key] < 1:
            raise HfkitError(f"recipe key 'training.{key}' must be >= 1, got {training[key]}")
    if training.get("max_steps", -1) == 0 or training.get("max_steps", -1) < -1:
        raise HfkitError(f"recipe key 'training.max_steps' must be > 0 (or -1: train num_train_epochs), "
                         f"got {training['max_steps']}")
    if training.get("max_steps", default("max_steps")) == -1 and training.get("num_train_epochs", default("num_train_epochs")) <= 0:
        raise HfkitError(f"recipe key 'training.num_train_epochs' must be > 0, got {training['num_train_epochs']}")
    for key in ("eval_steps", "save_steps"):
        if key in training and training[key] is not None and training[key] <= 0:
            raise HfkitError(f"recipe key 'training.{key}' must be > 0, got {training[key]}")
    _check_best_model({**TRAINING_DEFAULTS, **task_defaults, **training}, training)
    report_to = training.get("report_to", TRAINING_DEFAULTS["report_to"])
    if report_to not in ("none", "all", None):
        from transformers.integrations import get_available_reporting_integrations
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        for name in [report_to] if isinstance(report_to, str) else report_to:
            if name == "none":
                continue
            if name not in INTEGRATION_TO_CALLBACK:
                raise HfkitError(f"recipe key 'training.report_to': unknown logger '{name}' "
                                 f"(one of: {', '.join(sorted(INTEGRATION_TO_CALLBACK))})")
            if name not in get_available_reporting_integrations():
                raise HfkitError(f"recipe key 'training.report_to': '{name}' is not installed here "
                                 f"(pip install {name.replace('_', '-')}), or remove it")
    if training.get("push_to_hub"):  # Trainer would find out when it first pushes, after the data work
        from huggingface_hub import get_token

        from ..hub import is_offline

        if is_offline():
            raise HfkitError("recipe key 'training.push_to_hub'=true needs the Hub, but HF_HUB_OFFLINE=1: train "
                             "without it and publish the finished run with `hfkit push RUN --repo-id OWNER/NAME`")
        if not get_token():
            raise HfkitError("recipe key 'training.push_to_hub'=true needs a Hugging Face token: set HF_TOKEN or run "
                             "`hf auth login` (never put it in the recipe)")
    if training.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise HfkitError("recipe key 'training.deepspeed' needs the deepspeed package, which is not installed "
                         "(pip install deepspeed, on a machine with CUDA)")
    args = training_arguments(training, task_defaults, has_validation=True, args_class=args_class)
    opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    try:
        opt_cls([torch.nn.Parameter(torch.zeros(1))], **opt_kwargs)
    except (ValueError, TypeError, ImportError, RuntimeError) as e:
        raise HfkitError(f"recipe section 'training' (optimizer {opt_cls.__name__}): {one_line(e)}") from None
