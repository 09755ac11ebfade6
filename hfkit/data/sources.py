"""Data sources: local text/JSONL/CSV/Parquet, a Hub dataset id, and the built-in default corpus.

Every source becomes a `datasets.Dataset` with one column, `text`.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from datasets import Dataset, load_dataset

from ..errors import HfkitError
from ..hub import looks_like_hub_id


@dataclass
class SourceConfig:
    """One entry of `data.sources`."""
    kind: Literal["default", "pydoc_qa", "text", "json", "csv", "parquet", "hub", "gettext", "gettext_language",
                  "gettext_pair_match", "gettext_preferences", "python_tokens", "pydoc_grammar_qa",
                  "python_stdlib"] = "default"
    path: Optional[str] = None  # file, folder or glob (text/json/csv/parquet), Hub dataset id, locale dir (gettext)
    name: Optional[str] = None  # label used in reports; default: derived from path/kind
    text_field: str = "text"
    sample_by: Literal["document", "paragraph", "line"] = "document"  # text files only
    config_name: Optional[str] = None  # hub: dataset configuration
    split: str = "train"  # hub: which split to read
    revision: Optional[str] = None  # hub: pin a revision
    lang: Optional[str] = None  # gettext, gettext_pair_match: target language of the English->lang pairs (de, fr, ...)
    languages: list[str] = field(default_factory=lambda: list(LANGUAGE_ID_DEFAULT))  # gettext_language: the labels
    max_chars: Optional[int] = None  # gettext*: drop pairs longer than this
    max_records: Optional[int] = None  # built-in labelled sets: sample this many (gettext_language: per language;
    #                                    python_tokens, python_stdlib: from this many stdlib modules)
    # gettext_preferences: what is rejected: another message's translation of similar length from the same
    # catalog (hard_negative), or the worst of `num_samples` samples of the run at `policy` by chrF (on_policy)
    rejected: Literal["hard_negative", "on_policy"] = "hard_negative"
    policy: Optional[str] = None  # gettext_preferences, on_policy: the run that samples (e.g. runs/sft_translate)
    num_samples: int = 2  # gettext_preferences, on_policy: samples per prompt
    weight: Optional[float] = None  # share of the training mixture (GPT-3 style)
    epochs: Optional[float] = None  # or: how many passes over this source

LANGUAGE_ID_DEFAULT = ("de", "fr", "es", "it", "ru", "ja")
BUILTIN_KINDS = ("default", "pydoc_qa", "gettext", "gettext_language", "gettext_pair_match", "gettext_preferences",
                 "python_tokens", "pydoc_grammar_qa", "python_stdlib")  # built from what the machine has: no path
_EXT_KIND = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "json", ".json": "json",
             ".csv": "csv", ".parquet": "parquet"}
_HEADING = re.compile(r"\n(?=[^\n]+\n[=*\-~^]{3,}\n)")


def default_corpus_documents() -> list[str]:
    """English prose from Python's own `pydoc_data.topics` (~65k words), split into sections.

    It ships with every CPython, so a recipe always has real text to train on, offline.
    """
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        for section in _HEADING.split(topics[key]):
            section = section.strip()
            if section:
                docs.append(section)
    return docs


def pydoc_instructions() -> list[dict]:
    """Instruction records from the default corpus: a section's title -> its first paragraph.

    Real English and always there offline: the built-in data for instruction-tuning recipes."""
    rows, seen = [], set()
    for doc in default_corpus_documents():
        lines = doc.splitlines()
        if len(lines) < 3 or not re.fullmatch(r"[=*\-~^]{3,}", lines[1].strip()):
            continue
        title = lines[0].strip()
        paragraphs = [p.strip() for p in "\n".join(lines[2:]).split("\n\n") if p.strip()]
        prose = next((p for p in paragraphs if not p.startswith(" ") and len(p.split()) >= 8), None)
        if prose and title not in seen:
            seen.add(title)
            rows.append({"instruction": f'What does the Python documentation say about "{title}"?',
                         "input": "", "output": " ".join(prose.split())})
    return rows


def source_label(src: SourceConfig) -> str:
    if src.name:
        return src.name
    if src.kind in ("default", "pydoc_qa"):
        return "pydoc" if src.kind == "default" else "pydoc_qa"
    if src.kind in ("gettext", "gettext_pair_match", "gettext_preferences"):
        return f"{src.kind}_{src.lang}"
    if src.kind in BUILTIN_KINDS:
        return src.kind
    return Path(src.path).stem if src.kind != "hub" else src.path


def _files(src: SourceConfig) -> list[str]:
    """The files of a file source: a glob's matches, a folder's own files of the source's kind (a
    symlink that leads out of the folder is refused: hfkit reads, and an index stores, only what the
    folder holds), or the file itself."""
    p = src.path
    if any(c in p for c in "*?["):
        files = sorted(glob.glob(p, recursive=True))
    elif os.path.isdir(p):
        exts = {k for k, v in _EXT_KIND.items() if v == src.kind}
        root = Path(p).resolve()
        files = []
        for f in sorted(Path(p).rglob("*")):
            if not (f.is_file() and f.suffix in exts):
                continue
            target = f.resolve()
            if root not in target.parents:
                raise HfkitError(f"{f}: a symlink out of the folder '{p}' (to {target}): hfkit reads only the folder's "
                                 f"own files; copy it in, or name the file itself")
            files.append(str(f))
    else:
        files = [p]
    return [f for f in files if os.path.isfile(f)]


def read_text_file(path: str | os.PathLike) -> str:
    """A text document as training reads it: UTF-8, and text (a NUL byte marks a binary file)."""
    data = Path(path).read_bytes()
    if b"\x00" in data:
        raise HfkitError(f"{path}: a binary file, not text (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HfkitError(f"{path}: not UTF-8 text (byte {e.start})") from None


def check_source(src: SourceConfig, key: str) -> None:
    """Cheap up-front check of one source: the fields it needs and that its files exist."""
    if src.kind in ("gettext", "gettext_pair_match", "gettext_preferences") and not src.lang:
        raise HfkitError(f"recipe key '{key}.lang' is required for a '{src.kind}' source (e.g. de)")
    if src.kind == "gettext_preferences" and src.rejected == "on_policy":
        if not src.policy:
            raise HfkitError(f"recipe key '{key}.policy' is required for rejected=on_policy: the run that samples "
                             f"(e.g. runs/sft_translate)")
        if src.num_samples < 2:
            raise HfkitError(f"recipe key '{key}.num_samples' must be >= 2, got {src.num_samples}")
        from ..hub import check_model_ref

        check_model_ref(src.policy, f"recipe key '{key}.policy'")
    if src.kind == "gettext_language" and len(src.languages) < 2:
        raise HfkitError(f"recipe key '{key}.languages' needs at least two languages, got {src.languages}")
    if src.max_records is not None and src.max_records < 1:
        raise HfkitError(f"recipe key '{key}.max_records' must be >= 1, got {src.max_records}")
    if src.kind in BUILTIN_KINDS:
        return
    if not src.path:
        raise HfkitError(f"recipe key '{key}.path' is required for a '{src.kind}' source")
    if src.kind == "hub":
        if not looks_like_hub_id(src.path):
            raise HfkitError(f"recipe key '{key}.path': '{src.path}' is not a Hub dataset id (owner/name)")
        return
    if not any(c in src.path for c in "*?[") and not os.path.exists(src.path):
        raise HfkitError(f"recipe key '{key}.path': no such file or folder: {src.path}")
    if not _files(src):
        raise HfkitError(f"recipe key '{key}.path': no {src.kind} files found at {src.path}")
    if src.weight is not None and src.weight <= 0:
        raise HfkitError(f"recipe key '{key}.weight' must be > 0, got {src.weight}")
    if src.epochs is not None and src.epochs <= 0:
        raise HfkitError(f"recipe key '{key}.epochs' must be > 0, got {src.epochs}")


def source_from_spec(spec: str, text_field: str = "text") -> SourceConfig:
    """CLI shorthand: `default`, a file/folder path (kind from its extension), or `hub:owner/name`."""
    if spec == "default":
        return SourceConfig(kind="default")
    if spec.startswith("hub:"):
        return SourceConfig(kind="hub", path=spec[4:], text_field=text_field)
    p = Path(spec)
    if p.is_dir():
        exts = {f.suffix for f in p.rglob("*") if f.is_file()}
        kind = next((_EXT_KIND[e] for e in (".jsonl", ".json", ".parquet", ".csv") if e in exts), "text")
        return SourceConfig(kind=kind, path=spec, text_field=text_field)
    if p.exists():
        return SourceConfig(kind=_EXT_KIND.get(p.suffix.lower(), "text"), path=spec, text_field=text_field)
    if looks_like_hub_id(spec) and "/" in spec:
        return SourceConfig(kind="hub", path=spec, text_field=text_field)
    raise HfkitError(f"data source not found: {spec} (give a file, a folder, 'default' or hub:owner/name)")


def _first_bad_json_line(path: str) -> str | None:
    with open(path, encoding="utf-8", errors="strict") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    return f"{path} line {n}: invalid JSON ({e.msg})"
    return None


def source_where(src: SourceConfig) -> str:
    """How error messages name a source: its file, folder or Hub id."""
    if src.kind in BUILTIN_KINDS:
        return f"{src.kind} source"
    if src.kind == "hub":
        return f"Hub dataset {src.path}"
    files = _files(src)
    return files[0] if len(files) == 1 else f"{src.path} ({len(files)} files)"


def load_records(src: SourceConfig) -> Dataset:
    """Load one source with all its columns (records for instruction tuning, chats, pairs)."""
    with quiet_datasets():
        if src.kind == "default":
            return Dataset.from_dict({"text": default_corpus_documents()})
        if src.kind == "pydoc_qa":
            return Dataset.from_list(pydoc_instructions())
        if src.kind == "gettext":
            from .gettext_pairs import DEFAULT_LOCALE_DIR, gettext_pairs

            return gettext_pairs(src.lang, src.path or DEFAULT_LOCALE_DIR, max_chars=src.max_chars)[0]
        if src.kind == "gettext_language":
            from .gettext_pairs import DEFAULT_LOCALE_DIR, language_id_records

            return language_id_records(src.languages, src.path or DEFAULT_LOCALE_DIR, src.max_records, src.max_chars)
        if src.kind == "gettext_pair_match":
            from .gettext_pairs import DEFAULT_LOCALE_DIR, pair_match_records

            return pair_match_records(src.lang, src.path or DEFAULT_LOCALE_DIR, src.max_records, src.max_chars)
        if src.kind == "gettext_preferences":
            from .gettext_pairs import DEFAULT_LOCALE_DIR
            from .preferences import gettext_preference_records, on_policy_rejections

            ds = gettext_preference_records(src.lang, src.path or DEFAULT_LOCALE_DIR, src.max_chars, src.max_records)
            if src.rejected == "on_policy":
                ds, _ = on_policy_rejections(ds, src.policy, src.num_samples)
            return ds
        if src.kind == "python_tokens":
            from .code_tokens import python_token_records

            return python_token_records(src.max_records or 60)
        if src.kind == "pydoc_grammar_qa":
            from .pydoc_grammar import grammar_qa_records

            return grammar_qa_records()
        if src.kind == "python_stdlib":
            from .code_tokens import stdlib_documents

            return stdlib_documents(src.max_records)
        if src.kind == "hub":
            return _load_hub(src)
        return _load_local(src, _files(src))


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


def _load_local(src: SourceConfig, files: list[str]) -> Dataset:
    builder = "text" if src.kind == "text" else src.kind
    kwargs = {"sample_by": src.sample_by} if src.kind == "text" else {}
    try:
        return load_dataset(builder, data_files=files, split="train", **kwargs)
    except Exception as e:  # datasets wraps parse errors in several types; find the culprit ourselves
        for f in files:
            if src.kind in ("text", "json", "csv"):
                read_text_file(f)  # binary, or not UTF-8: named as `rag index` names it
            if src.kind == "json" and (msg := _first_bad_json_line(f)):
                raise HfkitError(msg) from None
        if os.path.getsize(files[0]) == 0:
            raise HfkitError(f"{files[0]}: file is empty") from None
        while e.__cause__ is not None and "error occurred while generating" in str(e):
            e = e.__cause__  # datasets' generic wrapper: report the parser's own message
        raise HfkitError(f"{', '.join(files[:3])}: cannot read as {src.kind}: {str(e).splitlines()[0][:200]}") from None


def _load_hub(src: SourceConfig) -> Dataset:
    """`load_dataset(id)`; offline, datasets' own cache first, then the Hub file cache's snapshot."""
    try:
        ds = load_dataset(src.path, name=src.config_name, split=src.split, revision=src.revision)
    except Exception as e:
        ds = _load_hub_snapshot(src)
        if ds is None:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            how = (" — it is not in the local cache and HF_HUB_OFFLINE=1; load it once online, or point "
                   "HF_HOME at a cache that holds it") if offline else ""
            raise HfkitError(f"Hub dataset '{src.path}' could not be loaded{how}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(ds, Dataset):
        raise HfkitError(f"Hub dataset '{src.path}': split '{src.split}' did not give a single dataset")
    return ds


def _load_hub_snapshot(src: SourceConfig) -> Dataset | None:
    """Offline: the dataset repo's files as `huggingface_hub` cached them (HF_HUB_CACHE), if present."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(src.path, repo_type="dataset", revision=src.revision, local_files_only=True)
    except Exception:
        return None
    try:
        return load_dataset(folder, name=src.config_name, split=src.split)
    except Exception as e:
        raise HfkitError(f"Hub dataset '{src.path}' (cached at {folder}): {str(e).splitlines()[0][:200]}") from None
