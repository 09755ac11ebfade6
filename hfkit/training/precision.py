"""`bf16: auto` decided by measurement: on a CPU whose instruction set computes bf16 (AVX512-BF16, AMX),
bf16 autocast pays for large matmuls but can lose on a whole training step (casts, norms, softmax in
fp32, small layers). So the run's own model is timed, forward and backward on a random batch of the
run's shape, in fp32 and under bf16 autocast; bf16 is used when it is at least 5% faster. The result
is cached per device, model shape and batch shape in `HF_HOME/hfkit/bf16_probe.json` (beside the
cached matmul peak) and recorded in metrics.json. The probe leaves the weights, gradients and random
state as they were.

A GPU that supports bf16 uses it (tensor cores); a CPU without bf16 arithmetic uses fp32 (emulated
bf16 is slower), neither probed.
"""
from __future__ import annotations

import functools
import os
import statistics
import time

GAIN = 1.05  # bf16 must be this much faster than fp32 to be chosen


def native_bf16_cpu() -> str | None:
    """The CPU flag that gives bf16 arithmetic, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)


@functools.lru_cache(maxsize=1)
def resolve_bf16() -> tuple[bool, str]:
    """`bf16: auto` without a probe: (use bf16 autocast, why). A GPU that supports bf16; a CPU whose
    instruction set has bf16 arithmetic (AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower)."""
    import torch

    if torch.cuda.is_available():
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(0)} {'supports' if ok else 'does not support'} bf16"
    native = native_bf16_cpu()
    return bool(native), (f"CPU has {native}" if native else "CPU has no native bf16 (AVX512-BF16/AMX): fp32")


def _cache_path():
    from .compute import _peak_cache

    return _peak_cache().with_name("bf16_probe.json")


def probe_key(model, batch: int, seq: int) -> str:
    from .compute import device_key

    c = model.config
    shape = [type(model).__name__] + [str(getattr(c, k, "")) for k in ("hidden_size", "num_hidden_layers",
                                                                         "intermediate_size", "vocab_size")]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{device_key('probe')}|{'/'.join(shape)}|trainable {trainable}|batch {batch}x{seq}"


def time_steps(model, batch: int, seq: int, reps: int = 3) -> dict:
    """Median seconds of forward + backward in fp32 and under bf16 autocast (after one warm-up each),
    on random token ids; weights untouched, gradients and random state restored."""
    import torch

    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    grads = {p: p.grad for p in model.parameters()}
    buffers = {b: b.detach().clone() for b in model.buffers()}  # running statistics a train-mode pass updates
    was_training = model.training
    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randint(0, max(vocab, 2), (batch, seq), device=next(model.parameters()).device)
        model.train()
        for name, autocast in (("fp32", False), ("bf16", True)):
            times = []
            for i in range(reps + 1):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = model(input_ids=x, labels=x).loss
                loss.backward()
                if i:
                    times.append(time.perf_counter() - t)
                for p in model.parameters():
                    p.grad = None
            out[f"{name}_step_s"] = round(statistics.median(times), 4)
    for p, g in grads.items():
        p.grad = g
    with torch.no_grad():
        for b, saved in buffers.items():
            b.copy_(saved)
    model.train(was_training)
    out["bf16_speedup"] = round(out["fp32_step_s"] / out["bf16_step_s"], 3)
    return out


def decide(model, batch: int, seq: int, probe: bool = True, refresh: bool = False) -> tuple[bool, str, dict | None]:
    """(use bf16 autocast, why, what was measured or None). `probe=False` (a model that is not a causal
    LM trained by backpropagation): the CPU's flags decide, as before."""
    import torch

    flag = native_bf16_cpu()
    if torch.cuda.is_available() or flag is None:
        return (*resolve_bf16(), None)
    if not probe or not getattr(model.config, "vocab_size", None):
        return True, f"CPU has {flag} (not probed)", None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every process must choose alike: no noisy per-rank timing
        return True, f"CPU has {flag} (several processes: not probed)", None
    from .compute import read_cache, store_in_cache

    path, key = _cache_path(), probe_key(model, batch, seq)
    measured = None if refresh else read_cache(path).get(key)
    source = "cached probe"
    if measured is None:
        measured, source = time_steps(model, batch, seq), "probe"
        store_in_cache(path, key, measured)
    use = measured["bf16_speedup"] >= GAIN
    why = (f"CPU has {flag}; {source}: bf16 autocast step {measured['bf16_speedup']:.2f}x fp32's "
           f"({'>=' if use else '<'} {GAIN})")
    return use, why, {**measured, "source": source, "chosen": "bf16" if use else "fp32"}
