"""Sentence pairs for next-sentence prediction, as BERT's `create_pretraining_data.py` makes them.

Each document is split into sentences and tokenized; sentences are gathered into a chunk of up to
the target length, the chunk is cut at a random sentence boundary into A and B; half of the time B
is replaced by sentences from another document (label 1, "random"), otherwise B is the text that
follows A (label 0, "is next"). Unlike the original, a pair is truncated at A's start and B's end, so
a true pair stays consecutive text, and a single-sentence chunk is cut inside the sentence rather
than forced to be random, so the labels stay balanced.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from datasets import Dataset

from ..errors import HfkitError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Sentences of a document: after . ! ? followed by a capital (or quote, digit), and at blank lines."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass
class PairStats:
    pairs: int
    is_next: int
    random_next: int
    documents: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def special_ids(tokenizer) -> tuple[int, int]:
    """[CLS] and [SEP] of the tokenizer; a tokenizer without them uses BOS and EOS in their place."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls is None or sep is None:
        raise HfkitError("next-sentence prediction needs [CLS]/[SEP] (or BOS/EOS) tokens in the tokenizer")
    return cls, sep


def sentence_pairs(texts: list[str], tokenizer, max_length: int, seed: int, short_seq_prob: float = 0.1) -> tuple[Dataset, PairStats]:
    """NSP examples: input_ids = [CLS] A [SEP] B [SEP], token_type_ids 0 for A, 1 for B,
    next_sentence_label 0 (B follows A) or 1 (B is from another document)."""
    if max_length < 8:
        raise HfkitError(f"next-sentence prediction needs sequences of at least 8 tokens, got {max_length}")
    docs = []
    for t in texts:
        sents = [ids for ids in tokenizer(split_sentences(t), add_special_tokens=False)["input_ids"] if ids] \
            if t.strip() else []
        if sents:
            docs.append(sents)
    if len(docs) < 2:
        raise HfkitError("next-sentence prediction needs at least two documents (random B comes from another one)")
    cls, sep = special_ids(tokenizer)
    rng = random.Random(seed)
    rows = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
    max_tokens = max_length - 3
    for d, doc in enumerate(docs):
        target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
        chunk, length, i = [], 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                a, b, is_random, unused = _pair(chunk, docs, d, target, rng)
                i -= unused  # sentences a random B displaced are used in the next chunk
                a, b = _truncate(a, b, max_tokens)
                if a and b:
                    rows["input_ids"].append([cls, *a, sep, *b, sep])
                    rows["token_type_ids"].append([0] * (len(a) + 2) + [1] * (len(b) + 1))
                    rows["next_sentence_label"].append(int(is_random))
                chunk, length = [], 0
            i += 1
    n_random = sum(rows["next_sentence_label"])
    stats = PairStats(len(rows["input_ids"]), len(rows["input_ids"]) - n_random, n_random, len(docs))
    return Dataset.from_dict(rows), stats


def _pair(chunk: list[list[int]], docs: list, d: int, target: int, rng: random.Random):
    """(A, B, B is random, sentences of the chunk to give back)."""
    if len(chunk) == 1:  # one sentence: cut it (a random B would make the labels lopsided)
        tokens = chunk[0]
        if len(tokens) < 2:
            return tokens, [], False, 0
        cut = rng.randint(1, len(tokens) - 1)
        a, rest = tokens[:cut], tokens[cut:]
        a_end = 1
    else:
        a_end = rng.randint(1, len(chunk) - 1)
        a = [t for s in chunk[:a_end] for t in s]
        rest = [t for s in chunk[a_end:] for t in s]
    if rng.random() < 0.5:
        other = docs[rng.choice([k for k in range(len(docs)) if k != d])]
        b, start = [], rng.randint(0, len(other) - 1)
        for s in other[start:]:
            b.extend(s)
            if len(b) >= max(1, target - len(a)):
                break
        return a, b, True, (len(chunk) - a_end if len(chunk) > 1 else 0)
    return a, rest, False, 0


def _truncate(a: list[int], b: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Shorten the longer side until both fit: A from its start, B from its end, so that a true
    pair stays consecutive text."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_tokens:
        if len(a) > len(b):
            a.pop(0)
        else:
            b.pop()
    return a, b
