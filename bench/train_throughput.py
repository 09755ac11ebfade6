"""Training tokens/s of `hfkit train` vs a minimal hand-written PyTorch loop (nanoGPT style).

Same model (the clm_pretrain recipe's GPT-2), same packed blocks, batch, sequence length, AdamW
settings, gradient clipping, linear schedule and thread count, measured in one process. The hand
loop runs before and after hfkit and the two are averaged, so drift (thermal, caches) cancels.

    python bench/train_throughput.py [--steps 60] [--recipe clm_pretrain]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def hand_loop(model, blocks, steps: int, batch_size: int, lr: float, weight_decay: float) -> float:
    """nanoGPT-style loop; returns seconds for `steps` optimizer steps."""
    from transformers import get_linear_schedule_with_warmup

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(blocks), (batch_size,), generator=g)
        x = blocks[idx]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--recipe", default="clm_pretrain")
    args = ap.parse_args()

    import numpy as np

    import hfkit
    from hfkit.models import build_model
    from hfkit.recipe import load_recipe

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"output_dir={tmp}/run", f"max_steps={args.steps}", "eval_strategy=no", "save_strategy=no",
                     "logging_steps=20", "generate.prompts=[]", "warmup_steps=0", "lr_scheduler_type=linear",
                     "model.dropout=0.0"]
        recipe = load_recipe(args.recipe, overrides)
        t = recipe.training
        bs, lr, wd = t["per_device_train_batch_size"], t["learning_rate"], t.get("weight_decay", 0.0)
        tok, data = hfkit.prepare_data(recipe)  # the same blocks hfkit.train will use
        blocks = torch.as_tensor(np.asarray(data.train["input_ids"]), dtype=torch.long)
        tokens = args.steps * bs * recipe.data.block_size
        print(f"model: {recipe.model.architecture} {recipe.model.num_layers}x{recipe.model.hidden_size}, "
              f"batch {bs} x {recipe.data.block_size} tokens, {args.steps} steps, {torch.get_num_threads()} threads")

        torch.manual_seed(0)
        hand1 = hand_loop(build_model(recipe.model, tok), blocks, args.steps, bs, lr, wd)
        metrics = hfkit.train(recipe, quiet=True)
        hf = metrics["train"]["train_runtime"]
        torch.manual_seed(0)
        hand2 = hand_loop(build_model(recipe.model, tok), blocks, args.steps, bs, lr, wd)
    hand = (hand1 + hand2) / 2
    print(f"hand-written loop: {tokens / hand:,.0f} tokens/s  ({hand1:.1f}s, {hand2:.1f}s)")
    print(f"hfkit train:       {tokens / hf:,.0f} tokens/s  ({hf:.1f}s, Trainer.train runtime)")
    print(f"ratio hfkit/hand-written: {hand / hf:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
