"""Train char, word, byte-level BPE, WordPiece and Unigram tokenizers with `tokenizers`.

The result is a `PreTrainedTokenizerFast` with pad/unk/bos/eos/mask tokens, saved with
`save_pretrained` so `AutoTokenizer.from_pretrained(folder)` loads it in every recipe.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..errors import HfkitError

KINDS = ("char", "word", "bpe", "wordpiece", "unigram")


@dataclass
class TokenizerConfig:
    """Recipe section `tokenizer`: load one, or train one on the training split."""
    path: Optional[str] = None  # an existing tokenizer (folder or Hub id); null: train one
    kind: Literal["char", "word", "bpe", "wordpiece", "unigram"] = "bpe"
    vocab_size: int = 4096
    min_frequency: int = 2
    lowercase: bool = False
SPECIAL = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
           "mask_token": "<mask>"}
_SPECIAL_LIST = list(SPECIAL.values())


def _build(kind: str, vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    unk = SPECIAL["unk_token"]
    if kind == "char":
        # every character is a token; decoding just concatenates them (lossless)
        tok = Tokenizer(models.WordLevel(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=_SPECIAL_LIST)
    elif kind == "word":
        # GPT-2's byte-level split keeps spaces attached to words, so decoding restores the text
        tok = Tokenizer(models.WordLevel(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=_SPECIAL_LIST)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())  # byte-level: no unknown tokens, lossless
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=_SPECIAL_LIST,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "wordpiece":
        # BERT-style: split on whitespace and punctuation; decoding normalises spacing like BERT
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=_SPECIAL_LIST)
    elif kind == "unigram":
        # SentencePiece-style: spaces become '▁' and are part of the pieces
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=_SPECIAL_LIST, unk_token=unk)
    else:
        raise HfkitError(f"unknown tokenizer kind '{kind}' (expected one of: {', '.join(KINDS)})")
    return tok, trainer


def train_tokenizer(texts: Iterable[str], kind: str = "bpe", vocab_size: int = 4096,
                    min_frequency: int = 2, lowercase: bool = False,
                    extra_special_tokens: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """Train a tokenizer of `kind` on `texts` and wrap it as a `PreTrainedTokenizerFast`.
    `extra_special_tokens` (a task's, such as T5's sentinels) are added after the learned vocabulary."""
    if vocab_size < len(_SPECIAL_LIST) + 1:
        raise HfkitError(f"tokenizer vocab_size={vocab_size} is too small (at least {len(_SPECIAL_LIST) + 1})")
    tok, trainer = _build(kind, vocab_size, min_frequency)
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    if tok.get_vocab_size() <= len(_SPECIAL_LIST):
        raise HfkitError("tokenizer training data is empty: no tokens learned")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.model_max_length = 1_000_000_000  # the model's positions, not the tokenizer, set the limit
    extra = list(extra_special_tokens)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    return fast


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch = []
    for t in texts:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False):
    """`AutoTokenizer.from_pretrained` with a one-line error for a folder that is not a tokenizer."""
    from transformers import AutoTokenizer

    from ..hub import check_model_ref

    check_model_ref(path, f"tokenizer '{path}'", revision)
    local = Path(path)
    if local.is_dir() and not any((local / f).is_file() for f in (
            "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")):
        raise HfkitError(f"'{path}' is not a tokenizer or model folder (no tokenizer.json, tokenizer_config.json "
                         f"or vocabulary file)")
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise HfkitError(f"cannot load a tokenizer from '{path}': {str(e).splitlines()[0][:200]}") from None
