"""Fitting a built job: the task's Trainer with hfkit's callbacks (log.jsonl, FLOPs and utilisation,
the first evaluation, a graceful stop), the checkpoint to resume from, SIGTERM/SIGINT during training
(finish the step, save a checkpoint, stop), throughput and cost, and the validation metrics of the
model as saved. A count-based model fits through its own trainer (hfkit.training.trainer.CountingTrainer)."""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import Interrupted
from .checkpoints import fix_best_checkpoint_paths  # noqa: F401 (re-exported: after a replacement is moved into place)


def resume_point(args, model, quiet: bool = False) -> str | None:
    """A complete, readable checkpoint of this very model to resume from, or None for a fresh start;
    one line saying why there is none when one was named. Nothing is written."""
    from .checkpoints import model_signature, resolve_resume

    resume = resolve_resume(args.resume_from_checkpoint, Path(args.output_dir), model_signature(model))
    if args.resume_from_checkpoint == "auto" and not quiet:
        print(f"resume_from_checkpoint=auto: {'resuming from ' + resume if resume else 'no checkpoint, starting fresh'}")
    return resume


@dataclass
class Fit:
    """One training session: `Fit(...)` builds the trainer (through `make_trainer(callbacks)`),
    `run()` trains and returns the metrics the run reports."""
    make_trainer: Callable[[list], Any]
    model: Any
    args: Any  # TrainingArguments
    resume: str | None
    seq_len: int
    reference_forwards: float = 0.0
    evaluate: bool = True  # there is validation data: the model as saved is evaluated
    state: dict = field(default_factory=dict)  # where training ended: global_step, epoch (, counted)

    def __post_init__(self):
        from ..io import is_main_rank
        from .callbacks import FirstEval, GracefulStop, JsonlLogger
        from .compute import ComputeLogger, flops_per_token, peak_flops, run_dtype

        out = Path(self.args.output_dir)
        log = out / "log.jsonl"
        if not self.resume:
            log.unlink(missing_ok=True)
        self.stopper, self.first_eval = GracefulStop(), FirstEval()
        self.fpt = flops_per_token(self.model, self.seq_len, self.reference_forwards)
        # the peak: measured (once, then cached) by the main process only, which reports it
        peak, self.peak_source = peak_flops(run_dtype(self.args)) if self.fpt and is_main_rank() else (None, "")
        self.peak = peak * self.args.world_size if peak else None  # every process's device
        self.trainer = self.make_trainer([ComputeLogger(self.fpt, self.peak), JsonlLogger(log), self.stopper,
                                          self.first_eval])

    @property
    def main_process(self) -> bool:
        return self.trainer.is_world_process_zero()

    def parameters(self) -> dict:
        from .compute import non_embedding_parameters

        return {"parameters": sum(p.numel() for p in self.model.parameters()),
                "non_embedding_parameters": non_embedding_parameters(self.model)}

    def run(self, replacing: bool = False) -> dict:
        """Train (until done, or a signal: Interrupted after saving a checkpoint); returns {"train",
        "eval_before", "eval_after", "rank_weights_sha256"} as they apply."""
        from .compute import cost_metrics

        trainer = self.trainer
        train_out = _train_until_done_or_stopped(trainer, self.resume, self.stopper, replacing)
        self.state = {"global_step": trainer.state.global_step, "epoch": trainer.state.epoch}
        if getattr(trainer, "counted", False):
            self.state = {"global_step": 0, "counted": True}
        train_out.metrics.pop("flops", None)  # the log line's running count (ComputeLogger); train_flops below
        seconds = _add_throughput(train_out.metrics, trainer)
        if seconds:
            train_out.metrics.update(cost_metrics(self.fpt, train_out.metrics["train_tokens"], seconds, self.peak,
                                                  self.peak_source))
        metrics: dict = {"train": train_out.metrics}
        if self.first_eval.metrics is not None:
            metrics["eval_before"] = self.first_eval.metrics
        if self.evaluate:
            metrics["eval_after"] = _final_evaluation(trainer)
        if self.args.world_size > 1 and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
            metrics["rank_weights_sha256"] = _rank_fingerprints(self.model)  # replicated weights: all equal
        return metrics


def _train_until_done_or_stopped(trainer, resume: str | None, stopper, replacing: bool):
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
        out = Path(trainer.args.output_dir)
        how = "resume_from_checkpoint=auto" + (" overwrite_output_dir=true" if replacing else "")
        kept = " (the earlier run stays in place until this one finishes)" if replacing else ""
        raise Interrupted(f"interrupted by {signal.Signals(stopper.signal).name} at step {step}: checkpoint saved in "
                          f"{out / f'checkpoint-{step}'}; continue with {how}{kept}", 128 + stopper.signal)
    return train_out


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
