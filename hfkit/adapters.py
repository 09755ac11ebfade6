"""How much of a model trains: full, selective (a frozen subset), or a peft adapter.

One registry (`METHODS`), one entry point (`apply_adapter`). LoRA, IA3, prompt and prefix tuning are
peft's own; selective freezing is plain `requires_grad`. Every run reports trainable / total.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch
from transformers import PreTrainedModel

from .errors import HfkitError
from .recipe import AdapterConfig

_LAYER = re.compile(r"\.(?:layers|h|layer|block)\.(\d+)\.")
_HEADS = ("lm_head", "score", "classifier", "qa_outputs", "cls")


def parameter_counts(model: torch.nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / total, 4)}


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Distinct leaf names of the linear layers an adapter could target (q_proj, c_attn, ...)."""
    from transformers.pytorch_utils import Conv1D

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    return sorted(names - {"lm_head"})


def _check_targets(model, targets: list[str]) -> None:
    modules = [n for n, _ in model.named_modules()]
    for t in targets:
        if not any(n == t or n.endswith("." + t) for n in modules):
            raise HfkitError(f"recipe key 'adapter.target_modules': '{t}' matches no module of "
                             f"{type(model).__name__} (linear modules: {', '.join(linear_module_names(model))})")


def _selective(model: PreTrainedModel, cfg: AdapterConfig, tokenizer) -> PreTrainedModel:
    layer_ids = sorted({int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))})
    keep_layers = set(layer_ids[-cfg.trainable_last_layers:]) if cfg.trainable_last_layers else set()
    patterns = [re.compile(p) for p in cfg.trainable_patterns]
    chosen = 0
    for name, p in model.named_parameters():
        m = _LAYER.search(name)
        train = (any(rx.search(name) for rx in patterns)
                 or (m is not None and int(m.group(1)) in keep_layers)
                 or (cfg.train_head and name.split(".")[0] in _HEADS))
        p.requires_grad_(train)
        chosen += train
    if cfg.train_head and model.get_output_embeddings() is not None:
        for p in model.get_output_embeddings().parameters():  # tied heads live under the embeddings' name
            p.requires_grad_(True)
            chosen += 1
    if chosen == 0:
        raise HfkitError("adapter.method=selective leaves nothing to train: set adapter.trainable_patterns, "
                         "adapter.trainable_last_layers or adapter.train_head")
    return model


def _lora(model, cfg: AdapterConfig, tokenizer):
    from peft import LoraConfig, get_peft_model

    targets = cfg.target_modules
    if targets:
        _check_targets(model, targets)
    else:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

        targets = known.get(model.config.model_type, "all-linear")  # peft's per-architecture defaults
    lc = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                    use_dora=cfg.use_dora, task_type="CAUSAL_LM", fan_in_fan_out=model.config.model_type == "gpt2")
    return get_peft_model(model, lc)


def _ia3(model, cfg: AdapterConfig, tokenizer):
    from peft import IA3Config, get_peft_model

    if cfg.target_modules:
        _check_targets(model, cfg.target_modules)
    kw = {"target_modules": cfg.target_modules, "feedforward_modules": cfg.feedforward_modules} if cfg.target_modules else {}
    return get_peft_model(model, IA3Config(task_type="CAUSAL_LM", fan_in_fan_out=model.config.model_type == "gpt2", **kw))


def _prompt_tuning(model, cfg: AdapterConfig, tokenizer):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    kw = {}
    if cfg.init_text:
        kw = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": cfg.init_text,
              "tokenizer_name_or_path": tokenizer.name_or_path}
    return get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens, **kw))


def _prefix_tuning(model, cfg: AdapterConfig, tokenizer):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens))


METHODS: dict[str, Callable] = {
    "full": lambda model, cfg, tok: model,
    "selective": _selective,
    "lora": _lora,
    "ia3": _ia3,
    "prompt_tuning": _prompt_tuning,
    "prefix_tuning": _prefix_tuning,
}
VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning")


def apply_adapter(model: PreTrainedModel, cfg: AdapterConfig, tokenizer=None):
    """Return the model to train (a PeftModel for adapter methods) and its parameter counts."""
    if cfg.method not in METHODS:
        raise HfkitError(f"unknown adapter.method '{cfg.method}' (expected one of: {', '.join(METHODS)})")
    model = METHODS[cfg.method](model, cfg, tokenizer)
    return model, {"method": cfg.method, **parameter_counts(model)}


def lora_parameter_formula(model) -> int:
    """The course formula: r * (d + k) summed over every adapted d x k matrix."""
    total = 0
    for module in model.modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a, b = module.lora_A["default"], module.lora_B["default"]
            total += a.weight.shape[0] * (a.weight.shape[1] + b.weight.shape[0])
    return total


def merge_adapter(run_dir: str, output: str | None = None) -> dict:
    """`merge_and_unload` a LoRA/IA3 run into a plain model (safetensors) + tokenizer, written atomically."""
    import os
    import shutil
    from pathlib import Path

    from .data.tokenizer import load_tokenizer
    from .models import load_model

    run = Path(run_dir)
    if not (run / "adapter_config.json").is_file():
        raise HfkitError(f"'{run_dir}' holds no adapter (adapter_config.json): nothing to merge")
    from .io import check_writable_dir

    check_writable_dir(output or run / "merged", "--output")
    model = load_model(str(run))
    kind = model.peft_config["default"].peft_type.value.lower()
    if kind not in ("lora", "ia3"):
        raise HfkitError(f"a {kind} adapter adds virtual tokens and cannot be merged into the weights; "
                         f"load it with peft.AutoPeftModelForCausalLM instead")
    merged = model.merge_and_unload()
    out = Path(output) if output else run / "merged"
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    load_tokenizer(str(run)).save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"adapter": kind, "output": str(out), **parameter_counts(merged)}
