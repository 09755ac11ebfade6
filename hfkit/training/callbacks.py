"""Trainer callbacks every run uses: stop cleanly on a signal, keep the first evaluation, log JSON lines."""
from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback


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


class JsonlLogger(TrainerCallback):
    """Append every Trainer log (loss, lr, grad norm, eval metrics) as one JSON line per event."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
