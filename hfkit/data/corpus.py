"""From sources to a training corpus: length filters, deduplication, deterministic split, mixtures.

Order of work (as in GPT-3 / The Pile style pipelines): load every source, filter by length,
deduplicate across all sources (first occurrence wins, so no duplicate straddles train and
validation), split each source into train/validation by document, then weight the training parts
into a mixture measured in tokens.
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..errors import HfkitError
from .catalog import PydocCorpus
from .sources import SourceConfig, load_source, quiet_datasets, source_label


@dataclass
class DataConfig:
    """Recipe section `data`: where the text comes from and how it is cleaned, split and mixed."""
    sources: list[SourceConfig] = field(default_factory=lambda: [PydocCorpus()])  # each checked by its kind
    min_chars: int = 1  # drop documents shorter than this
    max_chars: Optional[int] = None  # drop documents longer than this
    dedup: Literal["none", "exact", "normalized"] = "normalized"
    validation_fraction: float = 0.05  # per source, by document, deterministic (training.seed)
    block_size: int = 128  # tokens per packed training block (tasks that pack text into blocks)
    mixture_tokens: Optional[int] = None  # size of the weighted mixture; default: all tokens once
    num_proc: Optional[int] = None  # processes for datasets.map
    # streaming (any source with `streaming: true`; hfkit.data.streaming)
    shuffle_buffer_size: int = 1000  # documents held and drawn from at random before packing (0: stream order)
    streaming_validation_documents: int = 1000  # of the held-out documents, how many the validation set reads

    RENAMED = {"mlm_probability": "mlm.mlm_probability"}

    def validate(self, prefix: str) -> None:
        if not self.sources:
            raise HfkitError(f"recipe key '{prefix}.sources' is empty: give at least one source")
        if self.block_size < 1:
            raise HfkitError(f"recipe key '{prefix}.block_size' must be >= 1, got {self.block_size}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise HfkitError(f"recipe key '{prefix}.validation_fraction' must be in [0, 1), got {self.validation_fraction}")
        for key in ("shuffle_buffer_size", "streaming_validation_documents"):
            if getattr(self, key) < 0:
                raise HfkitError(f"recipe key '{prefix}.{key}' must be >= 0, got {getattr(self, key)}")
        if self.streaming:
            for i, src in enumerate(self.sources):
                if src.epochs is not None:
                    raise HfkitError(f"recipe key '{prefix}.sources.{i}.epochs': a streaming mixture is drawn by "
                                     f"weight (the sources' sizes are not known); give weight instead")

    @property
    def streaming(self) -> bool:
        """Any source streams: then every source is read as a stream (hfkit.data.streaming)."""
        return any(getattr(src, "streaming", False) for src in self.sources)

_NON_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Key for near-exact dedup: NFKC, case-folded, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _NON_WORD.sub(" ", text)).strip()


def _dedup_keys(batch: dict, normalized: bool, column: str = "text") -> dict:
    keys = []
    for t in batch[column]:
        s = normalize_text(t) if normalized else t
        keys.append(hashlib.blake2b(s.encode("utf-8"), digest_size=16).hexdigest())
    return {"_key": keys}


def deduplicate(ds: Dataset, mode: str, num_proc: int | None = None, column: str = "text") -> tuple[Dataset, int]:
    """Keep the first document of every group of duplicates (equal `column`). `mode`: none | exact | normalized."""
    if mode == "none" or len(ds) == 0:
        return ds, 0
    keyed = ds.map(_dedup_keys, batched=True, fn_kwargs={"normalized": mode == "normalized", "column": column},
                   num_proc=num_proc, desc=f"dedup ({mode})")
    keep = first_occurrences(keyed["_key"])
    return ds.select(keep), len(ds) - len(keep)


def first_occurrences(keys) -> list[int]:
    """Indices of the first item of every group of equal keys, in order."""
    seen: set = set()
    keep = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    return keep


def filter_length(ds: Dataset, min_chars: int = 1, max_chars: int | None = None,
                  num_proc: int | None = None) -> Dataset:
    hi = max_chars if max_chars is not None else math.inf
    return ds.filter(lambda b: [min_chars <= len(t.strip()) <= hi for t in b["text"]], batched=True,
                     num_proc=num_proc, desc="length filter")


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic document-level split: (train indices, validation indices), both sorted."""
    if fraction <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    n_val = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def concat_sources(sources: list[SourceConfig], datasets: list[Dataset]) -> tuple[list[str], Dataset]:
    """Every source's records in one dataset with `_src` (the source's index), and the sources' labels
    (a repeated label gets the source's index)."""
    labels, parts = [], []
    for i, (src, ds) in enumerate(zip(sources, datasets)):
        labels.append(source_label(src) if source_label(src) not in labels else f"{source_label(src)}_{i}")
        with quiet_datasets():
            parts.append(ds.add_column("_src", [i] * len(ds)))
    with quiet_datasets():
        try:
            return labels, concatenate_datasets(parts)
        except ValueError as e:
            raise HfkitError(f"data.sources: sources have incompatible columns ({e})") from None


def split_by_source(ds: Dataset, labels: list[str], fraction: float, seed: int,
                    what: str = "documents") -> tuple[dict[str, Dataset], Dataset, dict[str, dict]]:
    """Per source (column `_src` = index into `labels`): a deterministic train/validation split.

    Returns the train part of each source, all validation parts together, and the counts."""
    src_col = np.asarray(ds["_src"])
    train, val_parts, counts = {}, [], {}
    with quiet_datasets():
        for i, label in enumerate(labels):
            idx = np.flatnonzero(src_col == i)
            if len(idx) == 0:
                raise HfkitError(f"data.sources.{i} ({label}): no {what} left after filtering and dedup")
            tr, va = split_indices(len(idx), fraction, seed + i)
            train[label] = ds.select(idx[tr]).remove_columns("_src")
            val_parts.append(ds.select(idx[va]).remove_columns("_src"))
            counts[label] = {"total": int(len(idx)), "train": int(len(tr)), "validation": int(len(va))}
        validation = concatenate_datasets(val_parts)
    if fraction > 0 and len(validation) == 0:
        raise no_validation(len(ds), what, fraction)
    return train, validation, counts


def no_validation(n: int, what: str, fraction: float) -> HfkitError:
    """Validation was asked for (`data.validation_fraction` > 0) but the data is too small to give any."""
    return HfkitError(f"data: {n} {what} cannot be split into training and validation "
                      f"(data.validation_fraction={fraction}): add data, or set data.validation_fraction=0 to train "
                      f"without validation")


@dataclass
class Corpus:
    train: dict[str, Dataset]  # per source label, text only
    validation: Dataset
    sources: dict[str, SourceConfig]
    stats: dict = field(default_factory=dict)


def build_corpus(cfg: DataConfig, seed: int) -> Corpus:
    """Load, filter, dedup and split every source of `cfg` (no tokenization yet)."""
    labels, parts = [], []
    loaded = 0
    for i, src in enumerate(cfg.sources):
        label = source_label(src)
        if label in labels:
            label = f"{label}_{i}"
        ds = load_source(src)
        loaded += len(ds)
        labels.append(label)
        with quiet_datasets():
            parts.append(ds.add_column("_src", [i] * len(ds)))
    with quiet_datasets():  # seconds even on large corpora
        everything = concatenate_datasets(parts)
        filtered = filter_length(everything, cfg.min_chars, cfg.max_chars, cfg.num_proc)
        n_filtered = len(everything) - len(filtered)
        deduped, n_dup = deduplicate(filtered, cfg.dedup, cfg.num_proc)
    if len(deduped) == 0:
        raise HfkitError(
            f"data: no documents left after filtering ({loaded} loaded, {n_filtered} outside "
            f"min_chars={cfg.min_chars}/max_chars={cfg.max_chars}, {n_dup} duplicates)"
        )
    train, validation, counts = split_by_source(deduped, labels, cfg.validation_fraction, seed, "documents")
    per_source = {k: {"documents": c["total"], "train_documents": c["train"], "validation_documents": c["validation"]}
                  for k, c in counts.items()}
    stats = {"documents_loaded": loaded, "removed_by_length": n_filtered, "removed_duplicates": n_dup,
             "dedup": cfg.dedup, "sources": per_source}
    return Corpus(train, validation, dict(zip(labels, cfg.sources)), stats)


def mixture_targets(source_tokens: dict[str, int], sources: dict[str, SourceConfig],
                    mixture_tokens: int | None) -> dict[str, float]:
    """Tokens to draw from each source (GPT-3 style).

    A source with `epochs` contributes epochs x its tokens. Sources with `weight` share what is left
    of the mixture size (`mixture_tokens`, default: every source's tokens once) in proportion to
    their weights. A source with neither is taken once.
    """
    total = mixture_tokens if mixture_tokens is not None else sum(source_tokens.values())
    targets, weighted = {}, {}
    for label, src in sources.items():
        if src.weight is not None and src.epochs is not None:
            raise HfkitError(f"data source '{label}': give weight or epochs, not both")
        if src.weight is not None:
            weighted[label] = src.weight
        else:
            targets[label] = (src.epochs if src.epochs is not None else 1.0) * source_tokens[label]
    if weighted:
        left = total - sum(targets.values())
        if left <= 0:
            raise HfkitError(
                f"data: weighted sources get no tokens: sources with epochs already fill "
                f"data.mixture_tokens={total}"
            )
        wsum = sum(weighted.values())
        for label, w in weighted.items():
            targets[label] = left * w / wsum
    return targets


def sample_mixture(tokenized: dict[str, Dataset], sources: dict[str, SourceConfig],
                   mixture_tokens: int | None, seed: int) -> tuple[Dataset, dict]:
    """Draw whole documents from each tokenized source until its token target is met.

    Full passes come first (each pass in a fresh random order), then a random subset for the
    fractional epoch. Returns the shuffled mixture and a report with each source's effective epochs.
    """
    rng = np.random.default_rng(seed)
    counts = {k: np.asarray(ds["num_tokens"], dtype=np.int64) for k, ds in tokenized.items()}
    src_tokens = {k: int(c.sum()) for k, c in counts.items()}
    for k, n in src_tokens.items():
        if n == 0:
            raise HfkitError(f"data source '{k}': no tokens after tokenization")
    targets = mixture_targets(src_tokens, sources, mixture_tokens)
    parts, report = [], {}
    for label, ds in tokenized.items():
        c, target = counts[label], targets[label]
        full, frac_tokens = divmod(target, src_tokens[label])
        idx = [rng.permutation(len(c)) for _ in range(int(full))]
        if frac_tokens > 0:
            perm = rng.permutation(len(c))
            cum = np.cumsum(c[perm])
            take = int(np.searchsorted(cum, frac_tokens)) + 1  # smallest prefix reaching the target
            if take > 1 and abs(cum[take - 2] - frac_tokens) < abs(cum[take - 1] - frac_tokens):
                take -= 1  # closer to the target without the last document
            idx.append(perm[:take])
        chosen = np.concatenate(idx) if idx else np.arange(0)
        drawn = int(c[chosen].sum())
        parts.append(ds.select(chosen))
        report[label] = {"tokens": src_tokens[label], "target_tokens": int(round(target)),
                         "drawn_tokens": drawn, "documents_drawn": int(len(chosen)),
                         "effective_epochs": round(drawn / src_tokens[label], 4)}
    mixed = concatenate_datasets(parts)
    total = sum(r["drawn_tokens"] for r in report.values())
    for r in report.values():
        r["share"] = round(r["drawn_tokens"] / total, 4) if total else 0.0
    return mixed.shuffle(seed=seed).flatten_indices(), report
