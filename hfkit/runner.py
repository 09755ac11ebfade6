"""`hfkit.train(recipe, overrides)`: the steps of a training run, in the order a reader expects.

validate recipe -> build corpus -> tokenizer (load or train) -> shape data -> model ->
(nothing is written before this point) -> Trainer -> evaluate before/after -> save -> report.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainingArguments, set_seed

from .data.corpus import Corpus, build_corpus
from .data.packing import packed_lm_collator
from .data.tokenizer import load_tokenizer, train_tokenizer
from .errors import HfkitError
from .evaluation.generation import generate
from .evaluation.report import plot_loss, print_table
from .io import atomic_write_text, check_writable_dir, write_json
from .models import build_model, max_positions
from .objectives.clm import CausalLMTrainer, prepare_clm_data
from .recipe import Recipe, load_recipe

# hfkit's defaults for TrainingArguments; the recipe's `training` section overrides each of them.
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


class GracefulStop(TrainerCallback):
    """SIGTERM/SIGINT during training: finish the current step, save a checkpoint, stop."""

    def __init__(self):
        self.signal: int | None = None

    def handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.signal is not None
        if args.world_size > 1:  # every rank stops at the same step, even if only one got the signal
            import torch
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
            if stop and self.signal is None:
                import signal

                self.signal = signal.SIGTERM
        if stop:
            control.should_save = True
            control.should_training_stop = True
        return control


class FirstEval(TrainerCallback):
    """Keeps the metrics of the first evaluation: the one `eval_on_start` runs before the first step.

    (Evaluating with `trainer.evaluate()` before `train()` would let accelerate prepare the model
    for evaluation only, so under DDP it would train without ever all-reducing gradients.)"""

    def __init__(self):
        self.metrics: dict | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.metrics is None and metrics is not None:
            self.metrics = dict(metrics)


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint-N. Checkpoints are staged and renamed when complete
    (`CausalLMTrainer`); a folder without trainer_state.json (copied, or written by another tool
    and cut short) is still never picked."""
    found = []
    for d in output_dir.glob("checkpoint-*"):
        step = d.name.split("-", 1)[1]
        if d.is_dir() and step.isdigit() and (d / "trainer_state.json").is_file():
            found.append((int(step), d))
    return max(found)[1] if found else None


class JsonlLogger(TrainerCallback):
    """Append every Trainer log (loss, lr, grad norm, eval metrics) as one JSON line per event."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def training_arguments(recipe: Recipe, has_validation: bool) -> TrainingArguments:
    import torch

    # use_cpu on a machine without GPUs: also what makes torchrun/accelerate start a real multi-process
    # (gloo) run there instead of N independent single-process runs
    kw = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available(),
          "use_cpu": not torch.cuda.is_available(), **recipe.training}
    if not has_validation and "eval_strategy" not in recipe.training:
        kw["eval_strategy"] = "no"
    kw.setdefault("eval_on_start", has_validation)  # the "before" figure, measured inside train()
    if recipe.task == "sft" and recipe.sft.packing == "padded" and "train_sampling_strategy" not in recipe.training:
        kw["train_sampling_strategy"] = "group_by_length"  # similar lengths share a batch: little padding
    try:
        return TrainingArguments(**kw)
    except (ValueError, TypeError) as e:
        raise HfkitError(f"recipe section 'training': {' '.join(str(e).split())}") from None


def recipe_tokenizer(recipe: Recipe, texts: Callable[[], Iterable[str]]):
    """The recipe's tokenizer: `tokenizer.path`, else the checkpoint's own (`model.name_or_path`),
    else one trained here on `texts()` (the training split)."""
    tk = recipe.tokenizer
    path = tk.path or recipe.model.name_or_path
    if path:
        tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    else:
        tokenizer = train_tokenizer(texts(), tk.kind, tk.vocab_size, tk.min_frequency, tk.lowercase)
    if tokenizer.eos_token is None and not (recipe.task == "mlm" and tokenizer.sep_token is not None):
        raise HfkitError(f"tokenizer '{path}' has no eos_token, needed to separate documents")
    if recipe.task == "mlm" and tokenizer.mask_token is None:
        raise HfkitError(f"tokenizer '{path}' has no mask_token, needed for masked-LM training")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _corpus_texts(corpus: Corpus) -> Callable[[], Iterable[str]]:
    return lambda: (t for ds in corpus.train.values() for t in ds["text"])


def prepare_data(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None):
    """The data steps of a causal-LM run without training: returns (tokenizer, ClmData with its report)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    seed = recipe.training.get("seed", TRAINING_DEFAULTS["seed"])
    corpus = build_corpus(recipe.data, seed)
    tokenizer = recipe_tokenizer(recipe, _corpus_texts(corpus))
    return tokenizer, prepare_clm_data(recipe, tokenizer, corpus, seed)


@dataclass
class Job:
    """What a task hands the common run: model, data, collator, and how to report on it."""
    model: Any
    tokenizer: Any
    train: Any
    validation: Any
    collator: Callable
    stats: dict
    overview: list[tuple[str, Any]]
    generation_metrics: Callable[[Any], dict] | None = None  # held-out generation scores (before/after)
    sample_kwargs: dict = field(default_factory=dict)
    icl: list = field(default_factory=list)  # (name, examples, demos, IclConfig, IclTaskConfig) per eval.icl task


def _icl_tasks(recipe: Recipe) -> list:
    """The recipe's `eval.icl` tasks, loaded and checked (fields, shots) up front."""
    from .evaluation.icl import DEFAULT_TEMPLATE, IclConfig, build_prompts, load_task

    out, names = [], set()
    for i, t in enumerate(recipe.eval.icl):
        cfg = IclConfig(shots=t.shots, seed=t.seed, select=t.select, template=t.template or DEFAULT_TEMPLATE,
                        limit=t.limit, batch_size=recipe.eval.batch_size)
        examples = load_task(t.task)
        demos = load_task(t.demos) if t.demos else None
        build_prompts(examples[: t.limit] if t.limit else examples, demos, cfg, f"eval.icl.{i} ({t.task})", t.demos)
        name = Path(t.task).stem
        while name in names:
            name += "_"
        names.add(name)
        out.append((name, examples, demos, cfg, t))
    return out


def _run_icl(job: "Job", model) -> dict:
    from .evaluation.icl import evaluate_icl

    return {name: evaluate_icl(model, job.tokenizer, ex, cfg, demos, t.task, t.demos)["metrics"]
            for name, ex, demos, cfg, t in job.icl}


def _adapt(recipe: Recipe, model, tokenizer, length: int, key: str):
    """Apply the recipe's adapter method; check the sequence still fits with any virtual tokens."""
    from .adapters import VIRTUAL_TOKEN_METHODS, apply_adapter

    extra = recipe.adapter.num_virtual_tokens if recipe.adapter.method in VIRTUAL_TOKEN_METHODS else 0
    _check_positions(model, length + extra, key if not extra else f"{key} + adapter.num_virtual_tokens")
    model, counts = apply_adapter(model, recipe.adapter, tokenizer)
    row = ("trainable parameters", f"{counts['trainable']:,} of {counts['total']:,} "
                                   f"({counts['trainable_percent']:.3g}%, {counts['method']})")
    return model, counts, row


def _check_positions(model, length: int, key: str) -> None:
    limit = max_positions(model.config)
    if limit is not None and length > limit:
        raise HfkitError(f"recipe key '{key}'={length} exceeds the model's maximum positions ({limit})")


def _clm_job(recipe: Recipe, seed: int) -> Job:
    """Causal LM (task clm) or masked LM (task mlm: BERT-style 80/10/10 masking by transformers'
    DataCollatorForLanguageModeling) on packed blocks of the corpus."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, DataCollatorForLanguageModeling

    mlm = recipe.task == "mlm"
    corpus = build_corpus(recipe.data, seed)
    tokenizer = recipe_tokenizer(recipe, _corpus_texts(corpus))
    model = build_model(recipe.model, tokenizer, AutoModelForMaskedLM if mlm else AutoModelForCausalLM)
    model, counts, row = _adapt(recipe, model, tokenizer, recipe.data.block_size, "data.block_size")
    data = prepare_clm_data(recipe, tokenizer, corpus, seed)
    data.stats["parameters"] = counts
    tp = data.stats["train_packing"]
    overview = [row, ("train tokens", tp["tokens"]), ("train blocks", f"{tp['blocks']} x {tp['block_size']}"),
                ("dropped (final partial block)", tp["dropped_tokens"]),
                ("validation blocks", len(data.validation) if data.validation is not None else 0)]
    collator = (DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=recipe.data.mlm_probability)
                if mlm else packed_lm_collator)
    return Job(model, tokenizer, data.train, data.validation, collator, data.stats, overview)


def _sft_job(recipe: Recipe, seed: int) -> Job:
    from .evaluation.metrics import corpus_metrics
    from .objectives import sft

    cfg = recipe.sft
    train_records, val_records, stats = sft.load_sft_records(recipe, seed)

    def texts():
        for ds in train_records.values():
            for row in ds:
                for k, v in row.items():
                    if isinstance(v, str) and not k.startswith("_"):
                        yield v
                    elif k == "messages":
                        yield from (m["content"] for m in v)

    tokenizer = recipe_tokenizer(recipe, texts)
    model = build_model(recipe.model, tokenizer)
    if cfg.format == "chat" or cfg.chat_template:
        sft.setup_chat_template(tokenizer, model, cfg)
    model, counts, row = _adapt(recipe, model, tokenizer, cfg.max_length, "sft.max_length")
    data = sft.prepare_sft_data(recipe, tokenizer, train_records, val_records, stats, seed)
    data.stats["parameters"] = counts
    if cfg.packing == "padding_free":
        sft.check_padding_free(model)
    chat = cfg.format == "chat"
    gen_kw = {"add_special_tokens": not chat, "stop_token_ids": sft.chat_stop_ids(tokenizer) if chat else None}
    ev = recipe.eval

    def generation_metrics(m) -> dict:
        prompts, refs, templates = sft.eval_prompts(data.eval_records, tokenizer, cfg, data.templates, seed,
                                                    ev.max_examples)
        outs = generate(m, tokenizer, prompts, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                        num_beams=ev.num_beams, **gen_kw)
        preds = [t.extract_answer(o[0]) if t else o[0].strip() for o, t in zip(outs, templates)]
        scores = corpus_metrics(preds, refs, tuple(ev.metrics))
        scores["examples"] = [{"reference": r, "prediction": p} for r, p in list(zip(refs, preds))[:5]]
        scores["n"] = len(refs)
        return scores

    s = data.stats
    overview = [row, ("train examples", s["train_examples"]), ("train tokens", s["train_tokens"]),
                ("trained (answer) tokens", s["trained_tokens"]), ("dropped by truncation", s["dropped_by_truncation"]),
                ("batching", cfg.packing), ("validation examples", len(data.validation) if data.validation else 0)]
    has_gen_eval = bool(ev.metrics) and data.eval_records is not None and len(data.eval_records) > 0
    return Job(model, tokenizer, data.train, data.validation, sft.sft_collator(cfg, tokenizer), s, overview,
               generation_metrics if has_gen_eval else None, gen_kw)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; `code` is the exit status to use."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def train(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """Run a training recipe; returns its metrics (also written to `output_dir/metrics.json`)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    check_writable_dir(recipe.training.get("output_dir", "trainer_output"), "recipe key 'training.output_dir'")
    seed = recipe.training.get("seed", TRAINING_DEFAULTS["seed"])
    set_seed(seed)
    t0 = time.time()
    icl = _icl_tasks(recipe)  # checked before any long work
    job = _sft_job(recipe, seed) if recipe.task == "sft" else _clm_job(recipe, seed)
    job.icl = icl
    args = training_arguments(recipe, job.validation is not None)

    out = Path(args.output_dir)
    created = not out.exists()
    try:
        return _run(recipe, args, out, job, t0, quiet)
    except BaseException:
        # a fresh folder with no checkpoint is only debris; a folder with checkpoints is kept to resume
        if created and out.exists() and not any(out.glob("checkpoint-*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(recipe: Recipe, args: TrainingArguments, out: Path, job: Job, t0: float, quiet: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    resume = args.resume_from_checkpoint
    if resume == "auto":  # the newest complete checkpoint in output_dir, or a fresh start
        found = latest_complete_checkpoint(out)
        resume = str(found) if found else None
        if not quiet:
            print(f"resume_from_checkpoint=auto: {'resuming from ' + resume if resume else 'no checkpoint, starting fresh'}")
    log_path = out / "log.jsonl"
    if not resume:
        log_path.unlink(missing_ok=True)
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    model, tokenizer = job.model, job.tokenizer
    stopper, first_eval = GracefulStop(), FirstEval()
    trainer = CausalLMTrainer(model=model, args=args, train_dataset=job.train, eval_dataset=job.validation,
                              data_collator=job.collator, processing_class=tokenizer,
                              callbacks=[JsonlLogger(log_path), stopper, first_eval])
    n_params = sum(p.numel() for p in model.parameters())
    main_process = trainer.is_world_process_zero()
    if not quiet and main_process:
        print_table(f"hfkit {recipe.task} run", [
            ("model", f"{type(model).__name__} ({n_params / 1e6:.2f}M parameters)"),
            ("tokenizer", f"{type(tokenizer).__name__}, {len(tokenizer)} tokens"), *job.overview,
            *((f"source {k}", f"{v['share']:.1%} of mixture, {v['effective_epochs']:.2f} epochs")
              for k, v in job.stats["mixture"].items()),
        ])
    metrics: dict = {"parameters": n_params, "world_size": args.world_size, "data": job.stats}
    if job.generation_metrics and main_process:
        metrics["generation_before"] = job.generation_metrics(model)
    if job.icl and main_process:
        metrics["icl_before"] = _run_icl(job, model)
    import signal
    import threading

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
        raise Interrupted(f"interrupted by {signal.Signals(stopper.signal).name} at step {step}: checkpoint saved in "
                          f"{out / f'checkpoint-{step}'}; continue with resume_from_checkpoint=auto",
                          128 + stopper.signal)
    metrics["train"] = train_out.metrics
    if first_eval.metrics is not None:
        metrics["eval_before"] = first_eval.metrics
    if job.validation is not None:
        metrics["eval_after"] = trainer.evaluate(metric_key_prefix="eval")  # sharded over the ranks
    if args.world_size > 1 and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):  # replicated weights
        metrics["rank_weights_sha256"] = _rank_fingerprints(model)
    # evaluation by generation, sampling and writing happen once, on the main process
    if job.generation_metrics and main_process:
        metrics["generation_after"] = job.generation_metrics(model)
    if job.icl and main_process:
        metrics["icl_after"] = _run_icl(job, model)
    trainer.save_model(str(out))  # safetensors weights + config + tokenizer (with its chat template)
    if recipe.generate.prompts and main_process:
        g = recipe.generate
        samples = generate(model, tokenizer, g.prompts, seed=args.seed, max_new_tokens=g.max_new_tokens,
                           do_sample=g.do_sample, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                           num_beams=g.num_beams, num_return_sequences=g.num_return_sequences,
                           repetition_penalty=g.repetition_penalty, **job.sample_kwargs)
        metrics["samples"] = [{"prompt": p, "outputs": o} for p, o in zip(g.prompts, samples)]
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    if main_process:
        write_json(out / "metrics.json", metrics)
        plot_loss(trainer.state.log_history, out / "loss.png", metrics.get("eval_before"))
        if not quiet:
            _print_summary(metrics, out)
    return metrics


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


def _print_summary(metrics: dict, out: Path) -> None:
    rows = []
    if "eval_before" in metrics and "eval_after" in metrics:
        b, a = metrics["eval_before"]["eval_perplexity"], metrics["eval_after"]["eval_perplexity"]
        rows += [("validation perplexity before", b), ("validation perplexity after", a),
                 ("improvement", f"{b / a:.1f}x")]
    after, before = metrics.get("generation_after", {}), metrics.get("generation_before", {})
    for name, a in after.items():
        if isinstance(a, float) and name in before:
            rows.append((f"held-out {name} before -> after", f"{before[name]:.2f} -> {a:.2f}"))
    for name, a in metrics.get("icl_after", {}).items():
        b = metrics["icl_before"][name]
        rows += [(f"icl {name} {k} before -> after", f"{b[k]:.1f} -> {a[k]:.1f}") for k in ("acc", "acc_norm", "exact_match")
                 if k in a]
    rows += [("train loss (mean)", metrics["train"].get("train_loss")),
             ("train time (s)", metrics["train"].get("train_runtime")), ("output", str(out))]
    print_table("hfkit results", rows)
    for s in metrics.get("samples", []):
        for o in s["outputs"]:
            print(f"\n--- sample ---\n{s['prompt']}{o}")
