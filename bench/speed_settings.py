"""hfkit's speed settings side by side: tokens/s and train loss of `hfkit train` with each setting,
against the plain hand-written loop (fp32, fused AdamW), all measured in this one process.

Settings: fp32 with the fused AdamW (transformers' default optimizer), bf16 autocast (`bf16: auto`
picks it where the CPU or GPU computes bf16 natively), bf16 with the foreach (unfused) AdamW, fp32
with the foreach AdamW. Same model (the clm_pretrain recipe's GPT-2), blocks, batch and steps.

    python bench/speed_settings.py [--steps 60]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

SETTINGS = {"fp32, fused AdamW": ["bf16=false", "optim=adamw_torch_fused"],
            "bf16 autocast, fused AdamW (bf16: auto)": ["bf16=auto", "optim=adamw_torch_fused"],
            "bf16 autocast, foreach AdamW": ["bf16=true", "optim=adamw_torch"],
            "fp32, foreach AdamW": ["bf16=false", "optim=adamw_torch"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()

    import numpy as np

    import hfkit
    from hfkit.models import build_model
    from hfkit.recipe import load_recipe
    from hfkit.training.precision import resolve_bf16
    from train_throughput import hand_loop

    print(f"bf16: auto resolves to {resolve_bf16()}; {torch.get_num_threads()} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"max_steps={args.steps}", "eval_strategy=no", "save_strategy=no", "logging_steps=20",
                "generate.prompts=[]", "warmup_steps=0", "lr_scheduler_type=linear", "model.dropout=0.0"]
        recipe = load_recipe("clm_pretrain", base + [f"output_dir={tmp}/probe"])
        t = recipe.training
        bs, lr, wd = t["per_device_train_batch_size"], t["learning_rate"], t.get("weight_decay", 0.0)
        tok, data = hfkit.prepare_data(recipe)
        blocks = torch.as_tensor(np.asarray(data.train["input_ids"]), dtype=torch.long)
        tokens = args.steps * bs * recipe.data.block_size
        torch.manual_seed(0)
        hand = hand_loop(build_model(recipe.model, tok), blocks, args.steps, bs, lr, wd)
        for i, (name, over) in enumerate(SETTINGS.items()):
            m = hfkit.train("clm_pretrain", base + over + [f"output_dir={tmp}/run{i}"], quiet=True)
            tr = m["train"]
            rows.append((name, tr["train_tokens_per_second"], tr["train_loss"], m["precision"]))
        torch.manual_seed(0)
        hand = (hand + hand_loop(build_model(recipe.model, tok), blocks, args.steps, bs, lr, wd)) / 2
    print(f"\n{'setting':42s} {'tokens/s':>9s} {'vs hand':>8s} {'vs fp32':>8s} {'train loss':>11s}")
    print(f"{'hand-written loop (fp32, fused AdamW)':42s} {tokens / hand:9,.0f} {1.0:8.2f} {'':8s} {'':>11s}")
    for name, tps, loss, precision in rows:
        print(f"{name:42s} {tps:9,.0f} {tps * hand / tokens:8.2f} {tps / rows[0][1]:8.2f} {loss:11.5f}")
    print(f"\n(bf16: auto chose: {rows[1][3]})")


if __name__ == "__main__":
    main()
