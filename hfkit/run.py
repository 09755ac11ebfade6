"""`hfkit.train(recipe, overrides)`: one path for every task, in the order a reader expects.

recipe -> (output folder claimed and locked; every setting checked) -> corpus/records -> tokenizer ->
model -> adapter -> task.prepare -> Trainer -> evaluate before/after -> save -> report. The task
(hfkit.tasks) fills in what differs. A run that fails leaves no debris, and an earlier run it was
to replace as it was.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HfkitError
from .recipe import Recipe, load_recipe
from .tasks import Prepared, Task, get_task


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; `code` is the exit status to use."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def recipe_tokenizer(recipe: Recipe, task: Task, data: Any):
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


def recipe_model(recipe: Recipe, task: Task, tokenizer, data: Any = None):
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


def assemble(recipe: Recipe, output_dir: str | None = None) -> Job:
    """recipe -> corpus/records -> tokenizer -> model -> adapter -> task.prepare -> TrainingArguments
    (`output_dir`: where the Trainer writes, when not the recipe's own, e.g. a replacement's staging)."""
    from .evaluation.during_training import load_icl_tasks
    from .models import max_positions
    from .training.arguments import training_arguments

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
    args = training_arguments(recipe.training, task.training_defaults(recipe), prepared.validation is not None,
                              output_dir, task.arguments_class(recipe))
    return Job(recipe, task, tokenizer, model, counts, prepared, args, icl)


def preflight(recipe: Recipe, task: Task) -> None:
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

    check_training(recipe.training, task.training_defaults(recipe), task.arguments_class(recipe))
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


def output_plan(recipe: Recipe, check: bool = True):
    """How this run may write `training.output_dir` (hfkit.outputs): new, resumed, or replaced.
    `check=False` (the non-zero ranks of a launched run): only where to write; rank 0 checks."""
    from .outputs import OutputPlan, check_unlocked, plan_output, read_marker, staging_path

    t = recipe.training
    final = Path(t["output_dir"])
    resume, overwrite = bool(t.get("resume_from_checkpoint")), t.get("overwrite_output_dir", False)
    what = "recipe key 'training.output_dir'"
    if not check:
        mode = "replace" if overwrite else "resume" if resume else "new"
        return OutputPlan(final, "train", mode, existed=final.exists())
    inputs = {"base model": recipe.model.name_or_path, "tokenizer": recipe.tokenizer.path,
              **{f"data source {i}": s.path for i, s in enumerate(recipe.data.sources)}}
    if resume and overwrite and read_marker(staging_path(final)) is not None:
        # a replacement interrupted earlier: resume it where it was built
        check_unlocked(final, what)
        return OutputPlan(final, "train", "replace", existed=True, info={"resume_staging": True})
    return plan_output(final, "train", what, resume=resume, overwrite=overwrite, inputs=inputs,
                       replace_hint="overwrite_output_dir=true",
                       resume_hint="continue it with resume_from_checkpoint=auto")


def train(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """Run a training recipe; returns its metrics (also written to `output_dir/metrics.json`); a sweep
    recipe (hfkit.sweep) runs each of its runs and returns their comparison.

    The output folder is claimed first (hfkit.outputs: new, empty, resumed, or replaced at the end)
    and locked; every setting is checked before any data is read; a failed run leaves no debris and
    an earlier run in the folder as it was."""
    from transformers import set_seed

    from . import outputs
    from .io import is_main_rank

    if not isinstance(recipe, Recipe):
        from .sweep import is_sweep, train_sweep

        if is_sweep(recipe):  # several runs (hfkit.sweep): returns their comparison
            return train_sweep(recipe, overrides, quiet)
        recipe = load_recipe(recipe, overrides)
    task = get_task(recipe.task)
    main_rank = is_main_rank()  # the other ranks of a launched run leave the folder to rank 0
    plan = output_plan(recipe, check=main_rank)
    preflight(recipe, task)
    lock = None
    if main_rank:
        plan.final.mkdir(parents=True, exist_ok=True)
        lock = outputs.FolderLock(plan.final, "recipe key 'training.output_dir'")
    try:
        if main_rank:
            outputs.begin(plan, task=recipe.task, base_model=_base_model_info(recipe))
        set_seed(recipe.seed)
        t0 = time.time()
        job = assemble(recipe, str(plan.workdir))
        metrics = _run(job, plan, t0, quiet)
        if main_rank:
            outputs.finish(plan)
            if plan.mode == "replace":
                from .training.checkpoints import fix_best_checkpoint_paths

                fix_best_checkpoint_paths(plan.final, plan.workdir)
        return metrics
    except BaseException:
        if main_rank:
            outputs.abort(plan)  # a new folder without a checkpoint is only debris; checkpoints stay to resume
        raise
    finally:
        if lock is not None:
            lock.release()


def _base_model_info(recipe: Recipe) -> dict | None:
    """What the run started from, for the model card: a local folder, or a Hub id (and revision)."""
    path = recipe.model.name_or_path
    if not path or recipe.model.random_init:  # a random twin only borrowed the checkpoint's config
        return None
    local = Path(path).exists()
    return {"name_or_path": str(Path(path).resolve()) if local else path, "local": local,
            "revision": recipe.model.revision}


def _run(job: Job, plan, t0: float, quiet: bool) -> dict:
    from .display import plot_loss
    from .io import atomic_write_text, is_main_rank, write_json
    from .training.callbacks import FirstEval, GracefulStop, JsonlLogger
    from .training.checkpoints import model_signature, resolve_resume
    from .training.compute import (ComputeLogger, cost_metrics, flops_per_token, non_embedding_parameters, peak_flops,
                                   run_dtype)

    recipe, args, model, prepared = job.recipe, job.args, job.model, job.prepared
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a complete, readable checkpoint of this very model, or one line saying why there is none
    resume = resolve_resume(args.resume_from_checkpoint, out, model_signature(model))
    if args.resume_from_checkpoint == "auto" and not quiet:
        print(f"resume_from_checkpoint=auto: {'resuming from ' + resume if resume else 'no checkpoint, starting fresh'}")
    log_path = out / "log.jsonl"
    if not resume:
        log_path.unlink(missing_ok=True)
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    stopper, first_eval = GracefulStop(), FirstEval()
    fpt = flops_per_token(model, job.task.sequence_length(recipe)[0], job.task.reference_forwards(recipe))
    # the peak: measured (once, then cached) by the main process only, which reports it
    peak, peak_source = peak_flops(run_dtype(args)) if fpt and is_main_rank() else (None, "")
    peak = peak * args.world_size if peak else None  # every process's device
    trainer = job.task.make_trainer(model, args, prepared, job.tokenizer,
                                    [ComputeLogger(fpt, peak), JsonlLogger(log_path), stopper, first_eval])
    trainer.perplexity_from_loss = prepared.loss_is_token_nll
    trainer.chars_per_token = prepared.chars_per_token
    n_params = sum(p.numel() for p in model.parameters())
    main_process = trainer.is_world_process_zero()  # evaluation by generation, sampling and writing: once
    show = main_process and not quiet
    if show:
        _print_overview(job, n_params)
    metrics: dict = {"precision": _precision(recipe, args), "parameters": n_params,
                     "non_embedding_parameters": non_embedding_parameters(model), "world_size": args.world_size,
                     "data": prepared.stats}
    if main_process:
        metrics.update(_held_out_scores(job, "before", show))
    if hasattr(model, "fit_counts"):  # a count-based model (n-gram): counted from the training data, no steps
        train_out = _count(model, prepared.train)
    else:
        train_out = _train_until_done_or_stopped(trainer, resume, stopper, plan, out)
        train_out.metrics.pop("flops", None)  # the log line's running count (ComputeLogger); train_flops below
        seconds = _add_throughput(train_out.metrics, trainer)
        if seconds:
            train_out.metrics.update(cost_metrics(fpt, train_out.metrics["train_tokens"], seconds, peak, peak_source))
    metrics["train"] = train_out.metrics
    if summary := job.task.training_summary(trainer.state.log_history):
        metrics["training_summary"] = summary
    if first_eval.metrics is not None:
        metrics["eval_before"] = first_eval.metrics
    if prepared.validation is not None:
        metrics["eval_after"] = _final_evaluation(trainer)
    if args.world_size > 1 and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):  # replicated weights
        metrics["rank_weights_sha256"] = _rank_fingerprints(model)
    if main_process:
        metrics.update(_held_out_scores(job, "after", show))
    trainer.save_model(str(out))  # safetensors weights + config + tokenizer (with its chat template)
    _drop_library_card(out)
    if recipe.generate.prompts and main_process:
        metrics["samples"] = _samples(job)
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    if main_process:
        write_json(out / "metrics.json", metrics)
        plot_loss(trainer.state.log_history, out / "loss.png", metrics.get("eval_before"))
        if not quiet:
            _print_summary(metrics, plan.final)  # where the run ends up (not its staging folder)
    return metrics


def _final_evaluation(trainer) -> dict:
    """Validation metrics of the model as saved. Trainer evaluates at the last step itself (every
    `eval_strategy: steps` run does); that evaluation is reused unless the best checkpoint of an
    earlier step was loaded back at the end (`load_best_model_at_end`)."""
    state = trainer.state
    last = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
    reloaded = trainer.args.load_best_model_at_end and state.best_global_step not in (None, state.global_step)
    if last is not None and last.get("step") == state.global_step and not reloaded:
        return {k: v for k, v in last.items() if k.startswith("eval_") or k == "epoch"}
    return trainer.evaluate(metric_key_prefix="eval")  # sharded over the ranks


def _drop_library_card(out: Path) -> None:
    """peft's `save_pretrained` writes a README.md stub naming the local base folder; the run's card is
    written by `hfkit push` (from the recipe and metrics), so the stub is not left in the run."""
    card = out / "README.md"
    if card.is_file() and (out / "adapter_config.json").is_file():
        from .hub import CARD_MARK, replaceable_card

        text = card.read_text(encoding="utf-8", errors="replace")
        if replaceable_card(text) and CARD_MARK not in text:
            card.unlink()  # huggingface_hub's empty template, as peft fills it in


def _precision(recipe: Recipe, args) -> str:
    """What the run computes in, and who chose it (the recipe, or `bf16: auto` and why)."""
    from .training.arguments import TRAINING_DEFAULTS, resolve_bf16

    what = "bf16 autocast" if args.bf16 else "fp16 autocast" if args.fp16 else "fp32"
    if recipe.training.get("bf16", TRAINING_DEFAULTS["bf16"]) == "auto" and not args.fp16:
        return f"{what} (bf16: auto; {resolve_bf16()[1]})"
    return what


def _print_overview(job: Job, n_params: int) -> None:
    from .display import print_table

    c, model, tokenizer = job.counts, job.model, job.tokenizer
    print_table(f"hfkit {job.recipe.task} run", [
        ("model", f"{type(model).__name__} ({n_params / 1e6:.2f}M parameters)"),
        ("tokenizer", f"{type(tokenizer).__name__}, {len(tokenizer)} tokens"),
        ("precision", _precision(job.recipe, job.args)),
        ("trainable parameters", f"{c['trainable']:,} of {c['total']:,} ({c['trainable_percent']:.3g}%, {c['method']})"),
        *job.prepared.overview,
        *((f"source {k}", f"{v['share']:.1%} of mixture, {v['effective_epochs']:.2f} epochs")
          for k, v in job.prepared.stats.get("mixture", {}).items()),
    ])


def _held_out_scores(job: Job, when: str, progress: bool) -> dict:
    """Held-out scores besides validation loss: generations (tasks that generate) and eval.icl."""
    from .evaluation.during_training import run_icl_tasks

    out = {}
    if job.prepared.generation_eval:
        out[f"generation_{when}"] = job.prepared.generation_eval(job.model, progress)
    if job.icl:
        out[f"icl_{when}"] = run_icl_tasks(job.icl, job.model, job.tokenizer, progress=progress)
    return out


def _count(model, train):
    """Fit a count-based model on the training blocks (its `fit_counts`), timed like a training run."""
    from transformers.trainer_utils import TrainOutput

    t0 = time.time()
    model.fit_counts(train["input_ids"])
    seconds = round(time.time() - t0, 2)
    tokens = sum(len(x) for x in train["input_ids"])
    return TrainOutput(0, 0.0, {"train_runtime": seconds, "train_tokens": tokens,
                                "train_tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
                                "counted_ngrams": int(model.config.num_ngrams)})


def _add_throughput(train_metrics: dict, trainer) -> float | None:
    """Tokens trained on (padding not counted) and tokens per second of training, the time spent in
    evaluations during training left out; returns that time."""
    tokens = trainer.state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0)
    if not tokens or not train_metrics.get("train_runtime"):
        return None
    first = getattr(trainer, "_initial_global_step", 0)  # a resumed run: only this session's evaluations
    evaluating = sum(h.get("eval_runtime", 0.0) for h in trainer.state.log_history if h.get("step", 0) >= first)
    seconds = max(train_metrics["train_runtime"] - evaluating, 1e-9)
    train_metrics["train_tokens"] = int(tokens)
    train_metrics["train_tokens_per_second"] = round(tokens / seconds, 1)
    return seconds


def _train_until_done_or_stopped(trainer, resume: str | None, stopper, plan, out: Path):
    """`trainer.train()`; SIGTERM/SIGINT end it after the current step with a checkpoint (Interrupted)."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stopper.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        train_out = trainer.train(resume_from_checkpoint=resume)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    if stopper.signal is not None:
        step = trainer.state.global_step
        how = "resume_from_checkpoint=auto" + (" overwrite_output_dir=true" if plan.mode == "replace" else "")
        kept = " (the earlier run stays in place until this one finishes)" if plan.mode == "replace" else ""
        raise Interrupted(f"interrupted by {signal.Signals(stopper.signal).name} at step {step}: checkpoint saved in "
                          f"{out / f'checkpoint-{step}'}; continue with {how}{kept}", 128 + stopper.signal)
    return train_out


def _samples(job: Job) -> list[dict]:
    """The recipe's `generate:` prompts, continued by the trained model."""
    from .inference.generation import generate

    g = job.recipe.generate
    outs = generate(job.model, job.tokenizer, g.prompts, seed=job.args.seed, **g.kwargs(),
                    **job.prepared.generate_kwargs)
    return [{"prompt": p, "outputs": o} for p, o in zip(g.prompts, outs)]


def _rank_fingerprints(model) -> list[str]:
    """SHA-256 of the trained weights on every rank (all equal when the ranks trained one model)."""
    import hashlib

    import torch
    import torch.distributed as dist

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    found: list = [None] * dist.get_world_size()
    dist.all_gather_object(found, h.hexdigest())
    return found


_NOT_SCORES = ("epoch", "eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_perplexity",
               "eval_mlm_perplexity", "eval_num_tokens", "eval_entropy", "eval_mean_token_accuracy",
               "eval_logits/chosen", "eval_logits/rejected", "eval_logps/chosen", "eval_logps/rejected",
               "eval_min_reward", "eval_max_reward")  # TRL's diagnostics: in metrics.json, not the summary


def _print_summary(metrics: dict, out: Path) -> None:
    from .display import print_table

    rows = []
    if "eval_before" not in metrics and "eval_perplexity" in metrics.get("eval_after", {}):  # counted, not trained
        rows.append(("validation perplexity", metrics["eval_after"]["eval_perplexity"]))
    if "eval_before" in metrics and "eval_after" in metrics:
        before, after = metrics["eval_before"], metrics["eval_after"]
        key = next((k for k in ("eval_perplexity", "eval_mlm_perplexity") if k in after), None)
        if key:
            b, a = before[key], after[key]
            what = "validation perplexity" if key == "eval_perplexity" else "validation MLM perplexity"
            rows += [(f"{what} before", b), (f"{what} after", a), ("improvement", f"{b / a:.1f}x")]
        for k, a in after.items():  # the task's other held-out scores (accuracy, F1, exact match...)
            if k in before and k != key and isinstance(a, float) and k not in _NOT_SCORES:
                rows.append((f"{k[5:].replace('_', ' ')} before -> after", f"{before[k]:.4g} -> {a:.4g}"))
    after, before = metrics.get("generation_after", {}), metrics.get("generation_before", {})
    for name, a in after.items():
        if isinstance(a, float) and name in before:
            rows.append((f"held-out {name} before -> after", f"{before[name]:.2f} -> {a:.2f}"))
    for name, a in metrics.get("icl_after", {}).items():
        b = metrics["icl_before"][name]
        rows += [(f"icl {name} {k} before -> after", f"{b[k]:.1f} -> {a[k]:.1f}") for k in ("acc", "acc_norm", "exact_match")
                 if k in a]
    rows += list(metrics.get("training_summary", {}).items())
    t = metrics["train"]
    rows += [("train loss (mean)", t.get("train_loss")), ("train time (s)", t.get("train_runtime"))]
    if t.get("train_tokens_per_second"):
        rows.append(("tokens/s (training)", f"{t['train_tokens_per_second']:,.0f}"))
    if t.get("train_flops"):
        rows.append(("train FLOPs", f"{t['train_flops']:.3g} ({t['train_flops_per_token']:.3g} per token)"))
    if t.get("utilisation") is not None:
        rows.append(("FLOP/s, utilisation", f"{t['train_flops_per_second']:.3g}, {t['utilisation']:.1%} of the "
                                            f"{t['peak_source']} peak {t['peak_flops_per_second']:.3g}"))
    rows.append(("output", str(out)))
    print_table("hfkit results", rows)
    for s in metrics.get("samples", []):
        for o in s["outputs"]:
            print(f"\n--- sample ---\n{s['prompt']}{o}")
