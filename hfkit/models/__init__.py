"""Architecture presets built from config, and loading of checkpoints by folder or Hub id."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from transformers import (AutoModelForCausalLM, BartConfig, BertConfig, GPT2Config, LlamaConfig,
                          PretrainedConfig, PreTrainedModel, T5Config)

from ..errors import HfkitError
from ..hub import check_model_ref


@dataclass
class ModelConfig:
    """Recipe section `model`: a preset built from config, or a checkpoint to start from."""
    architecture: Literal["gpt2", "llama", "bert", "t5", "bart", "ngram", "bigram", "context_average", "window_ffn", "rnn",
                          "lstm", "gru", "wavenet"] = "gpt2"  # preset family when building from config
    name_or_path: Optional[str] = None  # start from this checkpoint (folder or Hub id) instead
    random_init: bool = False  # with name_or_path: its config (and tokenizer), fresh random weights: a baseline twin
    revision: Optional[str] = None  # Hub revision (branch, tag or commit) to pin
    trust_remote_code: bool = False  # never run code from a checkpoint unless asked
    hidden_size: int = 256
    num_layers: int = 4  # per stack for encoder-decoders (t5, bart): that many encoder and decoder layers
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # llama: grouped-query attention; default = num_heads
    intermediate_size: Optional[int] = None  # default: 4*hidden (gpt2, bert), ~8/3*hidden (llama)
    max_position_embeddings: int = 512
    dropout: float = 0.0
    vocab_size: Optional[int] = None  # default: the tokenizer's size
    tie_word_embeddings: bool = True
    attn_implementation: Optional[str] = None  # eager | sdpa | flash_attention_2 ...
    # how from_pretrained loads a checkpoint, in transformers' own words
    dtype: Optional[str] = None  # auto | float32 | bfloat16 | float16 (default: float32)
    device_map: Any = None  # auto | cpu | cuda:0 | {module: device}: accelerate's placement
    quantization: dict = field(default_factory=dict)  # BitsAndBytesConfig fields: load_in_4bit, bnb_4bit_quant_type...
    extra: dict = field(default_factory=dict)  # any other config field, passed through

    def validate(self, prefix: str) -> None:
        if self.random_init and not self.name_or_path:
            raise HfkitError(f"recipe key '{prefix}.random_init' takes its config from {prefix}.name_or_path: set it")
        for key in ("num_layers", "num_heads", "hidden_size", "max_position_embeddings"):
            if getattr(self, key) < 1:
                raise HfkitError(f"recipe key '{prefix}.{key}' must be >= 1, got {getattr(self, key)}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise HfkitError(f"recipe key '{prefix}.dtype'={self.dtype!r}: one of {', '.join(DTYPES)}")
        if self.device_map is not None and not isinstance(self.device_map, (str, dict)):
            raise HfkitError(f"recipe key '{prefix}.device_map' expects a string (auto, cpu, cuda:0) or a mapping of "
                             f"modules to devices, got {self.device_map!r}")
        if self.quantization:
            if not self.name_or_path:
                raise HfkitError(f"recipe key '{prefix}.quantization' loads a checkpoint in 4 or 8 bits: set "
                                 f"{prefix}.name_or_path (a model built from scratch is not quantized)")
            quantization_config(self.quantization, f"{prefix}.quantization")
        if self.name_or_path is None and self.architecture not in CLASSIC and self.hidden_size % self.num_heads:
            raise HfkitError(f"recipe key '{prefix}.hidden_size'={self.hidden_size} is not divisible by "
                             f"{prefix}.num_heads={self.num_heads}")


DTYPES = ("auto", "float32", "bfloat16", "float16")


def quantization_config(fields: dict, where: str = "model.quantization"):
    """`transformers.BitsAndBytesConfig` from the recipe's fields, checked against the class's own
    parameters and its own value checks; bitsandbytes must be installed."""
    import difflib
    import importlib.util
    import inspect

    from transformers import BitsAndBytesConfig

    known = [n for n in inspect.signature(BitsAndBytesConfig.__init__).parameters if n not in ("self", "kwargs")]
    for key in fields:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise HfkitError(f"recipe key '{where}.{key}' is not a BitsAndBytesConfig field"
                             + (f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(known)})"))
    if not (fields.get("load_in_4bit") or fields.get("load_in_8bit")):
        raise HfkitError(f"recipe section '{where}' quantizes nothing: set load_in_4bit: true (QLoRA) or "
                         f"load_in_8bit: true")
    if fields.get("bnb_4bit_quant_type", "fp4") not in ("nf4", "fp4"):
        raise HfkitError(f"recipe key '{where}.bnb_4bit_quant_type'={fields['bnb_4bit_quant_type']!r}: one of nf4 "
                         f"(QLoRA's), fp4")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise HfkitError(f"recipe section '{where}' needs the bitsandbytes package, which is not installed "
                         f"(pip install bitsandbytes)")
    try:
        return BitsAndBytesConfig(**fields)
    except (ValueError, TypeError) as e:
        raise HfkitError(f"recipe section '{where}': {str(e).splitlines()[0][:300]}") from None


def loading_kwargs(cfg: "ModelConfig") -> dict:
    """What from_pretrained takes from the recipe's model section: attn_implementation, dtype,
    device_map and the quantization config."""
    import torch

    kw: dict = {}
    if cfg.attn_implementation:
        kw["attn_implementation"] = cfg.attn_implementation
    if cfg.dtype:
        kw["dtype"] = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
    if cfg.device_map is not None:
        kw["device_map"] = cfg.device_map
    if cfg.quantization:
        kw["quantization_config"] = quantization_config(cfg.quantization)
    return kw


def _special_ids(tokenizer) -> dict:
    return {"bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}


def _gpt2(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab, n_positions=cfg.max_position_embeddings, n_embd=cfg.hidden_size,
        n_layer=cfg.num_layers, n_head=cfg.num_heads, n_inner=cfg.intermediate_size,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings, **ids,
    )


def _bert(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    return BertConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        max_position_embeddings=cfg.max_position_embeddings, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, pad_token_id=ids["pad_token_id"],
        tie_word_embeddings=cfg.tie_word_embeddings,
    )


def _llama(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    # Llama's SwiGLU MLP: ~8/3 * hidden keeps the parameter count of a 4x GELU MLP; round to 64
    inter = cfg.intermediate_size or 64 * ((int(8 * cfg.hidden_size / 3) + 63) // 64)
    kv = cfg.num_kv_heads or cfg.num_heads
    if cfg.num_heads % kv:
        raise HfkitError(f"recipe key 'model.num_kv_heads'={kv} must divide model.num_heads={cfg.num_heads}")
    return LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, intermediate_size=inter,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=kv,
        max_position_embeddings=cfg.max_position_embeddings, attention_dropout=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings, **ids,
    )


def _t5(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    # T5 v1.0: ReLU feed-forward, relative position buckets (no position limit); decoding starts at <pad>
    return T5Config(
        vocab_size=vocab, d_model=cfg.hidden_size, d_kv=cfg.hidden_size // cfg.num_heads,
        d_ff=cfg.intermediate_size or 4 * cfg.hidden_size, num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads, dropout_rate=cfg.dropout,
        pad_token_id=ids["pad_token_id"], eos_token_id=ids["eos_token_id"], decoder_start_token_id=ids["pad_token_id"],
        tie_word_embeddings=cfg.tie_word_embeddings,
    )


def _bart(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    # BART: learned positions; the decoder starts from </s> (labels <s> ... </s>, shifted right)
    return BartConfig(
        vocab_size=vocab, d_model=cfg.hidden_size, encoder_layers=cfg.num_layers, decoder_layers=cfg.num_layers,
        encoder_attention_heads=cfg.num_heads, decoder_attention_heads=cfg.num_heads,
        encoder_ffn_dim=cfg.intermediate_size or 4 * cfg.hidden_size,
        decoder_ffn_dim=cfg.intermediate_size or 4 * cfg.hidden_size, max_position_embeddings=cfg.max_position_embeddings,
        dropout=cfg.dropout, attention_dropout=cfg.dropout, pad_token_id=ids["pad_token_id"],
        bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], decoder_start_token_id=ids["eos_token_id"],
        forced_eos_token_id=ids["eos_token_id"], tie_word_embeddings=cfg.tie_word_embeddings,
    )


def _classic(name: str) -> Callable[[ModelConfig, int, dict], PretrainedConfig]:
    """A classic LM (hfkit.models.classic): hidden_size, num_layers and dropout from the recipe; the
    feed-forward LM's window is `model.extra.context_size` (default 4); the n-gram's `model.extra.order`
    (3), `smoothing` (kneser_ney | add_k), `discount`, `add_k`."""
    def build(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
        if name == "ngram":  # counted, not trained: no sizes
            return classic.NGramConfig(vocab_size=vocab, **ids)
        kw = dict(vocab_size=vocab, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, dropout=cfg.dropout, **ids)
        if name in classic.CELLS:
            return classic.RecurrentConfig(cell=name, **kw)
        return {"bigram": classic.BigramConfig, "context_average": classic.ContextAverageConfig,
                "window_ffn": classic.WindowFfnConfig, "wavenet": classic.WaveNetConfig}[name](**kw)
    return build


CLASSIC = ("ngram", "bigram", "context_average", "window_ffn", "rnn", "lstm", "gru", "wavenet")
# `model.architecture` -> the transformers config it builds
PRESETS: dict[str, Callable[[ModelConfig, int, dict], PretrainedConfig]] = {
    "gpt2": _gpt2, "llama": _llama, "bert": _bert, "t5": _t5, "bart": _bart, **{n: _classic(n) for n in CLASSIC}}


RELATIVE_POSITIONS = ("t5", *CLASSIC)  # presets with no learned positions: no length limit


def preset_positions(cfg: ModelConfig) -> int | None:
    """The longest sequence a preset built from the recipe takes (None: no limit)."""
    return None if cfg.architecture in RELATIVE_POSITIONS else cfg.max_position_embeddings


def model_config(cfg: ModelConfig, tokenizer) -> PretrainedConfig:
    """The preset's config sized by the recipe, with the tokenizer's vocabulary and special ids."""
    vocab = cfg.vocab_size or len(tokenizer)
    if vocab < len(tokenizer):
        raise HfkitError(
            f"recipe key 'model.vocab_size'={vocab} is smaller than the tokenizer's vocabulary ({len(tokenizer)} tokens)"
        )
    return _preset_config(cfg, vocab, _special_ids(tokenizer))


def config_for_recipe(cfg: ModelConfig) -> PretrainedConfig:
    """The model's config before there is a tokenizer: the checkpoint's own, or the preset sized by
    the recipe (with its vocab_size, or a stand-in vocabulary): what preflight checks are built on."""
    if cfg.name_or_path:
        import json

        from transformers import AutoConfig

        path, key = cfg.name_or_path, "recipe key 'model.name_or_path'"
        check_model_ref(path, key, cfg.revision)
        local = Path(path)
        if (local / "adapter_config.json").is_file():  # an adapter run: its base model's config
            path = json.loads((local / "adapter_config.json").read_text()).get("base_model_name_or_path") or path
        elif local.is_dir() and not (local / "config.json").is_file():
            raise HfkitError(f"{key}: model folder '{path}' has no config.json: not a saved model")
        try:
            return AutoConfig.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        except Exception as e:
            raise HfkitError(f"recipe key 'model.name_or_path': cannot read a model config from "
                             f"'{cfg.name_or_path}': {str(e).splitlines()[0][:200]}") from None
    return _preset_config(cfg, cfg.vocab_size or 1024, {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1})


def _preset_config(cfg: ModelConfig, vocab: int, ids: dict) -> PretrainedConfig:
    config = PRESETS[cfg.architecture](cfg, vocab, ids)
    for k, v in cfg.extra.items():
        if not hasattr(config, k):
            raise HfkitError(f"recipe key 'model.extra.{k}' is not a field of {type(config).__name__}")
        setattr(config, k, v)
    return config


def auto_class_for(config: PretrainedConfig, auto_class):
    """The Auto class for `config`: a task that generates (AutoModelForCausalLM) gets an
    encoder-decoder's AutoModelForSeq2SeqLM instead."""
    if auto_class is AutoModelForCausalLM and getattr(config, "is_encoder_decoder", False):
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM
    return auto_class


def with_overrides(config: PretrainedConfig, overrides: dict | None) -> PretrainedConfig:
    """`config` with a task's fields set (a head's num_labels, id2label, label2id, problem_type...)."""
    for k, v in (overrides or {}).items():
        setattr(config, k, v)
    return config


def build_model(cfg: ModelConfig, tokenizer, auto_class=AutoModelForCausalLM,
                config_overrides: dict | None = None) -> PreTrainedModel:
    """From scratch (`auto_class.from_config`) or from `cfg.name_or_path`; the task names the Auto class
    and the config fields its head needs (`config_overrides`: labels and their names)."""
    kw = loading_kwargs(cfg)
    scratch = {k: v for k, v in kw.items() if k in ("attn_implementation", "dtype") and v != "auto"}
    if cfg.name_or_path and cfg.random_init:  # the checkpoint's architecture and sizes, untrained
        config = with_overrides(config_for_recipe(cfg), config_overrides)
        return auto_class_for(config, auto_class).from_config(config, **scratch)
    if cfg.name_or_path:
        model = load_model(cfg.name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                           auto_class=auto_class, **kw, **(config_overrides or {}))
        emb = model.get_input_embeddings().num_embeddings
        if len(tokenizer) > emb:
            raise HfkitError(
                f"tokenizer has {len(tokenizer)} tokens but model '{cfg.name_or_path}' has only {emb} embeddings"
            )
        return model
    config = with_overrides(model_config(cfg, tokenizer), config_overrides)
    return auto_class_for(config, auto_class).from_config(config, **scratch)


def max_positions(config: PretrainedConfig) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(config, name, None)
        if isinstance(v, int):
            return v
    return None


def load_model(path: str, revision: str | None = None, trust_remote_code: bool = False,
                   auto_class=AutoModelForCausalLM, **kw) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained` (`AutoModelForSeq2SeqLM` for an encoder-decoder checkpoint,
    or `auto_class`) with one-line errors for a folder that is no model."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise HfkitError(f"model path '{path}' is a file; give the model folder (with config.json)")
    check_model_ref(path, f"model '{path}'", revision)
    if p.is_dir() and (p / "adapter_config.json").exists():
        return load_adapter_model(str(p.resolve()), trust_remote_code=trust_remote_code, **kw)
    if p.is_dir() and not (p / "config.json").exists():
        raise HfkitError(f"model folder '{path}' has no config.json: not a saved model")
    if p.is_dir():
        path = str(p.resolve())  # so adapters trained on it record a base path that works from anywhere
    try:
        if auto_class is AutoModelForCausalLM:  # an encoder-decoder checkpoint generates through its seq2seq class
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
            auto_class = auto_class_for(config, auto_class)
        return auto_class.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **kw)
    except HfkitError:
        raise
    except Exception as e:
        import os

        hint = ""
        if not p.exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
            hint = (" — it is not in the local Hub cache and HF_HUB_OFFLINE=1: download it once online, or cache "
                    "a local copy with `hfkit hub import FOLDER --repo-id ID`")
        raise HfkitError(f"cannot load a model from '{path}'{hint}: {str(e).splitlines()[0][:200]}") from None


def load_adapter_model(path: str, trust_remote_code: bool = False, **kw):
    """A saved peft adapter on its base model (`AutoPeftModelForCausalLM`), with one-line errors."""
    import json

    from peft import AutoPeftModelForCausalLM

    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    try:
        return AutoPeftModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **kw)
    except RuntimeError as e:
        if "size mismatch" in str(e):
            raise HfkitError(f"adapter '{path}' does not fit its base model '{base}': "
                             f"{str(e).splitlines()[1].strip()[:200] if len(str(e).splitlines()) > 1 else str(e)[:200]}") from None
        raise HfkitError(f"cannot load adapter '{path}' on base '{base}': {str(e).splitlines()[0][:200]}") from None
    except (OSError, ValueError) as e:
        raise HfkitError(f"cannot load adapter '{path}' on base '{base}': {str(e).splitlines()[0][:200]}") from None



def require_causal(model, what: str) -> None:
    """Scores that read a decoder's next-token distribution over one sequence need a causal LM."""
    if getattr(model.config, "is_encoder_decoder", False):
        raise HfkitError(f"{what} scores a decoder-only (causal) LM; this is an encoder-decoder model "
                         f"({type(model).__name__}): score a continuation given its input (hfkit eval perplexity "
                         f"--prefix/--continuation, or --prefix-field/--continuation-field), or evaluate by "
                         f"generation (hfkit eval bleu/rouge/match)")


from . import classic  # noqa: E402,F401  (registers the classic LMs with AutoConfig / AutoModelForCausalLM)
