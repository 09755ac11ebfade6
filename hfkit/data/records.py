"""Labelled records for the task heads (classification, tagging, extractive QA): every source loaded
with its columns, the fields a task needs checked, exact duplicates dropped, and a deterministic
train/validation split — by record, or by group (`group_field`) so that records sharing a value
(one program's messages, one source file, one document) never sit on both sides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset, Sequence, concatenate_datasets

from ..errors import HfkitError
from .corpus import DataConfig, first_occurrences, no_validation, split_indices
from .sources import load_records, quiet_datasets, source_label, source_where


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
    """Every source's records with `fields` (+ the group field), deduplicated and split. `reshape(ds,
    where)`: a task's conversion of a source in another layout (nested SQuAD JSON) into records."""
    needed = list(dict.fromkeys(fields + ([group_field] if group_field else [])))
    parts, per_source = [], {}
    for i, src in enumerate(data.sources):
        where = source_where(src)
        ds = load_records(src)
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
            ds = ds.add_column("_source", [source_label(src)] * len(ds))
            ds = ds.add_column("_record", list(range(len(ds))))
        per_source[source_label(src)] = len(ds)
        parts.append(ds)
    with quiet_datasets():
        try:
            everything = concatenate_datasets(parts)
        except ValueError as e:
            raise HfkitError(f"data.sources: sources have incompatible columns ({e})") from None
    if len(everything) == 0:
        raise HfkitError("data: no records")
    keys = [json.dumps([r[f] for f in fields], sort_keys=True, default=str) for r in everything.select_columns(fields)]
    keep = first_occurrences(keys) if data.dedup != "none" else list(range(len(everything)))  # exact duplicates
    n_dup = len(everything) - len(keep)
    everything = everything.select(keep)
    if group_field:
        groups = [str(g) for g in everything[group_field]]
        names = sorted(set(groups))
        order = np.random.default_rng(seed).permutation(len(names))
        target, val_groups, taken = data.validation_fraction * len(groups), set(), 0
        counts = {g: 0 for g in names}
        for g in groups:
            counts[g] += 1
        # whole groups, in a seeded order, into validation until it holds its share; a group that would
        # overshoot the share by a quarter is passed over
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
    else:
        tr, va = split_indices(len(everything), data.validation_fraction, seed)
    if data.validation_fraction > 0 and len(va) == 0:
        raise no_validation(len(everything), f"records{f' ({len(set(groups))} groups)' if group_field else ''}",
                            data.validation_fraction)
    with quiet_datasets():
        train, validation = everything.select(tr), everything.select(va)
    stats = {"sources": per_source, "removed_duplicates": n_dup, "train_records": len(train),
             "validation_records": len(validation)}
    if group_field:
        stats["split_by"] = group_field
        stats["validation_groups"] = len(set(validation[group_field])) if len(validation) else 0
    return Records(train, validation if len(validation) else None, stats)
