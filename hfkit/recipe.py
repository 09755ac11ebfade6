"""Recipes: a YAML file plus dotted `key=value` overrides, validated up front into plain dataclasses.

Sections follow the workflow (model, tokenizer, data, training, generate). `training` holds
`transformers.TrainingArguments` fields under their own names; everything else is hfkit's schema
below. Unknown keys, wrong types and missing files are `HfkitError`s naming the key.
"""
from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import HfkitError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

# Bare override keys every recipe accepts, mapped to where they live (other bare
# TrainingArguments names work too, see _canonical_key).
ALIASES = {"output_dir": "training.output_dir", "max_steps": "training.max_steps"}


@dataclass
class ModelConfig:
    architecture: Literal["gpt2", "llama", "bert"] = "gpt2"  # preset family when building from config (bert: mlm)
    name_or_path: Optional[str] = None  # start from this checkpoint (folder or Hub id) instead
    revision: Optional[str] = None  # Hub revision (branch, tag or commit) to pin
    trust_remote_code: bool = False  # never run code from a checkpoint unless asked
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # llama: grouped-query attention; default = num_heads
    intermediate_size: Optional[int] = None  # default: 4*hidden (gpt2), ~8/3*hidden (llama)
    max_position_embeddings: int = 512
    dropout: float = 0.0
    vocab_size: Optional[int] = None  # default: the tokenizer's size
    tie_word_embeddings: bool = True
    attn_implementation: Optional[str] = None  # eager | sdpa | flash_attention_2 ...
    extra: dict = field(default_factory=dict)  # any other config field, passed through


@dataclass
class TokenizerConfig:
    path: Optional[str] = None  # an existing tokenizer (folder or Hub id); null: train one
    kind: Literal["char", "word", "bpe", "wordpiece", "unigram"] = "bpe"
    vocab_size: int = 4096
    min_frequency: int = 2
    lowercase: bool = False


@dataclass
class SourceConfig:
    kind: Literal["default", "pydoc_qa", "text", "json", "csv", "parquet", "hub", "gettext"] = "default"
    path: Optional[str] = None  # file, folder or glob (text/json/csv/parquet), Hub dataset id, locale dir (gettext)
    name: Optional[str] = None  # label used in reports; default: derived from path/kind
    text_field: str = "text"
    sample_by: Literal["document", "paragraph", "line"] = "document"  # text files only
    config_name: Optional[str] = None  # hub: dataset configuration
    split: str = "train"  # hub: which split to read
    revision: Optional[str] = None  # hub: pin a revision
    lang: Optional[str] = None  # gettext: target language of the English->lang pairs (de, fr, ...)
    max_chars: Optional[int] = None  # gettext: drop pairs longer than this
    weight: Optional[float] = None  # share of the training mixture (GPT-3 style)
    epochs: Optional[float] = None  # or: how many passes over this source


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    min_chars: int = 1  # drop documents shorter than this
    max_chars: Optional[int] = None  # drop documents longer than this
    dedup: Literal["none", "exact", "normalized"] = "normalized"
    validation_fraction: float = 0.05  # per source, by document, deterministic (training.seed)
    block_size: int = 128  # tokens per packed training block
    mixture_tokens: Optional[int] = None  # size of the weighted mixture; default: all tokens once
    mlm_probability: float = 0.15  # task mlm: share of tokens masked (80% [MASK], 10% random, 10% kept)
    num_proc: Optional[int] = None  # processes for datasets.map


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=list)
    max_new_tokens: int = 40
    do_sample: bool = False
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    num_beams: int = 1
    num_return_sequences: int = 1
    repetition_penalty: Optional[float] = None


@dataclass
class TemplateConfig:
    prompt: str  # Jinja over the record's fields
    answer: str  # Jinja; its single field is what answer extraction returns
    name: Optional[str] = None


@dataclass
class SftConfig:
    format: Literal["instruction", "prompt_completion", "chat"] = "instruction"
    fields: dict = field(default_factory=dict)  # rename columns: {instruction: question, output: answer, ...}
    templates: list[TemplateConfig] = field(default_factory=list)  # several = FLAN-style mix; default per format
    chat_template: Optional[str] = None  # Jinja chat template; default: the tokenizer's own, else ChatML
    system_prompt: Optional[str] = None  # chat: prepended as a system message when a record has none
    completion_only_loss: bool = True  # loss on answers / assistant turns only
    packing: Literal["padding_free", "padded"] = "padding_free"  # padding_free: no pad tokens at all
    max_length: int = 512  # tokens per example; longer ones are cut in the answer, never in the prompt


@dataclass
class IclTaskConfig:
    task: str  # JSONL: question, answer, optional choices / rationale (see `hfkit eval icl`)
    shots: int = 0
    seed: int = 1234
    select: Literal["random", "similar"] = "random"
    template: Optional[str] = None  # default: "Question: {{question}}\nAnswer:"
    demos: Optional[str] = None  # JSONL of demonstrations; default: the task file minus the example
    limit: Optional[int] = None


@dataclass
class EvalConfig:
    # sft: generate on held-out records at the end of training (and before it) and score:
    # bleu, chrf, ter, rouge, accuracy, exact_match, token_f1
    metrics: list[str] = field(default_factory=list)
    max_examples: Optional[int] = 200  # held-out records to generate for (None: all)
    max_new_tokens: int = 64
    num_beams: int = 1
    batch_size: int = 32
    # any task: in-context evaluations run before and after training (as `hfkit eval icl` does)
    icl: list[IclTaskConfig] = field(default_factory=list)


@dataclass
class AdapterConfig:
    method: Literal["full", "selective", "lora", "ia3", "prompt_tuning", "prefix_tuning"] = "full"
    # selective: what stays trainable (everything else frozen)
    trainable_patterns: list[str] = field(default_factory=list)  # regexes on parameter names
    trainable_last_layers: Optional[int] = None  # the last N transformer blocks
    train_head: bool = False  # the output head (tied to the input embeddings in GPT-2)
    # lora / ia3
    r: int = 8  # higher: more capacity, more memory
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Optional[list[str]] = None  # default: peft's choice for the architecture
    feedforward_modules: Optional[list[str]] = None  # ia3 with explicit target_modules
    use_dora: bool = False
    # prompt / prefix tuning
    num_virtual_tokens: int = 20
    init_text: Optional[str] = None  # prompt tuning: initialise from this text's embeddings (else random)


@dataclass
class Recipe:
    task: Literal["clm", "sft", "mlm"] = "clm"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: dict = field(default_factory=dict)  # transformers.TrainingArguments fields
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- loading


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 scalars: only true/false are booleans (`save_strategy: no` stays the string
    'no'), and `3e-4` is a float."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


def resolve_recipe_path(name: str | Path) -> Path:
    """A path, or the name of a shipped recipe (`clm_pretrain` or `clm_pretrain.yaml`)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (RECIPES_DIR / p.name, RECIPES_DIR / f"{p.name}.yaml"):
        if not p.parent.parts and cand.is_file():
            return cand
    raise HfkitError(f"recipe file not found: {name} (shipped recipes: {', '.join(list_recipes()) or 'none'})")


def list_recipes() -> dict[str, str]:
    """Shipped recipes with the first line of their header comment."""
    out = {}
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in p.read_text().splitlines() if ln.startswith("#")), "")
        out[p.stem] = first
    return out


def parse_overrides(overrides: list[str] | dict | None) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` -> {"a.b": 1, "c": "x"}; values are parsed as YAML scalars/lists."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out = {}
    for item in overrides:
        if "=" not in item:
            raise HfkitError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise HfkitError(f"override '{item}' has an empty key")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def _canonical_key(key: str) -> str:
    """Bare TrainingArguments names (`max_steps`, `learning_rate`) are shorthand for `training.<name>`."""
    if key in ALIASES:
        return ALIASES[key]
    if "." not in key and key not in {f.name for f in dataclasses.fields(Recipe)}:
        from transformers import TrainingArguments

        if key in {f.name for f in dataclasses.fields(TrainingArguments)}:
            return f"training.{key}"
    return key


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = _canonical_key(key).split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = _list_slot(node, part, key)
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last) if last.isdigit() else -1
        if not 0 <= idx < len(node):
            raise HfkitError(f"override '{key}': index {last} is out of range (list has {len(node)} items)")
        node[idx] = value
    else:
        node[last] = value


def _list_slot(node: list, part: str, key: str) -> Any:
    if not part.isdigit() or int(part) >= len(node):
        raise HfkitError(f"override '{key}': '{part}' is not a valid index (list has {len(node)} items)")
    if not isinstance(node[int(part)], dict):
        node[int(part)] = {}
    return node[int(part)]


def load_recipe(path: str | Path | None, overrides: list[str] | dict | None = None) -> Recipe:
    """Read a recipe file (or start empty when `path` is None), apply overrides, validate."""
    tree: dict = {}
    if path is not None:
        p = resolve_recipe_path(path)
        try:
            tree = yaml_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise HfkitError(f"{p}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
        except UnicodeDecodeError:
            raise HfkitError(f"{p}: recipe is not UTF-8 text") from None
        if not isinstance(tree, dict):
            raise HfkitError(f"{p}: a recipe must be a YAML mapping of sections, got {type(tree).__name__}")
    for key, value in parse_overrides(overrides).items():
        _set_dotted(tree, key, value)
    recipe = build_dataclass(Recipe, tree, "")
    recipe.training = validate_training_args(recipe.training)
    _check_recipe(recipe)
    return recipe


# ----------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` checked (and lightly coerced) against annotation `tp`; raise _Mismatch."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [
            _coerce(v, inner, f"{key}[{i}]") if not dataclasses.is_dataclass(inner) else build_dataclass(inner, v, f"{key}.{i}")
            for i, v in enumerate(value)
        ]
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `3e-4` as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        if value in {m.value for m in tp}:
            return value
        raise _Mismatch
    return value  # an annotation we do not model: TrainingArguments checks it itself


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types by dotted name."""
    where = prefix or "recipe"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HfkitError(f"recipe key '{where}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in known:
            raise HfkitError(
                f"unknown recipe key '{prefix + '.' if prefix else ''}{k}' (known in {where}: {', '.join(sorted(known))})"
            )
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        try:
            kwargs[k] = _coerce(v, hints[k], key)
        except _Mismatch:
            raise HfkitError(
                f"recipe key '{key}' expects {_type_name(hints[k])}, got {type(v).__name__} {v!r}"
            ) from None
    return cls(**kwargs)


def validate_training_args(training: dict) -> dict:
    """Check `training` keys and value types against `transformers.TrainingArguments`."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    out = {}
    for k, v in training.items():
        if k not in known:
            close = [n for n in sorted(known) if n.startswith(k[:4])][:6]
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise HfkitError(f"unknown recipe key 'training.{k}': not a TrainingArguments field{hint}")
        try:
            out[k] = _coerce(v, hints.get(k, Any), f"training.{k}")
        except _Mismatch:
            raise HfkitError(
                f"recipe key 'training.{k}' expects {_type_name(hints[k])}, got {type(v).__name__} {v!r}"
            ) from None
    if not out.get("output_dir"):
        raise HfkitError("recipe key 'training.output_dir' is required (set it, or pass output_dir=PATH)")
    return out


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_hub_id(s: str) -> bool:
    return bool(_HUB_ID.match(s)) and not s.startswith((".", "/"))


def _check_recipe(r: Recipe) -> None:
    """Cross-field checks that need no heavy work: files exist, sizes agree."""
    from .data.sources import check_source

    if not r.data.sources:
        raise HfkitError("recipe key 'data.sources' is empty: give at least one source")
    for i, src in enumerate(r.data.sources):
        check_source(src, f"data.sources.{i}")
    for key, val in (("data.block_size", r.data.block_size), ("model.num_layers", r.model.num_layers)):
        if val < 1:
            raise HfkitError(f"recipe key '{key}' must be >= 1, got {val}")
    if not 0.0 <= r.data.validation_fraction < 1.0:
        raise HfkitError(f"recipe key 'data.validation_fraction' must be in [0, 1), got {r.data.validation_fraction}")
    for key, val, what in (("tokenizer.path", r.tokenizer.path, "tokenizer"),
                           ("model.name_or_path", r.model.name_or_path, "model")):
        if val and not Path(val).exists() and not looks_like_hub_id(val):
            hint = " (train it first: `make demo` or `hfkit train clm_pretrain`)" if val.startswith("runs/") else ""
            raise HfkitError(f"recipe key '{key}': no such {what} folder: {val}{hint}")
    if (r.task == "mlm") != (r.model.architecture == "bert") and not r.model.name_or_path:
        raise HfkitError(f"recipe key 'model.architecture'={r.model.architecture} does not fit task {r.task} "
                         f"(mlm needs bert; clm/sft need gpt2 or llama)")
    if r.adapter.method not in ("full", "selective") and not r.model.name_or_path:
        raise HfkitError(f"adapter.method={r.adapter.method} needs a pretrained base: set model.name_or_path "
                         f"(a run folder such as runs/clm_pretrain, or a Hub id)")
    if r.adapter.method in ("prompt_tuning", "prefix_tuning") and r.task == "sft" and r.sft.packing == "padding_free":
        raise HfkitError(f"adapter.method={r.adapter.method} adds virtual tokens in front of every sequence, "
                         f"which padding-free packing cannot place: set sft.packing=padded")
    if r.sft.max_length < 2:
        raise HfkitError(f"recipe key 'sft.max_length' must be >= 2, got {r.sft.max_length}")
    from .evaluation.metrics import TEXT_METRICS

    unknown = [m for m in r.eval.metrics if m not in TEXT_METRICS]
    if unknown:
        raise HfkitError(f"recipe key 'eval.metrics': unknown metric '{unknown[0]}' (expected {', '.join(TEXT_METRICS)})")
    if r.model.name_or_path is None:
        if r.task == "sft" and r.sft.max_length > r.model.max_position_embeddings:
            raise HfkitError(
                f"recipe key 'sft.max_length'={r.sft.max_length} exceeds the model's maximum positions "
                f"(model.max_position_embeddings={r.model.max_position_embeddings})"
            )
        if r.task in ("clm", "mlm") and r.data.block_size > r.model.max_position_embeddings:
            raise HfkitError(
                f"recipe key 'data.block_size'={r.data.block_size} exceeds the model's maximum positions "
                f"(model.max_position_embeddings={r.model.max_position_embeddings})"
            )
        if r.model.hidden_size % r.model.num_heads:
            raise HfkitError(
                f"recipe key 'model.hidden_size'={r.model.hidden_size} is not divisible by model.num_heads={r.model.num_heads}"
            )
