"""Data sources: one entry of `data.sources`, by `kind`. Every kind is its own small config class with
only the fields it reads, registered by name (`@source_kind`); the recipe picks the class from the
entry's `kind`. Here: local files (text/json/csv/parquet) and Hub datasets; the built-in corpora
that this machine has offline are registered in `hfkit.data.catalog`.

`load_records(src)` gives a `datasets.Dataset` with all of a source's columns (records for
instruction tuning, chats, pairs); `load_source(src)` one column, `text`.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from datasets import Dataset, IterableDataset, load_dataset

from ..errors import HfkitError
from ..hub import looks_like_hub_id

_EXT_KIND = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "json", ".json": "json",
             ".csv": "csv", ".parquet": "parquet"}
KINDS: dict[str, type["SourceConfig"]] = {}  # kind -> its config class (files, Hub, built-in corpora)
DEFAULT_KIND = "default"
# fields every kind had in one 17-field class before each kind got its own: a saved recipe that still
# lists them at these values loads (they meant "not set")
_LEGACY_UNSET = {"path": None, "name": None, "text_field": "text", "sample_by": "document", "config_name": None,
                 "split": "train", "revision": None, "lang": None, "max_chars": None, "max_records": None,
                 "rejected": "hard_negative", "policy": None, "num_samples": 2, "weight": None, "epochs": None,
                 "languages": ["de", "fr", "es", "it", "ru", "ja"]}


def source_kind(name: str):
    """Class decorator: register a source config class under its `kind`."""
    def register(cls):
        if name in KINDS:
            raise RuntimeError(f"source kind '{name}' registered twice")
        cls.KIND = name
        KINDS[name] = cls
        return cls
    return register


@dataclass
class SourceConfig:
    """What every kind of source has: a label, its share of a training mixture, and the column that
    holds the text (for the tasks that read one)."""
    kind: str = DEFAULT_KIND
    name: Optional[str] = None  # label used in reports; default: derived from path/kind
    weight: Optional[float] = None  # share of the training mixture (GPT-3 style)
    epochs: Optional[float] = None  # or: how many passes over this source
    text_field: str = "text"

    KIND: ClassVar[str] = ""
    builtin: ClassVar[bool] = False  # built from what the machine has (no path needed)
    has_records: ClassVar[bool] = True  # False: plain text only (no instruction/labelled/preference records)

    def __post_init__(self):
        self.kind = type(self).KIND or self.kind

    @classmethod
    def variant(cls, data: Any, key: str) -> type:
        """The class of one `data.sources` entry, from its `kind` (the schema's hook for tagged unions)."""
        kind = data.get("kind", DEFAULT_KIND) if isinstance(data, dict) else DEFAULT_KIND
        if kind not in KINDS:
            import difflib

            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise HfkitError(f"recipe key '{key}.kind': unknown source kind '{kind}'{hint} (kinds: {', '.join(KINDS)})")
        return KINDS[kind]

    @classmethod
    def drop_unset_legacy(cls, data: dict) -> dict:
        """`data` without the old one-class fields this kind lacks, where they hold their unset value."""
        own = {f.name for f in fields(cls)}
        return {k: v for k, v in data.items() if k in own or k not in _LEGACY_UNSET or _LEGACY_UNSET[k] != v}

    def validate(self, prefix: str) -> None:
        for key in ("weight", "epochs"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise HfkitError(f"recipe key '{prefix}.{key}' must be > 0, got {value}")
        self.check(prefix)

    # --- what each kind defines
    def check(self, key: str) -> None:
        """Cheap up-front check (fields it needs, files that exist): one line naming the key."""

    def label(self) -> str:
        return self.name or self.KIND

    def where(self) -> str:
        """How error messages name the source."""
        return f"{self.KIND} source"

    def load(self) -> Dataset:
        raise NotImplementedError

    def stream(self) -> IterableDataset:
        """The source as a `datasets.IterableDataset` (a streaming mixture reads every source this way):
        what is built in memory is read through `Dataset.to_iterable_dataset`."""
        return self.load().to_iterable_dataset()


@dataclass
class _PathSource(SourceConfig):
    path: Optional[str] = None
    streaming: bool = False  # read as a datasets IterableDataset, record by record, never whole (hfkit.data.streaming)

    def check(self, key: str) -> None:
        if not self.path:
            raise HfkitError(f"recipe key '{key}.path' is required for a '{self.KIND}' source")


@dataclass
class FileSource(_PathSource):
    """Local files: a file, a folder (its own files of this kind) or a glob."""
    sample_by: Literal["document", "paragraph", "line"] = "document"  # text files only

    def check(self, key: str) -> None:
        super().check(key)
        if not any(c in self.path for c in "*?[") and not os.path.exists(self.path):
            raise HfkitError(f"recipe key '{key}.path': no such file or folder: {self.path}")
        if not self.files():
            raise HfkitError(f"recipe key '{key}.path': no {self.KIND} files found at {self.path}")

    def label(self) -> str:
        return self.name or Path(self.path).stem

    def where(self) -> str:
        files = self.files()
        return files[0] if len(files) == 1 else f"{self.path} ({len(files)} files)"

    def files(self) -> list[str]:
        """A glob's matches, a folder's own files of this kind (a symlink that leads out of the folder is
        refused: hfkit reads, and an index stores, only what the folder holds), or the file itself."""
        p = self.path
        if any(c in p for c in "*?["):
            found = sorted(glob.glob(p, recursive=True))
        elif os.path.isdir(p):
            exts = {k for k, v in _EXT_KIND.items() if v == self.KIND}
            root = Path(p).resolve()
            found = []
            for f in sorted(Path(p).rglob("*")):
                if not (f.is_file() and f.suffix in exts):
                    continue
                target = f.resolve()
                if root not in target.parents:
                    raise HfkitError(f"{f}: a symlink out of the folder '{p}' (to {target}): hfkit reads only the "
                                     f"folder's own files; copy it in, or name the file itself")
                found.append(str(f))
        else:
            found = [p]
        return [f for f in found if os.path.isfile(f)]

    def load(self) -> Dataset:
        files = self.files()
        builder = "text" if self.KIND == "text" else self.KIND
        kwargs = {"sample_by": self.sample_by} if self.KIND == "text" else {}
        try:
            return load_dataset(builder, data_files=files, split="train", **kwargs)
        except Exception as e:  # datasets wraps parse errors in several types; find the culprit ourselves
            for f in files:
                if self.KIND in ("text", "json", "csv"):
                    read_text_file(f)  # binary, or not UTF-8: named as `rag index` names it
                if self.KIND == "json" and (msg := _first_bad_json_line(f)):
                    raise HfkitError(msg) from None
            if os.path.getsize(files[0]) == 0:
                raise HfkitError(f"{files[0]}: file is empty") from None
            while e.__cause__ is not None and "error occurred while generating" in str(e):
                e = e.__cause__  # datasets' generic wrapper: report the parser's own message
            raise HfkitError(f"{', '.join(files[:3])}: cannot read as {self.KIND}: "
                             f"{str(e).splitlines()[0][:200]}") from None

    def stream(self) -> IterableDataset:
        builder = "text" if self.KIND == "text" else self.KIND
        kwargs = {"sample_by": self.sample_by} if self.KIND == "text" else {}
        return load_dataset(builder, data_files=self.files(), split="train", streaming=True, **kwargs)


for _kind in ("text", "json", "csv", "parquet"):  # one class each, so that `kind` names it
    source_kind(_kind)(dataclass(type(f"{_kind.capitalize()}Source", (FileSource,), {
        "__doc__": f"Local {_kind} files.", "__module__": __name__})))


@source_kind("hub")
@dataclass
class HubSource(_PathSource):
    """A dataset on the Hugging Face Hub by id (offline: the local caches)."""
    config_name: Optional[str] = None  # the dataset's configuration (load_dataset's `name`)
    split: str = "train"  # which split to read
    revision: Optional[str] = None  # pin a revision (branch, tag or commit)
    data_files: Any = None  # load_dataset's data_files: a path or glob in the repo, a list, or {split: files}

    def check(self, key: str) -> None:
        super().check(key)
        if not looks_like_hub_id(self.path):
            raise HfkitError(f"recipe key '{key}.path': '{self.path}' is not a Hub dataset id (owner/name)")
        files = self.data_files
        ok = (files is None or isinstance(files, str) or (isinstance(files, list) and all(isinstance(f, str) for f in files))
              or (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, (str, list))
                                                  for k, v in files.items())))
        if not ok:
            raise HfkitError(f"recipe key '{key}.data_files' expects a path or glob in the dataset repo, a list of "
                             f"them, or a mapping of split to them; got {files!r}")

    def label(self) -> str:
        return self.name or self.path

    def where(self) -> str:
        return f"Hub dataset {self.path}"

    def load(self, streaming: bool = False) -> Dataset | IterableDataset:
        """`load_dataset(id)`; offline, datasets' own cache first, then the Hub file cache's snapshot."""
        try:
            ds = load_dataset(self.path, name=self.config_name, split=self.split, revision=self.revision,
                              data_files=self.data_files, streaming=streaming)
        except Exception as e:
            ds = self._snapshot(streaming)
            if ds is None:
                offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
                how = (" — it is not in the local cache and HF_HUB_OFFLINE=1; load it once online, or point "
                       "HF_HOME at a cache that holds it") if offline else ""
                raise HfkitError(f"Hub dataset '{self.path}' could not be loaded{how}: "
                                 f"{str(e).splitlines()[0][:200]}") from None
        if not isinstance(ds, IterableDataset if streaming else Dataset):
            raise HfkitError(f"Hub dataset '{self.path}': split '{self.split}' did not give a single dataset")
        return ds

    def stream(self) -> IterableDataset:
        return self.load(streaming=True)

    def _snapshot(self, streaming: bool = False) -> Dataset | IterableDataset | None:
        """Offline: the dataset repo's files as `huggingface_hub` cached them (HF_HUB_CACHE), if present."""
        from huggingface_hub import snapshot_download

        try:
            from ..hub import hub_cache_dir

            folder = snapshot_download(self.path, repo_type="dataset", revision=self.revision, local_files_only=True,
                                       cache_dir=hub_cache_dir())
        except Exception:
            return None
        try:
            return load_dataset(folder, name=self.config_name, split=self.split, data_files=self.data_files,
                                streaming=streaming)
        except Exception as e:
            what = "".join(f" {k}={v!r}" for k, v in (("config_name", self.config_name), ("split", self.split),
                                                       ("data_files", self.data_files)) if v is not None)
            raise HfkitError(f"Hub dataset '{self.path}'{what} (cached at {folder}): "
                             f"{str(e).splitlines()[0][:300]}") from None


# ----------------------------------------------------------------------------- reading


def read_text_file(path: str | os.PathLike) -> str:
    """A text document as training reads it: UTF-8, and text (a NUL byte marks a binary file)."""
    data = Path(path).read_bytes()
    if b"\x00" in data:
        raise HfkitError(f"{path}: a binary file, not text (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HfkitError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _first_bad_json_line(path: str) -> str | None:
    with open(path, encoding="utf-8", errors="strict") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    return f"{path} line {n}: invalid JSON ({e.msg})"
    return None


def source_label(src: SourceConfig) -> str:
    return src.label()


def source_where(src: SourceConfig) -> str:
    return src.where()


def check_source(src: SourceConfig, key: str) -> None:
    src.validate(key)


def load_records(src: SourceConfig) -> Dataset:
    """Load one source with all its columns (records for instruction tuning, chats, pairs)."""
    with quiet_datasets():
        return src.load()


def load_source(src: SourceConfig) -> Dataset:
    """Load one source as a Dataset with a single `text` column."""
    ds = load_records(src)
    with quiet_datasets():
        return _text_column(ds, src)


def _text_column(ds: Dataset, src: SourceConfig) -> Dataset:
    where = source_where(src)
    if src.text_field not in ds.column_names:
        raise HfkitError(
            f"{where}: text field '{src.text_field}' not found (columns: {', '.join(ds.column_names)}); "
            f"set text_field"
        )
    if src.text_field != "text" and "text" in ds.column_names:
        ds = ds.remove_columns("text")
    ds = ds.select_columns([src.text_field])
    if src.text_field != "text":
        ds = ds.rename_column(src.text_field, "text")
    if getattr(ds.features["text"], "dtype", None) not in ("string", "large_string"):  # every record, not a sample
        bad = next((i for i, t in enumerate(ds["text"]) if t is not None and not isinstance(t, str)), None)
        if bad is not None:
            raise HfkitError(f"{where}: field '{src.text_field}' of record {bad} is not text")
    return ds.filter(lambda b: [t is not None for t in b["text"]], batched=True)


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars or logged tracebacks from `datasets` for quick steps whose errors we report
    ourselves as one line (bars stay on for long work such as tokenization)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    logger = logging.getLogger("datasets")
    level = logger.level
    datasets.disable_progress_bars()
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        if was_enabled:
            datasets.enable_progress_bars()


def file_kind(path: str | os.PathLike) -> str:
    """The file kind of a path by its extension (text when unknown); a folder by the files it holds."""
    p = Path(path)
    if p.is_dir():
        exts = {f.suffix for f in p.rglob("*") if f.is_file()}
        return next((_EXT_KIND[e] for e in (".jsonl", ".json", ".parquet", ".csv") if e in exts), "text")
    return _EXT_KIND.get(p.suffix.lower(), "text")
