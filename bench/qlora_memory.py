"""Fine-tuning a checkpoint that barely fits, at real size: a Llama-3.2-1B-shaped model (random weights,
the real config's shape: 16 layers x 2048, 32 heads / 8 KV heads, MLP 8192, vocabulary 128,256, tied
embeddings; 1.24B parameters), sequence 512, batch 1, AdamW. Each setting runs in its own process:
peak resident memory (ru_maxrss, loading included), resident memory after loading and its peak while
training (polled), and the median step time of the steps after the first.

    python bench/qlora_memory.py [--modes full,lora,lora_gc,qlora,qlora_gc] [--steps 3] [--small]

full: every weight trained (fp32); lora: r=16 on every projection of a fp32 base; lora_gc: the same with
gradient checkpointing; qlora: the base loaded in 4 bits (bitsandbytes NF4, double quantization,
bf16 compute) through transformers' BitsAndBytesConfig and peft's prepare_model_for_kbit_training;
qlora_gc: with gradient checkpointing. `--small` runs a 2-layer 256-wide model of the same family (for
checking the wiring).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                tie_word_embeddings=True, rope_theta=500000.0, head_dim=64)
SMALL = dict(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True, head_dim=64)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class Sampler:
    """The highest resident memory while training runs (polled), apart from loading's peak."""

    def __init__(self):
        import threading

        self.peak, self.stop = rss_gb(), False
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self):
        while not self.stop:
            self.peak = max(self.peak, rss_gb())
            time.sleep(0.05)

    def done(self) -> float:
        self.stop = True
        self.thread.join()
        return round(self.peak, 2)


def one(mode: str, folder: str, steps: int, seq: int, device: str = "cpu") -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.manual_seed(0)
    t0 = time.perf_counter()
    if mode.startswith("qlora"):
        from peft import prepare_model_for_kbit_training

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=q, dtype=torch.bfloat16,
                                                     device_map=device)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=mode.endswith("_gc"))
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
        if mode.endswith("_gc"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if mode != "full":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, task_type="CAUSAL_LM"))
    load_s = time.perf_counter() - t0
    import gc

    gc.collect()
    after_load = round(rss_gb(), 2)
    sampler = Sampler()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = torch.randint(0, model.config.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0)).to(device)
    cuda = device.startswith("cuda")
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and mode in ("full", "lora", "lora_gc")):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(round(loss.item(), 4))
    training_peak = sampler.done()
    changed = all(p.grad is not None for p in params)
    later = sorted(times[1:]) or times
    return {"mode": mode, "trainable": sum(p.numel() for p in params),
            "total": sum(p.numel() for p in model.parameters()), "load_s": round(load_s, 1),
            "step_s": round(later[len(later) // 2], 2), "first_step_s": round(times[0], 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "rss_after_load_gb": after_load, "training_peak_rss_gb": training_peak,
            **({"peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if cuda else {}),
            "losses": losses, "every_trainable_weight_has_a_gradient": changed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="full,lora,lora_gc,qlora,qlora_gc")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (peak GPU memory is then reported too)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.folder, a.steps, a.seq, a.device)))
        return
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**(SMALL if a.small else LLAMA_1B)))
        model.save_pretrained(folder)  # random weights, saved once: every mode loads the same checkpoint
        total = sum(p.numel() for p in model.parameters())
        del model
        print(f"Llama-3.2-1B-shaped model: {total / 1e9:.3f}B parameters, sequence {a.seq}, batch 1", flush=True)
        rows = []
        for mode in a.modes.split(","):
            p = subprocess.run([sys.executable, __file__, "--one", mode, "--folder", folder, "--steps", str(a.steps),
                                "--seq", str(a.seq), "--device", a.device], capture_output=True, text=True,
                               env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
            if p.returncode != 0:
                tail = (p.stderr.strip().splitlines() or ["killed"])[-1]
                rows.append({"mode": mode, "error": f"exit {p.returncode}: {tail[:200]}"})
            else:
                rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    full = next((r for r in rows if r["mode"] == "full" and "error" not in r), None)
    mem = "peak_gpu_gb" if a.device.startswith("cuda") else "peak_rss_gb"
    print(f"\n{'setting':<10}{'trainable':>14}{mem:>13}{'train peak':>12}{'step s':>9}{'vs full':>24}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<10}  {r['error']}")
            continue
        ratio = (f"{r[mem] / full[mem]:.2f}x mem {r['step_s'] / full['step_s']:.2f}x t" if full else "")
        print(f"{r['mode']:<10}{r['trainable']:>14,}{r[mem]:>13}{r.get('training_peak_rss_gb', ''):>12}"
              f"{r['step_s']:>9}{ratio:>24}")


if __name__ == "__main__":
    main()
