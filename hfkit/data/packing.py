"""Tokenize documents and pack them into fixed-size blocks for causal-LM training.

Unlike `group_texts` in transformers' `run_clm.py`, which drops the tail of every 1000-document map
batch, blocks are cut from the one token stream of the whole corpus: the only tokens lost are the
final partial block, and their number is reported. The packing is itself a batched `map`, over
block indices: each batch reads just the documents its blocks overlap (Arrow, memory-mapped), so
memory stays flat however large the corpus, and `num_proc` parallelises it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, Features, Sequence, Value

from ..errors import HfkitError
from .corpus import sample_mixture

if TYPE_CHECKING:
    from .corpus import Corpus, DataConfig


_TOKENIZED = Features({"input_ids": Sequence(Value("int32")), "num_tokens": Value("int32")})


def _tokenize_batch(batch: dict, tokenizer, eos_id: int | None) -> dict:
    # whole documents, cut into blocks later: transformers' warning about their length does not apply
    ids = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
    if eos_id is not None:
        ids = [x + [eos_id] for x in ids]
    return {"input_ids": ids, "num_tokens": [len(x) for x in ids]}


def document_separator(tokenizer) -> int:
    """The token between packed documents: EOS (causal LMs), else SEP (BERT-style encoders)."""
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if sep is None:
        raise HfkitError("tokenizer has neither an eos_token nor a sep_token to separate packed documents")
    return sep


def tokenize_documents(ds: Dataset, tokenizer, num_proc: int | None = None, append_eos: bool = True) -> Dataset:
    """Batched `map`: text -> input_ids (+ EOS/SEP after every document so documents stay separated)."""
    eos = document_separator(tokenizer) if append_eos else None
    return ds.map(_tokenize_batch, batched=True, fn_kwargs={"tokenizer": tokenizer, "eos_id": eos},
                  remove_columns=ds.column_names, features=_TOKENIZED, num_proc=num_proc, desc="tokenize")


@dataclass
class PackStats:
    tokens: int
    blocks: int
    block_size: int
    dropped_tokens: int  # the final partial block

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _flat_ids(table_slice) -> np.ndarray:
    flat = pc.list_flatten(table_slice["input_ids"])
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks() if flat.num_chunks else pa.array([], type=pa.int32())
    return flat.to_numpy(zero_copy_only=False)


def _cut_blocks(batch: dict, docs: Dataset, offsets: np.ndarray, block_size: int) -> dict:
    """Blocks batch["block"] (a contiguous range) of the corpus stream, read from the documents they overlap."""
    first, last = int(batch["block"][0]), int(batch["block"][-1]) + 1
    start, end = first * block_size, last * block_size
    d0 = int(np.searchsorted(offsets, start, side="right")) - 1
    d1 = int(np.searchsorted(offsets, end, side="left"))
    ids = _flat_ids(docs.with_format("arrow")[d0:d1])
    window = ids[start - offsets[d0]: end - offsets[d0]]
    return {"input_ids": window.reshape(last - first, block_size)}


def pack_sequences(ds: Dataset, block_size: int, num_proc: int | None = None) -> tuple[Dataset, PackStats]:
    """Concatenate every document's tokens (in order) and cut the stream into `block_size` blocks."""
    lengths = np.asarray(ds.with_format("numpy")["num_tokens"], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    n_blocks = total // block_size
    index = Dataset.from_dict({"block": np.arange(n_blocks, dtype=np.int64)})
    kw = {}
    if ds.cache_files:  # keep the blocks on disk beside the tokenized corpus, as datasets would
        folder = Path(ds.cache_files[0]["filename"]).parent
        kw["cache_file_name"] = str(folder / f"hfkit-packed-{ds._fingerprint}-{block_size}.arrow")
    features = Features({"input_ids": Sequence(Value("int32"), length=block_size)})
    blocks = index.map(_cut_blocks, batched=True, batch_size=1024, remove_columns=["block"], features=features,
                       fn_kwargs={"docs": ds, "offsets": offsets, "block_size": block_size},
                       num_proc=num_proc if n_blocks > 1024 else None, desc="pack", **kw)
    return blocks, PackStats(total, n_blocks, block_size, total - n_blocks * block_size)


def packed_lm_collator(features: list[dict]) -> dict[str, torch.Tensor]:
    """Stack equal-length packed blocks; labels are the inputs (the model shifts them).

    `DataCollatorForLanguageModeling` would set label -100 wherever input == pad_token_id, which
    silently drops every EOS when pad == eos (the GPT-2 convention); packed blocks have no padding.
    """
    ids = torch.as_tensor(np.stack([np.asarray(f["input_ids"]) for f in features]), dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone()}


@dataclass
class PackedData:
    train: Dataset
    validation: Dataset | None
    stats: dict


def pack_corpus(cfg: "DataConfig", tokenizer, corpus: "Corpus", seed: int, block_size: int | None = None) -> PackedData:
    """Tokenize each training source, draw the weighted mixture, and pack train and validation into
    blocks of `block_size` tokens (default `cfg.block_size`): the data of every task that trains on
    running text."""
    block = block_size or cfg.block_size
    tokenized = {k: tokenize_documents(ds, tokenizer, cfg.num_proc) for k, ds in corpus.train.items()}
    mixture, mix_report = sample_mixture(tokenized, corpus.sources, cfg.mixture_tokens, seed)
    train, train_pack = pack_sequences(mixture, block)
    if train_pack.blocks == 0:
        raise HfkitError(
            f"data: the training mixture has {train_pack.tokens} tokens, fewer than one block "
            f"(data.block_size={cfg.block_size}{'' if block == cfg.block_size else f', blocks of {block}'}); "
            f"add data or lower block_size"
        )
    validation, val_stats = None, None
    if len(corpus.validation):
        val_tok = tokenize_documents(corpus.validation, tokenizer, cfg.num_proc)
        validation, val_pack = pack_sequences(val_tok, block)
        val_stats = val_pack.as_dict()
        if val_pack.blocks == 0:  # evaluation was asked for (validation_fraction > 0) and would silently not run
            raise HfkitError(
                f"data: the validation documents hold {val_pack.tokens} tokens, fewer than one block "
                f"(data.block_size={cfg.block_size}): add data, raise data.validation_fraction, or set "
                f"data.validation_fraction=0 to train without validation")
    stats = {**corpus.stats, "mixture": mix_report, "train_packing": train_pack.as_dict(),
             "validation_packing": val_stats}
    return PackedData(train.with_format("numpy"), validation.with_format("numpy") if validation else None, stats)


def best_fit_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing (as TRL's `bfd` strategy and axolotl's multipack): examples
    longest first, each into the open row with the least room that still holds it, else a new row.
    Returns rows of example indices; no row holds more than `capacity` tokens, every index once."""
    import bisect

    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row) of the open rows, sorted
    for i in order:
        n = min(lengths[i], capacity)
        k = bisect.bisect_left(room, (n, -1))
        if k < len(room):
            free, r = room.pop(k)
        else:
            free, r = capacity, len(rows)
            rows.append([])
        rows[r].append(i)
        if free - n > 0:
            bisect.insort(room, (free - n, r))
    return rows


def pack_examples(ds: Dataset, capacity: int) -> tuple[Dataset, dict]:
    """Tokenized examples (input_ids, labels) packed into rows of at most `capacity` tokens by best
    fit: each row's `position_ids` restart at every example (what keeps packed examples apart in
    attention) and each example's first label is -100 (it would be predicted from the example
    before it). Returns the rows and their fill."""
    lengths = [len(x) for x in ds["input_ids"]]
    rows = best_fit_rows(lengths, capacity)
    ids, labels = ds["input_ids"], ds["labels"]
    out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
    for row in rows:
        a, b, p = [], [], []
        for i in sorted(row):  # the data's own order inside a row
            a += list(ids[i])
            b += [-100] + list(labels[i])[1:]
            p += list(range(len(ids[i])))
        out["input_ids"].append(a)
        out["labels"].append(b)
        out["position_ids"].append(p)
    tokens = sum(lengths)
    stats = {"strategy": "bfd", "examples": len(lengths), "rows": len(rows), "capacity": capacity,
             "row_fill": round(tokens / max(1, len(rows) * capacity), 4)}
    return Dataset.from_dict(out), stats


def filler_fraction(collator, data: Dataset, batch_size: int, seed: int = 0, max_batches: int = 500) -> float:
    """Share of the positions a model computes (rows x width of the batches of one shuffled epoch, the
    first `max_batches` of them) that hold no example token: what padding-free rows still waste."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    order = order[:batch_size * max_batches]
    lengths = [len(x) for x in data["input_ids"]]
    computed = real = 0
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        computed += collator([data[j] for j in idx])["input_ids"].numel()
        real += sum(lengths[j] for j in idx)
    return 1 - real / max(computed, 1)
