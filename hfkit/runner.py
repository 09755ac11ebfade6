"""`hfkit.train(recipe, overrides)`: the steps of a training run, in the order a reader expects.

validate recipe -> build corpus -> tokenizer (load or train) -> shape data -> model ->
(nothing is written before this point) -> Trainer -> evaluate before/after -> save -> report.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback, TrainingArguments, set_seed

from .data.corpus import Corpus, build_corpus
from .data.packing import packed_lm_collator
from .data.tokenizer import load_tokenizer, train_tokenizer
from .errors import HfkitError
from .evaluation.generation import generate
from .evaluation.report import plot_loss, print_table
from .io import atomic_write_text, write_json
from .models import build_causal_lm, max_positions
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
    "dataloader_pin_memory": False,  # set per run: only useful (and warning-free) with a GPU
}


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

    kw = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available(), **recipe.training}
    if not has_validation and "eval_strategy" not in recipe.training:
        kw["eval_strategy"] = "no"
    try:
        return TrainingArguments(**kw)
    except (ValueError, TypeError) as e:
        raise HfkitError(f"recipe section 'training': {' '.join(str(e).split())}") from None


def recipe_tokenizer(recipe: Recipe, corpus: Corpus):
    """The recipe's tokenizer: `tokenizer.path`, else the checkpoint's own (`model.name_or_path`),
    else one trained here on the training split."""
    tk = recipe.tokenizer
    path = tk.path or recipe.model.name_or_path
    if path:
        tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    else:
        texts = (t for ds in corpus.train.values() for t in ds["text"])
        tokenizer = train_tokenizer(texts, tk.kind, tk.vocab_size, tk.min_frequency, tk.lowercase)
    if tokenizer.eos_token is None:
        raise HfkitError(f"tokenizer '{path}' has no eos_token, needed to separate documents")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_data(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None):
    """The data steps of a run without training: returns (tokenizer, ClmData with its report)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    seed = recipe.training.get("seed", TRAINING_DEFAULTS["seed"])
    corpus = build_corpus(recipe.data, seed)
    tokenizer = recipe_tokenizer(recipe, corpus)
    return tokenizer, prepare_clm_data(recipe, tokenizer, corpus, seed)


def train(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """Run a training recipe; returns its metrics (also written to `output_dir/metrics.json`)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    seed = recipe.training.get("seed", TRAINING_DEFAULTS["seed"])
    set_seed(seed)
    t0 = time.time()

    corpus = build_corpus(recipe.data, seed)
    tokenizer = recipe_tokenizer(recipe, corpus)
    model = build_causal_lm(recipe.model, tokenizer)
    limit = max_positions(model.config)
    if limit is not None and recipe.data.block_size > limit:
        raise HfkitError(f"recipe key 'data.block_size'={recipe.data.block_size} exceeds the model's maximum positions ({limit})")
    data = prepare_clm_data(recipe, tokenizer, corpus, seed)
    args = training_arguments(recipe, data.validation is not None)

    out = Path(args.output_dir)
    created = not out.exists()
    try:
        return _run(recipe, args, out, model, tokenizer, data, t0, quiet)
    except BaseException:
        # a fresh folder with no checkpoint is only debris; a folder with checkpoints is kept to resume
        if created and out.exists() and not any(out.glob("checkpoint-*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(recipe, args, out, model, tokenizer, data, t0, quiet) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    log_path.unlink(missing_ok=True)
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    trainer = CausalLMTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                              data_collator=packed_lm_collator, processing_class=tokenizer,
                              callbacks=[JsonlLogger(log_path)])
    n_params = sum(p.numel() for p in model.parameters())
    if not quiet and trainer.is_world_process_zero():
        tp = data.stats["train_packing"]
        print_table("hfkit run", [
            ("model", f"{type(model).__name__} ({n_params / 1e6:.2f}M parameters)"),
            ("tokenizer", f"{type(tokenizer).__name__}, {len(tokenizer)} tokens"),
            ("train tokens", tp["tokens"]), ("train blocks", f"{tp['blocks']} x {tp['block_size']}"),
            ("dropped (final partial block)", tp["dropped_tokens"]),
            *((f"source {k}", f"{v['share']:.1%} of mixture, {v['effective_epochs']:.2f} epochs")
              for k, v in data.stats["mixture"].items()),
            ("validation blocks", len(data.validation) if data.validation is not None else 0),
        ])
    metrics: dict = {"parameters": n_params, "data": data.stats}
    if data.validation is not None:
        metrics["eval_before"] = trainer.evaluate(metric_key_prefix="eval")
    train_out = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    metrics["train"] = train_out.metrics
    if data.validation is not None:
        metrics["eval_after"] = trainer.evaluate(metric_key_prefix="eval")
    trainer.save_model(str(out))  # safetensors weights + config + tokenizer
    if recipe.generate.prompts:
        g = recipe.generate
        samples = generate(model, tokenizer, g.prompts, seed=args.seed, max_new_tokens=g.max_new_tokens,
                           do_sample=g.do_sample, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                           num_beams=g.num_beams, num_return_sequences=g.num_return_sequences,
                           repetition_penalty=g.repetition_penalty)
        metrics["samples"] = [{"prompt": p, "outputs": o} for p, o in zip(g.prompts, samples)]
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    if trainer.is_world_process_zero():
        write_json(out / "metrics.json", metrics)
        plot_loss(trainer.state.log_history, out / "loss.png", metrics.get("eval_before"))
        if not quiet:
            _print_summary(metrics, out)
    return metrics


def _print_summary(metrics: dict, out: Path) -> None:
    rows = []
    if "eval_before" in metrics:
        b, a = metrics["eval_before"]["eval_perplexity"], metrics["eval_after"]["eval_perplexity"]
        rows += [("validation perplexity before", b), ("validation perplexity after", a),
                 ("improvement", f"{b / a:.1f}x")]
    rows += [("train loss (mean)", metrics["train"].get("train_loss")),
             ("train time (s)", metrics["train"].get("train_runtime")), ("output", str(out))]
    print_table("hfkit results", rows)
    for s in metrics.get("samples", []):
        for o in s["outputs"]:
            print(f"\n--- sample ---\n{s['prompt']}{o}")
