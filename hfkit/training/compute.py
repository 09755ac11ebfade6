"""What a run costs and how well it uses the hardware: training FLOPs, FLOP/s and utilisation.

FLOPs per trained token = 6 N + 12 L H Q T (PaLM, Appendix B; Chinchilla's approximation of its
Appendix F), where N is the parameter count without the token and position embedding tables, plus
the output layer's matrix (a matmul every step, tied to the input embeddings or not), L layers, H heads of size Q (so
H Q = hidden size) and T the sequence length: the first term is the forward and backward matmuls of
the weights (2 + 4 FLOPs per parameter and token), the second the attention scores and their
weighted sum. Models without attention (the classic LMs) have only the first term; a counted n-gram
model has none.

The peak to compare with: the datasheet's dense bf16/fp16 tensor figure for known GPUs, else a
measured matmul rate (`hfkit doctor --peak`), cached in `HF_HOME/hfkit/peak_flops.json`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

# dense bf16 (fp16 where the card has no bf16) tensor-core TFLOP/s from the vendors' datasheets
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
                   "A100": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "T4": 65.0,
                   "V100": 125.0, "RTX 4090": 165.2, "RTX 3090": 71.0, "A6000": 155.0}


def non_embedding_parameters(model) -> int:
    """Parameters without the token and position embedding tables (an untied output head counts)."""
    import torch

    skip = set()
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        skip.add(id(emb.weight))
    for module in model.modules():  # learned positions (GPT-2's wpe, BERT's and BART's position tables)
        if isinstance(module, torch.nn.Embedding) and module is not emb and module.num_embeddings == getattr(
                model.config, "max_position_embeddings", getattr(model.config, "n_positions", -1)):
            skip.add(id(module.weight))
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in skip and id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def attention_shape(config) -> tuple[int, int]:
    """(layers with attention, hidden size of the attention) of a config; (0, 0) without attention."""
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 0
    if not heads:  # no attention (the classic LMs)
        return 0, 0
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    if getattr(config, "is_encoder_decoder", False):  # encoder self + decoder self and cross attention
        layers = getattr(config, "encoder_layers", None) or getattr(config, "num_layers", 0)
        layers += 2 * (getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or layers)
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None)
    hidden = heads * head_dim if head_dim else (getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
                                                or getattr(config, "d_model", 0))
    return int(layers), int(hidden)


def tied_output_parameters(model) -> int:
    """The output layer's weights when they are the input embedding table (GPT-2, the presets): not
    in the non-embedding count, yet multiplied with every token's hidden state."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if out is None or emb is None or getattr(out, "weight", None) is None:
        return 0
    return out.weight.numel() if out.weight is emb.weight else 0


def flops_per_token(model, seq_len: int, reference_forwards: float = 0.0) -> float:
    """Training FLOPs per token: 6 N + 12 L (H Q) T (forward and backward), plus 2 N + 4 L (H Q) T for
    each forward-only pass of a frozen reference model (DPO's), `reference_forwards` per token."""
    if getattr(type(model), "counted", False):  # counted, not trained
        return 0.0
    base = getattr(model, "get_base_model", None)
    inner = base() if callable(base) else model  # a peft model: the whole network runs forward and backward
    layers, hidden = attention_shape(inner.config)
    n = non_embedding_parameters(inner) + tied_output_parameters(inner)
    attention = 4.0 * layers * hidden * seq_len  # one forward pass's scores and weighted sums
    return (6.0 * n + 3 * attention) + reference_forwards * (2.0 * n + attention)


# ----------------------------------------------------------------------------- the peak


def _peak_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hfkit" / "peak_flops.json"


def device_key(dtype: str) -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}:{dtype}"
    import platform

    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()} threads:{dtype}"


def datasheet_peak() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    for key in sorted(GPU_PEAK_TFLOPS, key=len, reverse=True):  # the most specific name first
        if key in name:
            return GPU_PEAK_TFLOPS[key] * 1e12
    return None


def measure_peak(dtype: str = "float32", size: int = 1024, seconds: float = 1.0) -> float:
    """The best matmul rate (FLOP/s) of square `size` matrices in `dtype` on this device."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        size *= 4
    dt = getattr(torch, dtype)
    a, b = torch.randn(size, size, device=device, dtype=dt), torch.randn(size, size, device=device, dtype=dt)
    best, start = 0.0, time.perf_counter()
    for i in range(1000):
        t0 = time.perf_counter()
        (a @ b).sum().item() if device == "cuda" else a @ b
        if i:  # the first call warms up
            best = max(best, 2.0 * size ** 3 / (time.perf_counter() - t0))
        if time.perf_counter() - start > seconds and i >= 3:
            break
    return best


def peak_flops(dtype: str = "float32", measure: bool = True, refresh: bool = False) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from: 'datasheet' | 'measured' | 'cached measurement')."""
    sheet = datasheet_peak()
    if sheet:
        return sheet, "datasheet"
    path, key = _peak_cache(), device_key(dtype)
    cached = read_cache(path)
    if key in cached and not refresh:
        return float(cached[key]), "cached measurement"
    if not measure:
        return None, "unknown"
    value = measure_peak(dtype)
    store_in_cache(path, key, value)
    return value, "measured"


def read_cache(path) -> dict:
    """A measurement cache (JSON, under HF_HOME/hfkit/); empty when missing or unreadable."""
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def store_in_cache(path, key: str, value) -> None:
    """Add one measurement to a cache; a read-only cache is left alone (measured again next time)."""
    cached = read_cache(path)
    cached[key] = value
    try:
        from ..io import write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, cached)
    except OSError:
        pass


def run_dtype(args) -> str:
    return "bfloat16" if getattr(args, "bf16", False) else "float16" if getattr(args, "fp16", False) else "float32"


def cost_metrics(fpt: float, tokens: int, seconds: float, peak: float | None, source: str) -> dict:
    """Training FLOPs, achieved FLOP/s and utilisation (model FLOPs utilisation) of a run."""
    out = {"train_flops": fpt * tokens, "train_flops_per_token": fpt}
    if fpt and seconds > 0:
        out["train_flops_per_second"] = fpt * tokens / seconds
        if peak:
            out["utilisation"] = out["train_flops_per_second"] / peak
            out["peak_flops_per_second"] = peak
            out["peak_source"] = source
    return out


class ComputeLogger(TrainerCallback):
    """Adds FLOPs so far and utilisation to every training log line (log.jsonl), from the tokens and
    tokens/s Trainer logs with `include_num_input_tokens_seen`."""

    def __init__(self, fpt: float, peak: float | None):
        self.fpt, self.peak = fpt, peak

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not self.fpt or any(k.startswith("eval_") for k in logs):
            return  # training lines only (an evaluation's metrics are returned to the caller as they are)
        if "num_input_tokens_seen" in logs:
            logs["flops"] = self.fpt * logs["num_input_tokens_seen"]
        if "train_tokens_per_second" in logs and self.peak:
            logs["utilisation"] = self.fpt * float(logs["train_tokens_per_second"]) / self.peak

