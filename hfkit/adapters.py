"""How much of a model trains: full, selective (a frozen subset), or any peft method by name.

One entry point (`apply_adapter`). `adapter.method` is `full`, `selective` (hfkit's own: plain
`requires_grad`), or the name of a peft method (`lora`, `adalora`, `loha`, `lokr`, `vera`, `oft`,
`ia3`, `prompt_tuning`, `prefix_tuning`, `p_tuning`, ...: every `peft.PeftType`, lower case). For a
peft method every other key of the section is a field of that method's peft config class, under
peft's own name (`r`, `lora_alpha`, `lora_dropout`, `target_modules`, `num_virtual_tokens`, ...),
checked against the class when the recipe is read. Every run reports trainable / total.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import PreTrainedModel

from .errors import HfkitError
from .schema import check_fields, one_line

_LAYER = re.compile(r"\.(?:layers|h|layer|block)\.(\d+)\.")
_HEADS = ("lm_head", "score", "classifier", "qa_outputs", "cls")
HFKIT_METHODS = ("full", "selective")
DEFAULT_VIRTUAL_TOKENS = 20  # prompt/prefix/p-tuning without num_virtual_tokens
# peft config fields that hfkit (or peft itself) sets: not recipe keys
_PEFT_INTERNAL = ("task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
                  "inference_mode")


def peft_methods() -> dict[str, type]:
    """Every peft method by its recipe name (`PeftType` in lower case) -> its config class."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    return {t.value.lower(): cls for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


@dataclass
class AdapterConfig:
    """Recipe section `adapter`. Keys other than these are the peft method's own config fields."""
    method: str = "full"  # full | selective | a peft method: lora, adalora, loha, lokr, vera, oft, ia3, prompt_tuning, ...
    # selective: what stays trainable (everything else frozen)
    trainable_patterns: list[str] = field(default_factory=list)  # regexes on parameter names
    trainable_last_layers: Optional[int] = None  # the last N transformer blocks
    train_head: bool = False  # the output head (tied to the input embeddings in GPT-2)
    options: dict = field(default_factory=dict)  # the peft config's fields (r, lora_alpha, ...), by peft's names

    EXTRA_FIELD = "options"
    RENAMED = {"init_text": "prompt_tuning_init_text"}
    # hfkit's old names of LoRA fields, for a method that does not have a field of that name itself
    RENAMED_FIELDS = {"alpha": "lora_alpha", "dropout": "lora_dropout"}

    @classmethod
    def from_dict(cls, data: dict, prefix: str = "adapter") -> "AdapterConfig":
        from .schema import build_dataclass

        return build_dataclass(cls, data, prefix)

    @property
    def is_peft(self) -> bool:
        return self.method not in HFKIT_METHODS

    def validate(self, prefix: str) -> None:
        methods = peft_methods()
        if self.method not in HFKIT_METHODS and self.method not in methods:
            raise HfkitError(f"recipe key '{prefix}.method': unknown method '{self.method}' (hfkit: "
                             f"{', '.join(HFKIT_METHODS)}; peft: {', '.join(sorted(methods))})")
        if self.is_peft:
            from peft import PromptLearningConfig

            cls = methods[self.method]
            self.options = check_fields(cls, self.options, prefix, skip=_PEFT_INTERNAL, renamed=self.RENAMED_FIELDS)
            if issubclass(cls, PromptLearningConfig) and self.options.get("num_virtual_tokens") is None:
                self.options["num_virtual_tokens"] = DEFAULT_VIRTUAL_TOKENS  # peft has no default
            if self.trainable_patterns or self.trainable_last_layers or self.train_head:
                raise HfkitError(f"recipe keys '{prefix}.trainable_*'/'{prefix}.train_head' belong to "
                                 f"method selective, not {self.method}")
        elif self.options:
            key = next(iter(self.options))
            hint = (f" (a field of peft methods; this is method {self.method})"
                    if any(key in {f.name for f in dataclasses.fields(c)} for c in methods.values()) else "")
            raise HfkitError(f"unknown recipe key '{prefix}.{key}'{hint}")

    @property
    def virtual_tokens(self) -> int:
        """Tokens a prompt-learning method puts in front of every sequence (0 for the others)."""
        if not self.is_peft:
            return 0
        from peft import PromptLearningConfig

        if not issubclass(peft_methods()[self.method], PromptLearningConfig):
            return 0
        return int(self.options.get("num_virtual_tokens") or DEFAULT_VIRTUAL_TOKENS)


# fields with one meaning under two methods' names: carried over when a recipe switches method
_SAME_MEANING = {"lora_alpha": ("alpha",), "alpha": ("lora_alpha",), "lora_dropout": ("vera_dropout",),
                 "vera_dropout": ("lora_dropout",)}
# fields whose name the new method shares with LoRA's but not their meaning: not carried over
_OTHER_MEANING = {"oft": {"r"}, "boft": {"r"}}


def switch_method(section: dict, old: str | None, given: set[str]) -> tuple[dict, list[str]]:
    """An `adapter` section whose `method` was changed (by an override or a recipe's `base:`) keeps
    what the new method has, maps the fields it names otherwise (LoRA's `lora_alpha` is LoHa's
    `alpha`) and drops the rest; `given`: keys set together with the new method, never touched.
    Returns the section and what happened, for one note to the user."""
    new = section.get("method", "full")
    methods = peft_methods()
    own = {f.name for f in dataclasses.fields(AdapterConfig)} - {"options"}
    fields = ({f.name for f in dataclasses.fields(methods[new])} - set(_PEFT_INTERNAL)) if new in methods else set()
    out, mapped, dropped = {}, [], []
    for k, v in section.items():
        if k in own or k in given or (k in fields and k not in _OTHER_MEANING.get(new, ())):
            out[k] = v
            continue
        alias = next((a for a in _SAME_MEANING.get(k, ()) if a in fields and a not in section
                      and a not in _OTHER_MEANING.get(new, ())), None)
        if alias:
            out[alias] = v
            mapped.append(f"{k} -> {alias}")
        else:
            dropped.append(k)
    if not (mapped or dropped):
        return section, []
    notes = [f"adapter.method={new} (was {old or 'full'}):"]
    if mapped:
        notes.append(f"mapped {', '.join(mapped)};")
    if dropped:
        what = f"{methods[new].__name__} fields" if new in methods else f"settings of method {new}"
        notes.append(f"dropped {', '.join(dropped)} (not {what})")
    return out, notes


def peft_config(cfg: AdapterConfig, model, task_type: str, max_steps: int | None = None,
                tokenizer_name: str | None = None):
    """The peft config of the recipe's method for `model`: the recipe's fields, the task's peft task
    type, and defaults where peft needs one per architecture (target modules, GPT-2's Conv1D)."""
    cls = peft_methods()[cfg.method]
    names = {f.name for f in dataclasses.fields(cls)}
    kw = dict(cfg.options)
    if kw.get("target_modules"):
        _check_targets(model, kw["target_modules"] if isinstance(kw["target_modules"], list) else [kw["target_modules"]])
    elif cfg.method == "lora":
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

        kw["target_modules"] = known.get(model.config.model_type, "all-linear")  # peft's per-architecture default
    if "fan_in_fan_out" in names and "fan_in_fan_out" not in kw:
        kw["fan_in_fan_out"] = model.config.model_type == "gpt2"  # GPT-2's Conv1D stores weights transposed
    if "total_step" in names and kw.get("total_step") is None and max_steps and max_steps > 0:
        kw["total_step"] = max_steps  # AdaLoRA's rank schedule spans the run
    if kw.get("prompt_tuning_init_text") and "prompt_tuning_init" in names:
        kw.setdefault("prompt_tuning_init", "TEXT")  # initialise from the text's embeddings
        kw.setdefault("tokenizer_name_or_path", tokenizer_name)
    try:
        return cls(task_type=task_type, **kw)
    except (ValueError, TypeError) as e:
        raise HfkitError(f"recipe section 'adapter' (peft {cls.__name__}): {one_line(e)}") from None


def parameter_counts(model: torch.nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total,
            "trainable_percent": round(100 * trainable / total, 4) if total else 0.0}  # a count-based model has none


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Distinct leaf names of the linear layers an adapter could target (q_proj, c_attn, ...)."""
    from transformers.pytorch_utils import Conv1D

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    return sorted(names - {"lm_head"})


def _check_targets(model, targets: list[str]) -> None:
    modules = [n for n, _ in model.named_modules()]
    for t in targets:
        if t == "all-linear":
            continue
        if not any(n == t or n.endswith("." + t) for n in modules):
            raise HfkitError(f"recipe key 'adapter.target_modules': '{t}' matches no module of "
                             f"{type(model).__name__} (linear modules: {', '.join(linear_module_names(model))})")


def _selective(model: PreTrainedModel, cfg: AdapterConfig) -> PreTrainedModel:
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


def apply_adapter(model: PreTrainedModel, cfg: AdapterConfig, tokenizer=None, task_type: str = "CAUSAL_LM",
                  max_steps: int | None = None, tokenizer_name: str | None = None):
    """Return the model to train (a PeftModel for peft methods) and its parameter counts.
    `tokenizer_name`: where peft loads the tokenizer from (prompt tuning from text), when not `tokenizer`'s."""
    if cfg.method == "selective":
        model = _selective(model, cfg)
    elif cfg.is_peft:
        from peft import get_peft_model

        pc = peft_config(cfg, model, task_type, max_steps,
                         tokenizer_name or (tokenizer.name_or_path if tokenizer is not None else None))
        try:
            model = get_peft_model(model, pc)
        except (ValueError, TypeError, KeyError, NotImplementedError, AttributeError) as e:
            raise HfkitError(f"adapter.method={cfg.method} cannot be applied to {type(model).__name__}: "
                             f"{one_line(e)}") from None
    return model, {"method": cfg.method, **parameter_counts(model)}


def lora_parameter_formula(model) -> int:
    """The course formula: r * (d + k) summed over every adapted d x k matrix."""
    total = 0
    for module in model.modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a, b = module.lora_A["default"], module.lora_B["default"]
            total += a.weight.shape[0] * (a.weight.shape[1] + b.weight.shape[0])
    return total


def merge_adapter(run_dir: str, output: str | None = None, overwrite: bool = False) -> dict:
    """`merge_and_unload` an adapter run (LoRA, IA3, LoHa, ...) into a plain model (safetensors) +
    tokenizer, in a new folder (never the adapter's or the base model's own), moved into place whole."""
    import json
    from pathlib import Path

    from .data.tokenizer import load_tokenizer
    from .models import load_model
    from .outputs import plan_output, write_folder

    run = Path(run_dir)
    if not (run / "adapter_config.json").is_file():
        raise HfkitError(f"'{run_dir}' holds no adapter (adapter_config.json): nothing to merge")
    base = json.loads((run / "adapter_config.json").read_text()).get("base_model_name_or_path")
    out = Path(output) if output else run / "merged"
    inputs = {"adapter run": str(run), "base model": base}
    plan_output(out, "merge", "--output", overwrite=overwrite, inputs=inputs)  # before loading anything
    model = load_model(str(run))
    pc = model.peft_config["default"]
    kind = pc.peft_type.value.lower()
    if pc.is_prompt_learning:
        raise HfkitError(f"a {kind} adapter adds virtual tokens and cannot be merged into the weights; "
                         f"load it with peft.AutoPeftModelForCausalLM instead")
    try:
        merged = model.merge_and_unload()
    except (ValueError, TypeError, NotImplementedError, AttributeError) as e:
        raise HfkitError(f"a {kind} adapter cannot be merged: {one_line(e)}") from None
    tokenizer = load_tokenizer(str(run))

    def write(folder: Path) -> None:
        merged.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_folder(out, "merge", "--output", write, overwrite=overwrite, inputs=inputs, adapter=str(run.resolve()))
    return {"adapter": kind, "output": str(out), **parameter_counts(merged)}
