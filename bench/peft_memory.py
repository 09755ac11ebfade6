"""Peak memory and step time of full fine-tuning, LoRA and prompt tuning of the same model.

Each method trains the same GPT-2 (hidden 512, 8 layers, ~30M parameters) on the same packed
blocks for the same steps, in its own subprocess, so peak RSS is that method's alone. Printed as
ratios to full fine-tuning.

    python bench/peft_memory.py [--steps 12] [--batch-size 2] [--block-size 128]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(method: str, steps: int, batch_size: int, block: int) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hfkit.adapters import apply_adapter
    from hfkit.adapters import AdapterConfig

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=8192, n_embd=512, n_layer=8, n_head=8, n_positions=block + 32))
    options = {"r": 16} if method == "lora" else {"num_virtual_tokens": 20} if method.endswith("_tuning") else {}
    model, counts = apply_adapter(model, AdapterConfig.from_dict({"method": method, **options}))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 8192, (steps + 2, batch_size, block), generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    model.train()
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = model(input_ids=data[i], labels=data[i]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, **counts, "step_s": sum(times[2:]) / steps,
            "peak_rss_mb": peak / 1024, "training_rss_growth_mb": (peak - before) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--worker")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.steps, a.batch_size, a.block_size)))
        return
    res = {}
    for m in ("full", "lora", "prompt_tuning"):
        out = subprocess.run([sys.executable, __file__, "--worker", m, "--steps", str(a.steps), "--batch-size",
                              str(a.batch_size), "--block-size", str(a.block_size)],
                             capture_output=True, text=True, check=True)
        res[m] = json.loads(out.stdout.strip().splitlines()[-1])
    full = res["full"]
    print(f"GPT-2 8x512, batch {a.batch_size} x {a.block_size} tokens, {a.steps} steps, AdamW")
    print(f"{'method':<15}{'trainable':>12}{'step s':>9}{'peak RSS MB':>13}{'growth MB':>11}"
          f"{'step/full':>11}{'peak/full':>11}{'growth/full':>13}")
    for m, r in res.items():
        print(f"{m:<15}{r['trainable']:>12,}{r['step_s']:>9.3f}{r['peak_rss_mb']:>13,.0f}{r['training_rss_growth_mb']:>11,.0f}"
              f"{r['step_s'] / full['step_s']:>11.2f}{r['peak_rss_mb'] / full['peak_rss_mb']:>11.2f}"
              f"{r['training_rss_growth_mb'] / full['training_rss_growth_mb']:>13.2f}")


if __name__ == "__main__":
    main()
