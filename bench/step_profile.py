"""Where a training step's time goes in `hfkit train`: data, forward + backward, gradient clipping,
the optimizer, the scheduler and callbacks, logging and the Trainer's own per-step work.

The phases are timed inside one real `hfkit.train` run (the recipe's model and data) by wrapping
Trainer's `get_batch_samples` (fetching and collating a step's batches) and `training_step` (forward,
loss, backward) and by a callback at `on_pre_optimizer_step` / `on_optimizer_step` / `on_step_end`;
what is left of each step's wall time is the Trainer's bookkeeping, logging and progress bar. The first
`--warmup` steps are not counted. Prints a table and writes bench/out/step_profile.json.

    python bench/step_profile.py [--recipe clm_pretrain] [--steps 60] [--warmup 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="clm_pretrain")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from transformers import TrainerCallback

    import hfkit
    from hfkit.training import trainer as hf_trainer

    spent: dict[str, float] = defaultdict(float)  # summed over the counted steps
    current: dict[str, float] = defaultdict(float)  # the step under way (the last one is never counted)
    mark = {"t": None, "step_start": None, "steps": 0}
    walls: list[float] = []

    def timed(name, fn):
        def wrapper(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(self, *a, **kw)
            finally:
                now = time.perf_counter()
                current[name] += now - t0
                mark["t"] = now
        return wrapper

    class Phases(TrainerCallback):
        def on_pre_optimizer_step(self, a, state, control, **kw):
            now = time.perf_counter()
            current["gradient clipping"] += now - mark["t"]
            mark["t"] = now

        def on_optimizer_step(self, a, state, control, **kw):
            now = time.perf_counter()
            current["optimizer step"] += now - mark["t"]
            mark["t"] = now

        def on_step_end(self, a, state, control, **kw):
            now = time.perf_counter()
            current["scheduler, zero_grad, step-end callbacks"] += now - mark["t"]
            mark["t"] = now

    base = hf_trainer.HfkitTrainer
    original_init = base.__init__
    original_batches = base.get_batch_samples

    def init(self, *a, **kw):
        original_init(self, *a, **kw)
        self.add_callback(Phases())

    def batches(self, *a, **kw):  # a step begins by fetching its batches: the previous step ends here
        t0 = time.perf_counter()
        if mark["step_start"] is not None:
            mark["steps"] += 1
            if mark["steps"] > args.warmup:
                walls.append(t0 - mark["step_start"])
                for k, v in current.items():
                    spent[k] += v
        current.clear()
        mark["step_start"] = t0
        return original_batches(self, *a, **kw)

    base.__init__ = init
    base.training_step = timed("forward + backward", base.training_step)
    base.get_batch_samples = timed("data: fetch + collate", batches)

    with tempfile.TemporaryDirectory() as tmp:
        over = [f"output_dir={tmp}/run", f"max_steps={args.steps}", "eval_strategy=no", "save_strategy=no",
                "logging_steps=10", "generate.prompts=[]", "load_best_model_at_end=false", *args.overrides]
        metrics = hfkit.train(args.recipe, over, quiet=True)
    total = sum(walls)
    rows = {k: v for k, v in spent.items()}
    rows["Trainer bookkeeping, logging, progress bar"] = max(0.0, total - sum(spent.values()))
    n = len(walls)
    print(f"{args.recipe}: {n} steps timed (after {args.warmup} warm-up steps), {total / n * 1000:.1f} ms per step, "
          f"precision {metrics.get('precision')}")
    print(f"{'phase':<46}{'ms/step':>9}{'share':>8}")
    for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"{k:<46}{v / n * 1000:>9.2f}{v / total:>8.1%}")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "step_profile.json").write_text(json.dumps(
        {"recipe": args.recipe, "steps": n, "ms_per_step": total / n * 1000,
         "phases_ms_per_step": {k: v / n * 1000 for k, v in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
