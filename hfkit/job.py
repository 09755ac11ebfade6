"""A run's job: everything it trains with, built from the recipe through its task and checked before
anything is written (hfkit.run drives it).

recipe -> (output folder planned; every setting checked on the meta device) -> corpus/records ->
tokenizer -> model -> adapter -> task.prepare -> TrainingArguments -> the task's trainer. Also what
the job knows of its folder (a finished run asked to resume) and the held-out scores and samples
it reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HfkitError
from .recipe import Recipe, load_recipe
from .tasks import Prepared, Task, TaskData, TaskModel, get_task


def recipe_tokenizer(recipe: Recipe, task: TaskData, data: Any):
    """The recipe's tokenizer: `tokenizer.path`, else the checkpoint's own (`model.name_or_path`),
    else one trained here on the training split."""
    from .data.tokenizer import load_tokenizer, train_tokenizer

    tk = recipe.tokenizer
    path = tk.path or recipe.model.name_or_path
    if path:
        tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    else:
        tokenizer = train_tokenizer(task.tokenizer_texts(data), tk.kind, tk.vocab_size, tk.min_frequency, tk.lowercase,
                                    task.special_tokens(recipe))
    task.check_tokenizer(tokenizer, path or "trained here")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def recipe_model(recipe: Recipe, task: TaskModel, tokenizer, data: Any = None):
    """The task's Auto class, built from the recipe's preset or loaded from `model.name_or_path`, with
    the config fields the task's head needs (labels read from the data)."""
    import transformers

    from .models import build_model

    return build_model(recipe.model, tokenizer, getattr(transformers, task.model_class(recipe)),
                       task.model_overrides(recipe, data, tokenizer))


def adapt(recipe: Recipe, task: Task, model, tokenizer):
    """Apply the recipe's adapter; check the task's sequences (plus virtual tokens) fit the model."""
    from .adapters import apply_adapter
    from .models import max_positions

    length, key = task.sequence_length(recipe)
    extra = recipe.adapter.virtual_tokens
    limit = max_positions(model.config)
    if limit is not None and length + extra > limit:
        key = f"{key} + adapter.num_virtual_tokens" if extra else key
        raise HfkitError(f"recipe key '{key}'={length + extra} exceeds the model's maximum positions ({limit})")
    if recipe.model.quantization:  # QLoRA: norms in fp32, inputs that carry gradients (peft's preparation)
        from peft import prepare_model_for_kbit_training

        settings = training_settings(recipe)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(settings.gradient_checkpointing),
            gradient_checkpointing_kwargs=settings.gradient_checkpointing_kwargs)
    return apply_adapter(model, recipe.adapter, tokenizer, task.peft_task_type, recipe.training.get("max_steps"))


def prepare_data(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None) -> tuple[Any, Prepared]:
    """The data steps of a run without a model or training: returns (tokenizer, Prepared with its report)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    task = get_task(recipe.task)
    data = task.load(recipe, recipe.seed)
    tokenizer = recipe_tokenizer(recipe, task, data)
    task.setup(recipe, tokenizer, None, data)
    return tokenizer, task.prepare(recipe, tokenizer, None, data, recipe.seed)


@dataclass
class Job:
    """Everything a run trains with, built and checked before anything is written."""
    recipe: Recipe
    task: Task
    tokenizer: Any
    model: Any
    counts: dict  # trainable / total parameters
    prepared: Prepared
    args: Any  # TrainingArguments
    icl: list  # loaded eval.icl tasks
    bf16_auto: dict | None = None  # how `bf16: auto` was decided (and what was measured), when it was

    def make_trainer(self, callbacks: list):
        """The task's trainer over the prepared data, with hfkit's callbacks."""
        trainer = self.task.make_trainer(self.model, self.args, self.prepared, self.tokenizer, callbacks)
        trainer.perplexity_from_loss = self.prepared.loss_is_token_nll
        trainer.chars_per_token = self.prepared.chars_per_token
        return trainer

    def flops_setting(self) -> tuple[int, float]:
        """(sequence length, frozen reference forwards per token): what the FLOP count needs."""
        return self.task.sequence_length(self.recipe)[0], self.task.reference_forwards(self.recipe)

    def overview(self, n_params: int) -> list[tuple[str, Any]]:
        """The rows of the table printed when the run starts."""
        c, model, tokenizer = self.counts, self.model, self.tokenizer
        return [
            ("model", f"{type(model).__name__} ({n_params / 1e6:.2f}M parameters)"),
            ("tokenizer", f"{type(tokenizer).__name__}, {len(tokenizer)} tokens"),
            ("precision", precision(self.recipe, self.args, self.bf16_auto)),
            ("trainable parameters", f"{c['trainable']:,} of {c['total']:,} ({c['trainable_percent']:.3g}%, "
                                     f"{c['method']})"),
            *self.prepared.overview,
            *((f"source {k}", f"{v['share']:.1%} of mixture, {v['effective_epochs']:.2f} epochs")
              for k, v in self.prepared.stats.get("mixture", {}).items()),
        ]

    def held_out_scores(self, when: str, progress: bool) -> dict:
        """Held-out scores besides validation loss: generations (tasks that generate) and eval.icl."""
        from .evaluation.during_training import run_icl_tasks

        out = {}
        if self.prepared.generation_eval:
            out[f"generation_{when}"] = self.prepared.generation_eval(self.model, progress)
        if self.icl:
            out[f"icl_{when}"] = run_icl_tasks(self.icl, self.model, self.tokenizer, progress=progress)
        return out

    def samples(self) -> list[dict]:
        """The recipe's `generate:` prompts, continued by the trained model."""
        from .inference.generation import generate

        g = self.recipe.generate
        if not g.prompts:
            return []
        outs = generate(self.model, self.tokenizer, g.prompts, seed=self.args.seed, **g.kwargs(),
                        **self.prepared.generate_kwargs)
        return [{"prompt": p, "outputs": o} for p, o in zip(g.prompts, outs)]

    def first_metrics(self, parameters: dict) -> dict:
        """What metrics.json says of the run before it trains."""
        return {"precision": precision(self.recipe, self.args, self.bf16_auto),
                **({"bf16_auto": self.bf16_auto} if self.bf16_auto else {}), **parameters, "world_size": self.args.world_size,
                "data": self.prepared.stats}

    def after_training(self, trainer, folder: Path, main: bool, progress: bool) -> dict:
        """The task's summary of the training logs, the held-out scores after training (main process),
        the model saved (safetensors weights, config, tokenizer with its chat template; recipe.yaml was
        written when training began), and the recipe's `generate:` samples."""
        from .outputs import drop_library_card

        out = {}
        if summary := self.task.training_summary(trainer.state.log_history):
            out["training_summary"] = summary
        if main:
            out.update(self.held_out_scores("after", progress))
        trainer.save_model(str(folder))
        drop_library_card(folder)
        if main and (samples := self.samples()):
            out["samples"] = samples
        return out

    def save_recipe(self, folder: Path) -> None:
        from .io import atomic_write_text

        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(folder) / "recipe.yaml", self.recipe.to_yaml())


def assemble(recipe: Recipe, output_dir: str | None = None) -> Job:
    """recipe -> corpus/records -> tokenizer -> model -> adapter -> task.prepare -> TrainingArguments
    (`output_dir`: where the Trainer writes, when not the recipe's own, e.g. a replacement's staging)."""
    from transformers import set_seed

    from .evaluation.during_training import load_icl_tasks
    from .models import max_positions
    from .training.arguments import training_arguments

    set_seed(recipe.seed)
    task = get_task(recipe.task)
    icl = load_icl_tasks(recipe.eval)  # checked before any long work
    data = task.load(recipe, recipe.seed)
    tokenizer = recipe_tokenizer(recipe, task, data)
    model = recipe_model(recipe, task, tokenizer, data)
    limit = max_positions(model.config)
    if limit and (not tokenizer.model_max_length or tokenizer.model_max_length > limit):
        tokenizer.model_max_length = limit  # saved with the run: the model's positions, not "unlimited"
    task.setup(recipe, tokenizer, model, data)
    model, counts = adapt(recipe, task, model, tokenizer)
    prepared = task.prepare(recipe, tokenizer, model, data, recipe.seed)
    prepared.stats["parameters"] = counts
    bf16 = auto_bf16(recipe, task, model)
    args = training_arguments(recipe.training, task.training_defaults(recipe), prepared.validation is not None,
                              output_dir, task.arguments_class(recipe), None if bf16 is None else bf16["use"])
    return Job(recipe, task, tokenizer, model, counts, prepared, args, icl, bf16)


def auto_bf16(recipe: Recipe, task: Task, model) -> dict | None:
    """`bf16: auto` for this run: the GPU's support, or on a CPU with bf16 arithmetic the measured step
    time of this model at the run's batch shape (hfkit.training.precision); None when the recipe
    sets bf16 itself (or fp16)."""
    from .training.precision import decide

    settings = training_settings(recipe)
    if recipe.training.get("bf16", "auto") != "auto" or settings.fp16:
        return None
    seq = task.sequence_length(recipe)[0]
    probe = task.auto_class == "AutoModelForCausalLM" and not getattr(model, "counted", False)
    use, why, measured = decide(model, int(settings.per_device_train_batch_size), int(seq), probe=probe)
    return {"use": use, "why": why, **({"measured": measured} if measured else {})}


def preflight(recipe: Recipe, task: Task | None = None) -> None:
    """Every setting checked before any data is read: TrainingArguments and the optimizer they
    describe, the loggers and DeepSpeed they ask for, the model config (built on the meta device, so
    the architecture's own errors and an unavailable attention implementation show here), the
    adapter on that model, and an explicit checkpoint to resume from."""
    import torch
    import transformers

    from .adapters import apply_adapter
    from .models import auto_class_for, config_for_recipe, with_overrides
    from .schema import one_line
    from .training.arguments import check_training
    from .training.checkpoints import check_resume_path

    task = task or get_task(recipe.task)
    check_training(recipe.training, task.training_defaults(recipe), task.arguments_class(recipe))
    check_streaming(recipe, task)
    check_resume_path(recipe.training.get("resume_from_checkpoint"))
    config = with_overrides(config_for_recipe(recipe.model), task.model_overrides(recipe, None, None))
    kw = {"attn_implementation": recipe.model.attn_implementation} if recipe.model.attn_implementation else {}
    try:
        with torch.device("meta"):
            model = auto_class_for(config, getattr(transformers, task.model_class(recipe))).from_config(config, **kw)
    except (ValueError, ImportError, TypeError, RuntimeError) as e:
        raise HfkitError(f"recipe section 'model' ({type(config).__name__}): {one_line(e)}") from None
    if recipe.adapter.is_peft:
        with torch.device("meta"):
            apply_adapter(model, recipe.adapter, None, task.peft_task_type, recipe.training.get("max_steps"),
                          tokenizer_name=recipe.tokenizer.path or recipe.model.name_or_path)


def check_streaming(recipe: Recipe, task: Task) -> None:
    """A streaming run (hfkit.data.streaming) has no length: it needs `training.max_steps`, a task that
    packs running text, and its stream read in the training process."""
    data = getattr(recipe, "data", None)
    if data is None or not getattr(data, "streaming", False):
        return
    key = next(f"data.sources.{i}.streaming" for i, s in enumerate(data.sources) if getattr(s, "streaming", False))
    if not task.streams or getattr(recipe.task_config, "next_sentence_prediction", False):
        what = "mlm with next_sentence_prediction" if task.streams else f"task '{recipe.task}'"
        raise HfkitError(f"recipe key '{key}': {what} reads its data whole; streaming is for the tasks that "
                         f"pack running text (clm, mlm, t5_span, bart_denoise)")
    settings = training_settings(recipe)
    if settings.max_steps is None or settings.max_steps <= 0:
        raise HfkitError(f"recipe key 'training.max_steps' is required with {key}: a stream has no length, "
                         f"so the run's length is a number of optimizer steps")
    if settings.dataloader_num_workers:
        raise HfkitError(f"recipe key 'training.dataloader_num_workers' must be 0 with {key}: the stream is read, "
                         f"shuffled and packed in the training process (so that it can be resumed exactly)")


def output_plan(recipe: Recipe, check: bool | None = None):
    """How this run may write `training.output_dir` (hfkit.outputs): new, resumed, or replaced.
    `check=False` (the non-zero ranks of a launched run, the default there): only where to write;
    rank 0 checks."""
    from .io import is_main_rank
    from .outputs import OutputPlan, check_unlocked, plan_output, read_marker, staging_path

    if check is None:
        check = is_main_rank()

    t = recipe.training
    final = Path(t["output_dir"])
    resume, overwrite = bool(t.get("resume_from_checkpoint")), t.get("overwrite_output_dir", False)
    what = "recipe key 'training.output_dir'"
    if not check:
        mode = "replace" if overwrite else "resume" if resume else "new"
        return OutputPlan(final, "train", mode, existed=final.exists())
    inputs = {"base model": recipe.model.name_or_path, "tokenizer": recipe.tokenizer.path,
              **{f"data source {i}": getattr(s, "path", None) for i, s in enumerate(recipe.data.sources)}}
    if resume and overwrite and read_marker(staging_path(final)) is not None:
        # a replacement interrupted earlier: resume it where it was built
        check_unlocked(final, what)
        return OutputPlan(final, "train", "replace", existed=True, info={"resume_staging": True})
    return plan_output(final, "train", what, resume=resume, overwrite=overwrite, inputs=inputs,
                       replace_hint="overwrite_output_dir=true",
                       resume_hint="continue it with resume_from_checkpoint=auto")


def _steps_done(folder: Path, marker: dict) -> tuple[int | None, float | None]:
    """(global step, epoch) a finished run ended at: from its marker, else its log's last line."""
    if "global_step" in marker:
        return marker["global_step"], marker.get("epoch")
    import json

    try:
        lines = (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()
        last = next(json.loads(x) for x in reversed(lines) if x.strip() and '"step"' in x)
        return int(last["step"]), last.get("epoch")
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        return None, None


def finished_run(plan, recipe: Recipe) -> dict | None:
    """`resume_from_checkpoint` on a run that finished: a no-op that says so when the recipe asks for
    no more steps (or epochs) than were trained, returning the run's metrics; None (train on) when
    it asks for more and a checkpoint to continue from exists; else refused in one line."""
    import json
    import sys

    from .io import is_main_rank
    from .outputs import read_marker
    from .training.checkpoints import latest_complete_checkpoint

    final = plan.final
    marker = read_marker(final) or {}
    if plan.mode != "resume" or not is_main_rank() or marker.get("state") != "finished":
        return None  # interrupted or still running: resumed as asked
    settings = training_settings(recipe)
    step, epoch = _steps_done(final, marker)
    max_steps, epochs = settings.max_steps, settings.num_train_epochs
    if marker.get("counted"):
        more = False
    elif max_steps and max_steps > 0:
        more = step is not None and max_steps > step
    else:
        more = epoch is not None and epochs > epoch + 1e-6
    asked = f"max_steps={max_steps}" if max_steps and max_steps > 0 else f"num_train_epochs={epochs:g}"
    done = (f"{step} steps" if step is not None else "training") + ("" if marker.get("counted") else f", {asked} asked")
    if not more:
        print(f"hfkit: note: '{final}' is a finished run ({done}): nothing to resume, the run is left as it is; raise "
              f"training.max_steps to train it further, or replace it with overwrite_output_dir=true", file=sys.stderr)
        try:
            return json.loads((final / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
    if latest_complete_checkpoint(final) is None:
        raise HfkitError(f"recipe key 'training.resume_from_checkpoint': '{final}' is a finished run ({done}) with no "
                         f"checkpoint to continue from: replace it with overwrite_output_dir=true, or choose another "
                         f"folder")
    return None


def base_model_info(recipe: Recipe) -> dict | None:
    """What the run started from, for the model card: a local folder, or a Hub id (and revision)."""
    path = recipe.model.name_or_path
    if not path or recipe.model.random_init:  # a random twin only borrowed the checkpoint's config
        return None
    local = Path(path).exists()
    return {"name_or_path": str(Path(path).resolve()) if local else path, "local": local,
            "revision": recipe.model.revision}


def training_settings(recipe: Recipe):
    """The run's `training` settings, typed, with every default resolved (TrainingArguments' own or its
    task's arguments class's, hfkit's, the task's, the recipe's), without building the arguments."""
    from .training.arguments import resolved

    task = get_task(recipe.task)
    return resolved(recipe.training, task.training_defaults(recipe), task.arguments_class(recipe))


def precision(recipe: Recipe, args, bf16_auto: dict | None = None) -> str:
    """What the run computes in, and who chose it (the recipe, or `bf16: auto` and why)."""
    from .training.arguments import default
    from .training.precision import resolve_bf16

    what = "bf16 autocast" if args.bf16 else "fp16 autocast" if args.fp16 else "fp32"
    if recipe.training.get("bf16", default("bf16")) == "auto" and not args.fp16:
        return f"{what} (bf16: auto; {bf16_auto['why'] if bf16_auto else resolve_bf16()[1]})"
    return what
