"""One record pipeline for the record tasks (labelled heads, sft, preference): every source loaded
with its columns -> the task's field mapping -> the task's checks -> one dataset -> exact (or
normalized) duplicates dropped -> a deterministic train/validation split: per source (each source
keeps its share in validation), pooled by record, or by group (`group_field`) so that records sharing
a value (one program's messages, one source file, one document) never sit on both sides.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset, Sequence

from ..errors import HfkitError
from .corpus import DataConfig, concat_sources, deduplicate, no_validation, split_by_source, split_indices
from .sources import SourceConfig, load_records, quiet_datasets, source_where

# what the pipeline adds to every record: its position among all records, its source's label and its
# row in that source (for one-line errors); a task keeps those it names in `keep`
PROVENANCE = ("_index", "_source", "_record")


@dataclass
class Gathered:
    """What `gather_records` hands a task."""
    train: Dataset | dict[str, Dataset]  # pooled, or per source label (split="by_source")
    validation: Dataset  # possibly empty
    labels: list[str]  # the sources' labels, in recipe order
    loaded: dict[str, int]  # records per source as loaded
    counts: dict[str, dict]  # per source after dedup: total/train/validation (split="by_source")
    removed_duplicates: int


def gather_records(data: DataConfig, seed: int, *, shape: Callable[[Dataset, SourceConfig, str], Dataset],
                   key: Callable[[dict], object], check: Callable[[Dataset], None] | None = None,
                   split: str = "by_source", group_field: str | None = None, keep: tuple[str, ...] = (),
                   what: str = "records", validation_groups: list[str] | None = None) -> Gathered:
    """load -> shape (the task's field mapping and per-source checks) -> concat -> check -> dedup by
    `key(record)` -> split ("by_source", or "pooled": by record, or by `group_field`)."""
    shaped = []
    for src in data.sources:
        shaped.append(shape(load_records(src), src, source_where(src)))
    labels, everything = concat_sources(data.sources, shaped)
    loaded = {label: len(ds) for label, ds in zip(labels, shaped)}
    src_col = everything["_src"]
    with quiet_datasets():
        everything = everything.add_column("_index", list(range(len(everything))))
        everything = everything.add_column("_source", [labels[i] for i in src_col])
        everything = everything.add_column("_record", [j for ds in shaped for j in range(len(ds))])
    if check is not None:
        check(everything)
    if len(everything) == 0:
        raise HfkitError("data: no records")
    with quiet_datasets():
        keyed = everything.map(lambda b: {"_key_text": [json.dumps(key(r), sort_keys=True, default=str)
                                                        for r in _rows(b)]}, batched=True)
        deduped, n_dup = deduplicate(keyed, data.dedup, column="_key_text")
        deduped = deduped.remove_columns(["_key_text"] + [c for c in PROVENANCE if c not in keep])
    if split == "by_source":
        train, validation, counts = split_by_source(deduped, labels, data.validation_fraction, seed, what)
    else:
        with quiet_datasets():
            deduped = deduped.remove_columns("_src")
        if group_field and validation_groups:
            tr, va = _named_groups(deduped, group_field, validation_groups)
        else:
            tr, va = (_group_split(deduped, group_field, data.validation_fraction, seed) if group_field
                      else split_indices(len(deduped), data.validation_fraction, seed))
        if data.validation_fraction > 0 and len(va) == 0:
            n_groups = f" ({len(set(map(str, deduped[group_field])))} groups)" if group_field else ""
            raise no_validation(len(deduped), f"{what}{n_groups}", data.validation_fraction)
        with quiet_datasets():
            train, validation = deduped.select(tr), deduped.select(va)
        counts = {}
    return Gathered(train, validation, labels, loaded, counts, n_dup)


def _rows(batch: dict) -> list[dict]:
    keys = list(batch)
    return [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]


def _group_split(ds: Dataset, group_field: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole groups, in a seeded order, into validation until it holds its share; a group that would
    overshoot the share by a quarter is passed over."""
    groups = [str(g) for g in ds[group_field]]
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    target, val_groups, taken = fraction * len(groups), set(), 0
    counts = {g: 0 for g in names}
    for g in groups:
        counts[g] += 1
    for j in order:
        if taken >= target:
            break
        if taken + counts[names[j]] <= 1.25 * target and len(val_groups) < len(names) - 1:
            val_groups.add(names[j])
            taken += counts[names[j]]
    if not val_groups and target > 0 and len(names) > 1:
        val_groups.add(min(names, key=lambda g: counts[g]))
    va = np.array([i for i, g in enumerate(groups) if g in val_groups], dtype=int)
    tr = np.array([i for i, g in enumerate(groups) if g not in val_groups], dtype=int)
    return tr, va


def _named_groups(ds: Dataset, group_field: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every record of the named groups in validation (a task held out entirely), the rest in training."""
    groups = [str(g) for g in ds[group_field]]
    missing = [n for n in names if n not in set(groups)]
    if missing:
        raise HfkitError(f"validation group '{missing[0]}' has no records (field '{group_field}' holds: "
                         f"{', '.join(sorted(set(groups))[:20])})")
    held = set(names)
    va = np.array([i for i, g in enumerate(groups) if g in held], dtype=int)
    tr = np.array([i for i, g in enumerate(groups) if g not in held], dtype=int)
    if len(tr) == 0:
        raise HfkitError(f"every record is in the validation groups ({', '.join(names)}): nothing left to train on")
    return tr, va


@dataclass
class Records:
    train: Dataset
    validation: Dataset | None
    stats: dict
    text_columns: list[str] = field(default_factory=list)  # the columns holding text (set by the task)
    labels: list[str] = field(default_factory=list)  # the label list, checked against every record (set by the task)


def class_names(ds: Dataset, column: str) -> list[str] | None:
    """The label names of a `ClassLabel` column (or a sequence of them), as Hub datasets store labels."""
    feature = ds.features.get(column)
    if isinstance(feature, Sequence):
        feature = feature.feature
    elif isinstance(feature, list) and feature:
        feature = feature[0]
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _as_names(ds: Dataset, column: str) -> Dataset:
    """ClassLabel ids -> their names, so labels from every source compare as strings."""
    names = class_names(ds, column)
    if names is None:
        return ds
    converted = [[names[i] for i in v] if isinstance(v, list) else names[v] for v in ds[column]]
    return ds.remove_columns(column).add_column(column, converted)


def load_labelled_records(data: DataConfig, fields: list[str], seed: int, group_field: str | None = None,
                          section: str = "", reshape=None) -> Records:
    """Every source's records with `fields` (+ the group field), deduplicated and split (pooled). `reshape(ds,
    where)`: a task's conversion of a source in another layout (nested SQuAD JSON) into records."""
    needed = list(dict.fromkeys(fields + ([group_field] if group_field else [])))

    def shape(ds: Dataset, src, where: str) -> Dataset:
        if reshape is not None:
            ds = reshape(ds, where)
        for f in needed:
            if f not in ds.column_names:
                raise HfkitError(f"{where}: field '{f}' not found (columns: {', '.join(ds.column_names)}); "
                                 f"name the column that holds it in recipe section '{section}'")
        with quiet_datasets():
            ds = ds.select_columns(needed)
            for f in fields:
                ds = _as_names(ds, f)
        return ds

    got = gather_records(data, seed, shape=shape, key=lambda r: [r[f] for f in fields], split="pooled",
                         group_field=group_field, keep=("_source", "_record"))
    train, validation = got.train, got.validation
    stats = {"sources": got.loaded, "removed_duplicates": got.removed_duplicates, "train_records": len(train),
             "validation_records": len(validation)}
    if group_field:
        stats["split_by"] = group_field
        stats["validation_groups"] = len(set(validation[group_field])) if len(validation) else 0
    return Records(train, validation if len(validation) else None, stats)
