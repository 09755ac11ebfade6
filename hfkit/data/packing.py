"""Tokenize documents and pack them into fixed-size blocks for causal-LM training.

Unlike `group_texts` in transformers' `run_clm.py`, which drops the tail of every 1000-document map
batch, the whole token stream is packed at once (Arrow, zero-copy): the only tokens lost are the
final partial block, and their number is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from datasets.table import InMemoryTable

from ..errors import HfkitError


def _tokenize_batch(batch: dict, tokenizer, eos_id: int | None) -> dict:
    ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
    if eos_id is not None:
        ids = [x + [eos_id] for x in ids]
    return {"input_ids": ids, "num_tokens": [len(x) for x in ids]}


def tokenize_documents(ds: Dataset, tokenizer, num_proc: int | None = None, append_eos: bool = True) -> Dataset:
    """Batched `map`: text -> input_ids (+ EOS after every document so documents stay separated)."""
    eos = tokenizer.eos_token_id if append_eos else None
    if append_eos and eos is None:
        raise HfkitError("tokenizer has no eos_token: it is needed to separate packed documents")
    return ds.map(_tokenize_batch, batched=True, fn_kwargs={"tokenizer": tokenizer, "eos_id": eos},
                  remove_columns=ds.column_names, num_proc=num_proc, desc="tokenize")


@dataclass
class PackStats:
    tokens: int
    blocks: int
    block_size: int
    dropped_tokens: int  # the final partial block

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def flat_token_stream(ds: Dataset) -> np.ndarray:
    """All `input_ids` of a tokenized dataset, in order, as one int32 array."""
    col = ds.with_format("arrow")[:]["input_ids"]
    flat = pc.list_flatten(col)
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks() if flat.num_chunks else pa.array([], type=pa.int32())
    return flat.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def pack_sequences(ds: Dataset, block_size: int) -> tuple[Dataset, PackStats]:
    """Concatenate every document's tokens and cut the stream into `block_size` blocks."""
    stream = flat_token_stream(ds)
    n_blocks = len(stream) // block_size
    kept = stream[: n_blocks * block_size]
    arr = pa.FixedSizeListArray.from_arrays(pa.array(kept, type=pa.int32()), block_size)
    blocks = Dataset(InMemoryTable(pa.table({"input_ids": arr})))
    return blocks, PackStats(len(stream), n_blocks, block_size, len(stream) - len(kept))


def packed_lm_collator(features: list[dict]) -> dict[str, torch.Tensor]:
    """Stack equal-length packed blocks; labels are the inputs (the model shifts them).

    `DataCollatorForLanguageModeling` would set label -100 wherever input == pad_token_id, which
    silently drops every EOS when pad == eos (the GPT-2 convention); packed blocks have no padding.
    """
    ids = torch.as_tensor(np.stack([np.asarray(f["input_ids"]) for f in features]), dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone()}
