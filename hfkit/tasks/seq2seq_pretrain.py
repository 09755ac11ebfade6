"""Encoder-decoder pretraining on running text: T5 span corruption (`task: t5_span`) and BART
denoising (`task: bart_denoise`). Both pack the corpus as `clm` does and noise each block in the
collator (hfkit.data.noising); validation blocks are noised once, with a fixed seed, so every
evaluation scores the same inputs. The model is `AutoModelForSeq2SeqLM` (presets `t5`, `bart`);
the validation loss is the decoder's token NLL, so its exp is logged as perplexity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.noising import bart_noise, span_corrupt, span_noise_mask, t5_lengths
from ..errors import HfkitError
from . import register
from .clm import PackedTextTask


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def _already_noised(features, pad_id: int) -> dict | None:
    """Validation examples noised once already (inputs and labels): padded as they are."""
    if not (isinstance(features[0], dict) and "labels" in features[0]):
        return None
    ids = _pad([list(f["input_ids"]) for f in features], pad_id)
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long() if pad_id is not None else torch.ones_like(ids),
            "labels": _pad([list(f["labels"]) for f in features], -100)}


def _check_block(recipe, what: str, least: int = 8) -> None:
    if recipe.data.block_size < least:
        raise HfkitError(f"recipe key 'data.block_size'={recipe.data.block_size}: blocks this short leave nothing to "
                         f"{what} (at least {least} tokens)")


class NoisingCollator:
    """Blocks of raw tokens -> (noised input, target) pairs, padded into a batch; examples that carry
    labels already (validation, noised once) are only padded. Subclasses implement `noise`."""
    pad: int

    def noise(self, ids: list[int]) -> tuple[list[int], list[int]]:
        raise NotImplementedError

    def __call__(self, features) -> dict:
        done = _already_noised(features, self.pad)
        if done is not None:
            return done
        pairs = [self.noise([int(t) for t in f["input_ids"]]) for f in features]
        return _batch([x for x, _ in pairs], [y for _, y in pairs], self.pad)


def _batch(inputs: list[list[int]], labels: list[list[int]], pad_id: int) -> dict:
    ids = _pad(inputs, pad_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(inputs):
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": _pad(labels, -100)}


# ----------------------------------------------------------------------------- T5


@dataclass
class T5SpanConfig:
    """Recipe section `t5_span`."""
    noise_density: float = 0.15  # share of each block dropped into spans
    mean_noise_span_length: float = 3.0  # longer spans: a harder, more generative task
    num_sentinels: int = 100  # <extra_id_0> ... added to a tokenizer trained here

    def validate(self, prefix: str) -> None:
        if not 0 < self.noise_density < 1:
            raise HfkitError(f"recipe key '{prefix}.noise_density' must be in (0, 1), got {self.noise_density}")
        if self.mean_noise_span_length < 1:
            raise HfkitError(f"recipe key '{prefix}.mean_noise_span_length' must be >= 1, got "
                             f"{self.mean_noise_span_length}")
        if self.num_sentinels < 1:
            raise HfkitError(f"recipe key '{prefix}.num_sentinels' must be >= 1, got {self.num_sentinels}")


def sentinel_tokens(n: int) -> list[str]:
    return [f"<extra_id_{i}>" for i in range(n)]


class SpanCorruptionCollator(NoisingCollator):
    """Blocks of raw tokens -> T5 inputs (spans replaced by sentinels, + EOS) and targets."""

    def __init__(self, tokenizer, noise_density: float, mean_noise_span_length: float, num_sentinels: int):
        self.noise_density, self.mean_span = noise_density, mean_noise_span_length
        self.sentinels = tokenizer.convert_tokens_to_ids(sentinel_tokens(num_sentinels))
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def noise(self, ids: list[int]) -> tuple[list[int], list[int]]:
        return span_corrupt(ids, span_noise_mask(len(ids), self.noise_density, self.mean_span), self.sentinels,
                            self.eos)


@register
class T5SpanCorruption(PackedTextTask):
    name = "t5_span"
    section = "t5_span"
    config_class = T5SpanConfig
    auto_class = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    pipeline_tag = "text2text-generation"
    pipeline_task = None  # transformers 5 has no text2text pipeline: generate() it is
    architectures = ("t5",)
    causal = False
    noisy = True

    def check(self, recipe) -> None:
        cfg = recipe.task_config
        _check_block(recipe, "span corruption")
        raw, _ = t5_lengths(recipe.data.block_size, cfg.noise_density, cfg.mean_noise_span_length)
        spans = max(int(round(min(raw * cfg.noise_density, raw * (1 - cfg.noise_density)) / cfg.mean_noise_span_length)), 1)
        if spans > cfg.num_sentinels:
            raise HfkitError(f"recipe key 't5_span.num_sentinels'={cfg.num_sentinels}: blocks of {raw} tokens make "
                             f"{spans} noise spans, each needing its own sentinel")

    def special_tokens(self, recipe) -> list[str]:
        return sentinel_tokens(recipe.task_config.num_sentinels)

    def check_tokenizer(self, tokenizer, where: str) -> None:
        missing = [t for t in sentinel_tokens(1) if t not in tokenizer.get_vocab()]
        if missing:
            raise HfkitError(f"tokenizer '{where}' has no sentinel tokens (<extra_id_0>, <extra_id_1>, ...) for span "
                             f"corruption: add them (tokenizer.add_special_tokens({{'additional_special_tokens': "
                             f"['<extra_id_0>', ...]}}) and save it), or train one here (tokenizer.path: null)")
        if tokenizer.eos_token is None:
            raise HfkitError(f"tokenizer '{where}' has no eos_token, needed to end inputs and targets")

    def block_length(self, recipe) -> int:
        cfg = recipe.task_config
        return t5_lengths(recipe.data.block_size, cfg.noise_density, cfg.mean_noise_span_length)[0]

    def collator(self, recipe, tokenizer):
        cfg = recipe.task_config
        n = sum(1 for t in sentinel_tokens(cfg.num_sentinels) if t in tokenizer.get_vocab())
        return SpanCorruptionCollator(tokenizer, cfg.noise_density, cfg.mean_noise_span_length, n)


# ----------------------------------------------------------------------------- BART


@dataclass
class BartDenoiseConfig:
    """Recipe section `bart_denoise` (fairseq's names in parentheses)."""
    mask_ratio: float = 0.3  # text infilling: share of tokens in masked spans (mask); 0: no infilling
    poisson_lambda: float = 3.0  # mean span length (poisson_lambda)
    permute_sentences: bool = True  # shuffle the sentences of a block (permute_sentences)
    deletion_ratio: float = 0.0  # token deletion: share of tokens dropped without a trace

    def validate(self, prefix: str) -> None:
        for key in ("mask_ratio", "deletion_ratio"):
            if not 0 <= getattr(self, key) < 1:
                raise HfkitError(f"recipe key '{prefix}.{key}' must be in [0, 1), got {getattr(self, key)}")
        if self.poisson_lambda <= 0:
            raise HfkitError(f"recipe key '{prefix}.poisson_lambda' must be > 0, got {self.poisson_lambda}")
        if not (self.mask_ratio or self.permute_sentences or self.deletion_ratio):
            raise HfkitError(f"recipe section '{prefix}' turns every noise off: the model would learn to copy")


def sentence_end_table(tokenizer) -> torch.Tensor:
    """For every token id: does a sentence end with it? (text ending in . ! ? or a newline; EOS)."""
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ends = torch.tensor([tokenizer.convert_tokens_to_string([t]).rstrip(" ").endswith((".", "!", "?", "\n"))
                         for t in texts], dtype=torch.bool)
    if tokenizer.eos_token_id is not None:
        ends[tokenizer.eos_token_id] = True
    return ends


class DenoisingCollator(NoisingCollator):
    """Blocks of raw tokens -> BART inputs (<s> noised </s>) and targets (<s> original </s>)."""

    def __init__(self, tokenizer, cfg: BartDenoiseConfig, max_length: int):
        self.cfg, self.max_length = cfg, max_length
        self.mask, self.bos, self.eos, self.pad = (tokenizer.mask_token_id, tokenizer.bos_token_id,
                                                   tokenizer.eos_token_id, tokenizer.pad_token_id)
        self.is_end = sentence_end_table(tokenizer)

    def noise(self, ids: list[int]) -> tuple[list[int], list[int]]:
        c = self.cfg
        noised, _ = bart_noise(ids, self.mask, self.is_end, c.mask_ratio, c.poisson_lambda, c.permute_sentences,
                               c.deletion_ratio)
        # never longer than the block: bart_noise keeps insertions within the tokens its masks free
        assert len(noised) <= len(ids) <= self.max_length - 2, (len(noised), len(ids))
        return [self.bos, *noised, self.eos], [self.bos, *ids, self.eos]


@register
class BartDenoising(PackedTextTask):
    name = "bart_denoise"
    section = "bart_denoise"
    config_class = BartDenoiseConfig
    auto_class = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    pipeline_tag = "text2text-generation"
    pipeline_task = None
    architectures = ("bart",)
    causal = False
    noisy = True

    def check(self, recipe) -> None:
        _check_block(recipe, "denoising")

    def check_tokenizer(self, tokenizer, where: str) -> None:
        for name in ("mask_token", "bos_token", "eos_token"):
            if getattr(tokenizer, name) is None:
                raise HfkitError(f"tokenizer '{where}' has no {name}, needed for BART denoising: add one "
                                 f"(tokenizer.add_special_tokens({{'{name}': ...}}) and save it), or train one here "
                                 f"(tokenizer.path: null)")

    def block_length(self, recipe) -> int:
        return recipe.data.block_size - 2  # room for <s> and </s>

    def collator(self, recipe, tokenizer):
        return DenoisingCollator(tokenizer, recipe.task_config, recipe.data.block_size)
