"""Streaming corpora: data larger than memory, read record by record and packed on the fly.

When any `data.sources` entry says `streaming: true`, every source is read as a `datasets`
IterableDataset (files and Hub datasets by `load_dataset(..., streaming=True)`, the built-in corpora
through `to_iterable_dataset`), and nothing is ever held whole:

- each source: its `text` column, the length filter, `split_dataset_by_node` (this rank's shards, or
  one record in `world_size`), and a held-out share `data.validation_fraction` chosen by a hash of the
  document's text (so the same document is held out on every rank, in every pass, with no index);
- the mixture: `interleave_datasets` with the sources' weights as probabilities (all sources run to
  their end, the smaller ones repeated: the weights are shares of the mixture);
- tokenization: a batched `map` on the stream;
- `BlockStream`: a shuffle buffer of `data.shuffle_buffer_size` whole documents (as the in-memory path
  shuffles documents before packing), then the documents' tokens concatenated and cut into blocks
  exactly as `hfkit.data.packing.pack_sequences` cuts them. The stream repeats pass after pass, so a
  run's length is `training.max_steps`.

The validation set is the first `data.streaming_validation_documents` held-out documents of each
source, read into memory and packed as usual.

Resuming: `BlockStream.state(consumed)` is everything needed to continue where the trainer stopped (the
upstream IterableDataset's own `state_dict()`, the shuffle buffer, the random generator's state, the
unfinished block, and the blocks already read ahead of the trainer); hfkit's Trainer saves it in every
checkpoint and loads it on resume, so the stream continues bit-exactly without re-reading what was
trained on. `datasets`' own shuffle buffer is not used: its `load_state_dict` drops the buffer's
contents (datasets warns "The shuffle buffer will be refilled"), which would change the data.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from datasets import Dataset, IterableDataset, interleave_datasets
from datasets.distributed import split_dataset_by_node

from ..errors import HfkitError
from .packing import _tokenize_batch, document_separator
from .sources import SourceConfig, quiet_datasets, source_label, source_where

if TYPE_CHECKING:
    from .corpus import DataConfig

TOKENIZER_DOCUMENTS = 50_000  # a tokenizer trained for a streaming run reads this many training documents
STATE_FILE = "hfkit_stream_rank{rank}.npz"  # in every checkpoint of a streaming run, one per rank


def held_out(text: str, fraction: float) -> bool:
    """Whether a document is held out for validation: by a hash of its text, the same on every rank and pass."""
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * 2 ** 64


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (torchrun / accelerate launch set them)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def text_stream(src: SourceConfig, index: int) -> IterableDataset:
    """One source as a stream of {"text"}: read lazily; its first record is read now so that a missing
    field or an unreadable file is one line naming the source before any long work."""
    where = source_where(src)
    try:
        with quiet_datasets():
            ds = src.stream()
            first = next(iter(ds), None)
    except HfkitError:
        raise
    except Exception as e:
        raise HfkitError(f"data.sources.{index} ({where}): cannot stream: {str(e).splitlines()[0][:200]}") from None
    if first is None:
        raise HfkitError(f"data.sources.{index} ({where}): no records")
    if src.text_field not in first:
        raise HfkitError(f"{where}: text field '{src.text_field}' not found (columns: {', '.join(first)}); set text_field")
    ds = ds.select_columns([src.text_field])
    if src.text_field != "text":
        ds = ds.rename_column(src.text_field, "text")
    def is_text(batch: dict) -> list[bool]:
        for t in batch["text"]:
            if t is not None and not isinstance(t, str):
                raise HfkitError(f"{where}: field '{src.text_field}' of a record is not text: {str(t)[:40]!r}")
        return [t is not None for t in batch["text"]]

    return ds.filter(is_text, batched=True)


@dataclass
class StreamingCorpus:
    train: dict[str, IterableDataset]  # per source label: this rank's training documents (text)
    whole: dict[str, IterableDataset]  # the same before the split across ranks: what every rank reads alike
    validation: Dataset  # the held-out documents read into memory (text)
    sources: dict[str, SourceConfig]
    stats: dict = field(default_factory=dict)


def build_streaming_corpus(cfg: "DataConfig", seed: int) -> StreamingCorpus:
    """Every source as a stream: length filter, this rank's part, held-out documents by hash. Reads only
    the validation documents (and each source's first record)."""
    rank, world = rank_and_world()
    lo, hi = cfg.min_chars, cfg.max_chars if cfg.max_chars is not None else float("inf")
    frac = cfg.validation_fraction
    train, whole, validation, labels, per_source = {}, {}, [], [], {}
    for i, src in enumerate(cfg.sources):
        label = source_label(src) if source_label(src) not in labels else f"{source_label(src)}_{i}"
        labels.append(label)
        ds = text_stream(src, i).filter(lambda b: [lo <= len(t.strip()) <= hi for t in b["text"]], batched=True)
        if frac > 0:
            held = ds.filter(lambda b: [held_out(t, frac) for t in b["text"]], batched=True)
            val = [r["text"] for _, r in zip(range(cfg.streaming_validation_documents), _reading(held))]
            validation += val
            ds = ds.filter(lambda b: [not held_out(t, frac) for t in b["text"]], batched=True)
            per_source[label] = {"validation_documents": len(val)}
        whole[label] = ds
        train[label] = split_dataset_by_node(ds, rank, world)
    if frac > 0 and cfg.streaming_validation_documents > 0 and not validation:
        raise HfkitError(f"data: no held-out documents in the streaming sources (data.validation_fraction={frac}): "
                         f"add data, raise data.validation_fraction, or set it to 0 to train without validation")
    stats = {"streaming": True, "dedup": "none (streaming: documents are not compared)",
             "held_out_by": f"hash of the text, fraction {frac}", "shuffle_buffer_size": cfg.shuffle_buffer_size,
             "rank": rank, "world_size": world, "sources": per_source}
    return StreamingCorpus(train, whole, Dataset.from_dict({"text": validation}), dict(zip(labels, cfg.sources)), stats)


def training_texts(corpus: StreamingCorpus, limit: int = TOKENIZER_DOCUMENTS) -> Iterator[str]:
    """The first `limit` training documents of the mixture (all ranks', so every rank trains one tokenizer):
    what a tokenizer trained here reads."""
    for n, r in enumerate(_reading(mixture(corpus, 0, whole=True)[0])):
        if n >= limit:
            return
        yield r["text"]


def mixture(corpus: StreamingCorpus, seed: int, tokenizer=None, sample: int = 1000,
            whole: bool = False) -> tuple[IterableDataset, dict]:
    """The training sources interleaved by `interleave_datasets`, and a report. A source's `weight` is its
    share of the mixture's tokens, as in the in-memory path: documents are drawn with probability
    proportional to weight / mean tokens per document, the mean measured on the source's first `sample`
    documents of all ranks (equal document shares when no tokenizer is given). `whole`: every rank's
    documents, not this rank's."""
    streams = list((corpus.whole if whole else corpus.train).values())
    if len(streams) == 1:
        return streams[0], {}
    weights = {k: src.weight if src.weight is not None else 1.0 for k, src in corpus.sources.items()}
    mean = {k: 1.0 for k in weights}
    if tokenizer is not None:
        for k, ds in corpus.whole.items():
            texts = [r["text"] for _, r in zip(range(sample), _reading(ds))]
            lengths = [len(x) for x in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
            mean[k] = max(1.0, sum(lengths) / max(len(lengths), 1) + 1)  # + the separator
    raw = {k: weights[k] / mean[k] for k in weights}
    total = sum(raw.values())
    probs = {k: v / total for k, v in raw.items()}
    report = {k: {"weight": weights[k], "mean_tokens_per_document": round(mean[k], 1),
                  "document_probability": round(probs[k], 4)} for k in weights}
    mixed = interleave_datasets(streams, probabilities=list(probs.values()), seed=seed, stopping_strategy="all_exhausted")
    return mixed, report


def document_stream(corpus: StreamingCorpus, tokenizer, seed: int) -> tuple[IterableDataset, dict]:
    """The mixture tokenized on the fly (a batched `map`), a separator after every document."""
    eos = document_separator(tokenizer)
    mixed, report = mixture(corpus, seed, tokenizer)
    return mixed.map(_tokenize_batch, batched=True, remove_columns=["text"],
                     fn_kwargs={"tokenizer": tokenizer, "eos_id": eos}), report


class _Live:
    """Where a BlockStream is: what `state()` saves."""

    def __init__(self, seed: int):
        self.upstream: dict | None = None  # the IterableDataset's state_dict where this pass began (None: its start)
        self.reading = False  # a document of this pass has been read here: the upstream's state is its state_dict()
        self.epoch = 0  # passes over the upstream begun
        self.rng = np.random.default_rng(seed).bit_generator.state
        self.buffer: list[np.ndarray] = []
        self.carry = np.zeros(0, dtype=np.int32)  # tokens of the unfinished block
        self.yielded = 0  # blocks given out, ever (across resumes)
        self.pending: list[np.ndarray] = []  # blocks read ahead of the trainer, given out first on resume


def _reading(ds: IterableDataset) -> Iterator[dict]:
    """A stream's records; a file that turns out unreadable part way is one line, not a traceback."""
    it = iter(ds)
    while True:
        try:
            ex = next(it)
        except StopIteration:
            return
        except HfkitError:
            raise
        except Exception as e:
            while e.__cause__ is not None and "error occurred while generating" in str(e):
                e = e.__cause__
            raise HfkitError(f"data: a streaming source cannot be read: {str(e).splitlines()[0][:300]}") from None
        yield ex


class BlockStream(torch.utils.data.IterableDataset):
    """Endless blocks of `block_size` tokens from a stream of tokenized documents: a shuffle buffer of
    whole documents, then exact packing (the tokens of consecutive documents concatenated, cut every
    `block_size`). Resumable bit-exactly through `state` / `load_state`."""

    def __init__(self, docs: IterableDataset, block_size: int, buffer_size: int, seed: int):
        self.docs, self.block_size, self.buffer_size, self.seed = docs, block_size, buffer_size, seed
        self._fresh = docs.state_dict()  # the upstream's state before any read: a new pass starts here
        self.keep = 1024  # blocks remembered after they are given out (the trainer's read-ahead is fewer)
        self._recent: deque = deque(maxlen=self.keep)
        self._live = _Live(seed)

    def documents(self) -> Iterator[np.ndarray]:
        """The shuffled documents (token ids), pass after pass; updates the live state as it goes."""
        s = self._live
        rng = np.random.default_rng()
        rng.bit_generator.state = s.rng
        while True:
            self.docs.load_state_dict(s.upstream or self._fresh)
            read = 0
            for ex in _reading(self.docs):
                read += 1
                doc = np.asarray(ex["input_ids"], dtype=np.int32)
                s.reading = True  # the upstream's own state_dict() now says where it is (read when saving)
                if self.buffer_size <= 1:
                    yield doc
                elif len(s.buffer) < self.buffer_size:
                    s.buffer.append(doc)
                else:
                    i = int(rng.integers(self.buffer_size))
                    out, s.buffer[i] = s.buffer[i], doc
                    s.rng = rng.bit_generator.state
                    yield out
            if read == 0 and s.upstream is None and not s.buffer:
                raise HfkitError("data: the streaming sources hold no training documents")
            s.upstream, s.reading, s.epoch = None, False, s.epoch + 1

    def __iter__(self) -> Iterator[dict]:
        s, size = self._live, self.block_size
        self._recent = deque(maxlen=self.keep)
        pending, s.pending = s.pending, []
        for block in pending:
            yield self._give(block)
        for doc in self.documents():
            carry = np.concatenate([s.carry, doc]) if len(s.carry) else doc
            s.carry = carry
            for k in range(len(carry) // size):
                s.carry = carry[(k + 1) * size:]  # what is left once this block is given out: the saved state
                yield self._give(carry[k * size:(k + 1) * size])

    def _give(self, block: np.ndarray) -> dict:
        self._live.yielded += 1
        self._recent.append(block)
        return {"input_ids": block}

    # --- resuming
    def state(self, consumed: int) -> dict | None:
        """Everything needed to continue after the first `consumed` blocks, or None when the blocks given
        out beyond them are no longer remembered."""
        s = self._live
        ahead = s.yielded - consumed
        if ahead < 0 or ahead > len(self._recent):
            return None
        pending = list(self._recent)[len(self._recent) - ahead:] if ahead else []
        upstream = self.docs.state_dict() if s.reading else s.upstream
        return {"meta": {"consumed": consumed, "epoch": s.epoch, "upstream": upstream, "rng": s.rng,
                         "block_size": self.block_size, "buffer_size": self.buffer_size, "seed": self.seed},
                "buffer": s.buffer, "carry": s.carry, "pending": pending}

    def load_state(self, state: dict) -> None:
        m = state["meta"]
        if (m["block_size"], m["buffer_size"], m["seed"]) != (self.block_size, self.buffer_size, self.seed):
            raise HfkitError(f"resume: the checkpoint's stream was cut with block_size={m['block_size']}, "
                             f"shuffle_buffer_size={m['buffer_size']}, seed={m['seed']}; this run has "
                             f"{self.block_size}, {self.buffer_size}, {self.seed}")
        s = _Live(self.seed)
        s.upstream, s.epoch, s.rng, s.yielded = m["upstream"], m["epoch"], m["rng"], m["consumed"]
        s.buffer, s.carry, s.pending = list(state["buffer"]), state["carry"], list(state["pending"])
        self._live = s

    def save(self, folder: str | Path, rank: int, consumed: int) -> bool:
        """Write `state(consumed)` into a checkpoint folder; False when it cannot be known (then resume
        falls back to reading the stream again from its start and skipping what was trained on)."""
        st = self.state(consumed)
        if st is None:
            return False
        lengths = np.asarray([len(b) for b in st["buffer"]], dtype=np.int64)
        cat = lambda xs: np.concatenate(xs).astype(np.int32) if xs else np.zeros(0, dtype=np.int32)  # noqa: E731
        np.savez(Path(folder) / STATE_FILE.format(rank=rank), meta=np.asarray(json.dumps(st["meta"])),
                 buffer=cat(st["buffer"]), buffer_lengths=lengths, carry=st["carry"].astype(np.int32),
                 pending=np.asarray(st["pending"], dtype=np.int32).reshape(len(st["pending"]), self.block_size))
        return True

    def load(self, folder: str | Path, rank: int) -> int | None:
        """Load the state a checkpoint holds for this rank; the number of blocks it had consumed, or None."""
        f = Path(folder) / STATE_FILE.format(rank=rank)
        if not f.is_file():
            return None
        with np.load(f, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            cuts = np.cumsum(z["buffer_lengths"])[:-1]
            buffer = np.split(z["buffer"], cuts) if len(z["buffer_lengths"]) else []
            self.load_state({"meta": meta, "buffer": buffer, "carry": z["carry"], "pending": list(z["pending"])})
        return int(meta["consumed"])


@dataclass
class StreamingData:
    train: BlockStream
    validation: Dataset | None
    stats: dict


def stream_corpus(cfg: "DataConfig", tokenizer, corpus: StreamingCorpus, seed: int,
                  block_size: int | None = None) -> StreamingData:
    """The training blocks as an endless stream; the validation documents packed in memory."""
    from .packing import pack_sequences, tokenize_documents

    block = block_size or cfg.block_size
    docs, mix = document_stream(corpus, tokenizer, seed)
    train = BlockStream(docs, block, cfg.shuffle_buffer_size, seed)
    validation, val_stats = None, None
    if len(corpus.validation):
        validation, pack = pack_sequences(tokenize_documents(corpus.validation, tokenizer, cfg.num_proc), block)
        val_stats = pack.as_dict()
        if pack.blocks == 0:
            raise HfkitError(
                f"data: the held-out streaming documents hold {pack.tokens} tokens, fewer than one block "
                f"(data.block_size={cfg.block_size}): raise data.streaming_validation_documents or "
                f"data.validation_fraction, or set data.validation_fraction=0")
        validation = validation.with_format("numpy")
    stats = {**corpus.stats, "train_packing": {"block_size": block, "streaming": True},
             "stream_mixture": mix, "validation_packing": val_stats}
    return StreamingData(train, validation, stats)
