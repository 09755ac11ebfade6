"""The GPU check (bench/gpu_check.sh): one short script, one table, for a machine with one GPU (an H100:
well under 8 minutes). Every figure comes from hfkit's own runs (metrics.json) or benches:

1. bf16 pretraining of a ~125M GPT-2 (12 x 768, blocks of 1024): training tokens/s and utilisation
   against the datasheet peak (hfkit's metrics);
2. attention: the same size as Llama with SDPA vs flash-attention 2 (where flash_attn is installed);
3. SFT (pydoc Q&A records): padding-free rows vs padded batches, useful tokens/s, with the variable-
   length kernel (flash-attention 2) when installed, else SDPA;
4. QLoRA on a Llama-3.2-1B-shaped model (bench/qlora_memory.py): LoRA (bf16 autocast) vs QLoRA (NF4),
   peak GPU memory and step time;
5. `hfkit serve`: 50 completions, 8 at a time, on the run of 1 (bench/serve_load.py).

`--cpu` runs the same steps at tiny sizes on the CPU: the wiring, tested in `make test`.
Results: a table on stdout and bench/out/gpu_check.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(recipe: str, overrides: list[str], out: Path | None = None) -> dict:
    """One hfkit run in its own process (into `out`, else a throw-away folder); its metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = out or Path(tmp) / "run"
        p = subprocess.run([sys.executable, "-m", "hfkit", "train", recipe, *overrides, f"output_dir={out}"],
                           capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError(f"hfkit train {recipe} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        return json.loads((out / "metrics.json").read_text())


def speed(m: dict) -> dict:
    t = m.get("train", {})
    util = t.get("utilisation")
    return {"tokens_per_s": round(float(t.get("train_tokens_per_second", 0)), 1),
            "utilisation_pct": round(100 * util, 2) if util is not None else None,
            "peak": t.get("peak_source"), "runtime_s": t.get("train_runtime")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (checks the wiring)")
    a = ap.parse_args()
    import torch

    cpu = a.cpu or not torch.cuda.is_available()
    if not a.cpu and cpu:
        sys.exit("gpu_check: no GPU here (torch.cuda.is_available() is False); run with --cpu to check the wiring")
    device = "cpu" if cpu else torch.cuda.get_device_name(0)
    flash = not cpu and importlib.util.find_spec("flash_attn") is not None
    common = ["eval_strategy=no", "save_strategy=no", "generate.prompts=[]", "logging_steps=10",
              "load_best_model_at_end=false", "report_to=none"]
    if cpu:
        size = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2", "model.max_position_embeddings=128",
                "tokenizer.vocab_size=500", "per_device_train_batch_size=4"]
        pre = size + ["data.block_size=64", "max_steps=10", "bf16=false"]
        attn = ["eager", "sdpa"]
        sft_size = size + ["sft.max_length=128", "max_steps=10", "bf16=false"]
        qlora = ["--small", "--seq", "64", "--steps", "2", "--device", "cpu"]
        serve = ["--requests", "8", "--concurrency", "2", "--max-tokens", "8"]
    else:
        size = ["model.hidden_size=768", "model.num_layers=12", "model.num_heads=12",
                "model.max_position_embeddings=1024", "tokenizer.vocab_size=8192"]
        pre = size + ["data.block_size=1024", "per_device_train_batch_size=16", "max_steps=120", "bf16=true"]
        attn = ["sdpa"] + (["flash_attention_2"] if flash else [])
        sft_size = size + ["sft.max_length=1024", "per_device_train_batch_size=64", "max_steps=80", "bf16=true"]
        qlora = ["--seq", "512", "--steps", "4", "--device", "cuda"]
        serve = ["--requests", "50", "--concurrency", "8", "--max-tokens", "64"]
    rows, t0 = [], time.perf_counter()

    def row(what: str, setting: str, figures: dict) -> None:
        rows.append({"what": what, "setting": setting, **figures})
        print(json.dumps(rows[-1]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "gpt2"
        m = train("clm_pretrain", [*common, *pre, "model.architecture=gpt2"], run)  # kept: served in 5
        row("pretrain GPT-2 (bf16)" if not cpu else "pretrain GPT-2 (fp32)",
            f"{m['data']['parameters']['total'] / 1e6:.1f}M params", speed(m))
        for impl in attn:
            m = train("clm_pretrain", [*common, *pre, "model.architecture=llama", f"model.attn_implementation={impl}",
                                       "max_steps=" + ("10" if cpu else "60")])
            row("pretrain Llama, attention", impl, speed(m))
        for pf in ("true", "false"):
            extra = [f"model.attn_implementation={'flash_attention_2' if flash else 'sdpa'}"] if pf == "true" else []
            m = train("sft", [*common, *sft_size, "model.architecture=llama", f"sft.padding_free={pf}", *extra])
            row("SFT pydoc Q&A", "padding-free rows" if pf == "true" else "padded batches", speed(m))
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "qlora_memory.py"), "--modes", "lora,qlora", *qlora],
                           capture_output=True, text=True, cwd=ROOT)
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                mem = r.get("peak_gpu_gb", r.get("peak_rss_gb"))
                row("Llama-3.2-1B shape" if not cpu else "Llama (small)", r["mode"],
                    {"peak_memory_gb": mem, "step_s": r.get("step_s"), "error": r.get("error")})
        if p.returncode != 0:
            row("QLoRA bench", "failed", {"error": (p.stderr.strip().splitlines() or ["?"])[-1]})
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), str(run), "--completions", *serve],
                           capture_output=True, text=True, cwd=ROOT)
        start = p.stdout.find("{")
        loads = json.loads(p.stdout[start:p.stdout.index("\n}") + 2]) if start >= 0 else {}
        for label, r in loads.items():
            row("hfkit serve /v1/completions", label, {"requests_per_s": r["requests_per_s"], "p50_ms": r["p50_ms"],
                                                       "tokens_per_s": r["completion_tokens_per_s"],
                                                       "errors": r["errors"]})
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": device, "flash_attn": flash, "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"\ngpu_check on {device} ({report['seconds']} s)")
    print(f"{'what':<30}{'setting':<26}figures")
    for r in rows:
        figs = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("what", "setting") and v is not None)
        print(f"{r['what']:<30}{r['setting']:<26}{figs}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
