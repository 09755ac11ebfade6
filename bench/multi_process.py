"""One process vs N processes (accelerate / torch elastic; gloo on CPU) on the same recipe and global batch.

Runs `hfkit train clm_pretrain` twice from one invocation: 1 process with batch B, and N processes
with batch B/N each (`--num-processes N`), same seed and steps. Prints step time, the ratio, and how
closely the two runs agree (train loss, validation loss, largest weight difference).

    python bench/multi_process.py [--processes 2] [--steps 60] [--batch 16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(out: Path, overrides: list[str], extra: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *overrides, f"output_dir={out}",
                        "--json", *extra], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16, help="global batch (blocks of 128 tokens) per step")
    a = ap.parse_args()
    n, cores = a.processes, os.cpu_count() or 1
    common = [f"max_steps={a.steps}", "save_strategy=no", "load_best_model_at_end=false", "eval_steps=100000",
              "generate.prompts=[]", "logging_steps=10", "model.dropout=0.0"]
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = run(tmp / "one", common + [f"per_device_train_batch_size={a.batch}"], [], cores)
        many = run(tmp / "many", common + [f"per_device_train_batch_size={a.batch // n}"],
                   ["--num-processes", str(n)], max(1, cores // n))
        w1, wn = load_file(tmp / "one" / "model.safetensors"), load_file(tmp / "many" / "model.safetensors")
        diff = max((w1[k] - wn[k]).abs().max().item() for k in w1)
    s1 = one["train"]["train_runtime"] / a.steps
    sn = many["train"]["train_runtime"] / a.steps
    agree = len(set(many["rank_weights_sha256"])) == 1
    print(f"clm_pretrain (GPT-2 4x192), global batch {a.batch} x 128 tokens, {a.steps} steps, {cores} CPU cores")
    print(f"{'':<22}{'processes':>10}{'step s':>9}{'train loss':>12}{'val loss':>10}")
    print(f"{'single process':<22}{1:>10}{s1:>9.3f}{one['train']['train_loss']:>12.5f}{one['eval_after']['eval_loss']:>10.5f}")
    print(f"{'accelerate (gloo)':<22}{many['world_size']:>10}{sn:>9.3f}{many['train']['train_loss']:>12.5f}"
          f"{many['eval_after']['eval_loss']:>10.5f}")
    print(f"step time ratio (N procs / 1 proc): {sn / s1:.2f}; |train loss diff| "
          f"{abs(one['train']['train_loss'] - many['train']['train_loss']):.2e}; max |weight diff| {diff:.2e}; "
          f"ranks hold identical weights: {agree}")


if __name__ == "__main__":
    main()
