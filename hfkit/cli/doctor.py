"""`hfkit doctor`: what a bug report needs."""
from __future__ import annotations

import os

from .common import add_json, emit


def register(sub) -> None:
    dr = sub.add_parser("doctor", help="versions, devices, offline state, caches, whether a Hub token is set")
    add_json(dr)
    dr.add_argument("--peak", action="store_true", help="measure this device's matmul FLOP/s (fp32 and bf16) and "
                                                        "cache them: the peak runs report utilisation against")
    dr.set_defaults(handler=lambda args: emit(doctor(args.peak), args.json, "hfkit doctor") or 0)


def doctor(peak: bool = False) -> dict:
    """The stack's versions, devices, offline state, caches; the Hub token's presence (never its value)."""
    import importlib.metadata as md
    import platform

    import torch
    from huggingface_hub import constants, get_token

    info: dict = {"hfkit": md.version("hfkit"), "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "datasets", "tokenizers", "accelerate", "peft", "huggingface_hub",
                "safetensors", "sacrebleu", "trl"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    info["cpu_threads"] = torch.get_num_threads()
    info["cuda"] = torch.cuda.is_available() and ", ".join(
        torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no"
    info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info["hub_offline"] = bool(constants.HF_HUB_OFFLINE)
    info["hub_endpoint"] = constants.ENDPOINT
    info["hub_cache"] = str(constants.HF_HUB_CACHE)
    info["datasets_cache"] = os.environ.get("HF_DATASETS_CACHE") or os.path.join(constants.HF_HOME, "datasets")
    info["hub_token"] = "present" if get_token() else "absent"
    if peak:
        from ..training.compute import peak_flops

        for dtype in ("float32", "bfloat16"):
            value, source = peak_flops(dtype, refresh=True)
            info[f"peak_flops_{dtype}"] = f"{value:.3g} ({source})"
    return info
