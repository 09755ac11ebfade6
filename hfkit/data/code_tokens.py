"""Token classification on real code: the Python standard library's own source, every token tagged
by Python's `tokenize` and `keyword` modules.

Words are the tokenizer's tokens (layout tokens — newlines, indents — dropped); tags, one entity per
word in IOB2 (`B-KEYWORD`, ...): keyword (hard and soft), builtin (a name in `builtins`), name (any
other identifier), op, number, string, comment. Records: {"tokens", "tags", "file"}, a run of whole
lines of one file, in file order.
"""
from __future__ import annotations

import builtins
import io
import keyword
import sysconfig
import tokenize
from pathlib import Path

from datasets import Dataset

from ..errors import HfkitError

TAGS = ("KEYWORD", "BUILTIN", "NAME", "OP", "NUMBER", "STRING", "COMMENT")
_BUILTINS = frozenset(dir(builtins))
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)


def token_tag(tok: tokenize.TokenInfo) -> str | None:
    """The tag of one token, or None for layout (NEWLINE, NL, INDENT, DEDENT, ENDMARKER)."""
    if tok.type == tokenize.NAME:
        return "KEYWORD" if tok.string in _KEYWORDS else "BUILTIN" if tok.string in _BUILTINS else "NAME"
    return {tokenize.OP: "OP", tokenize.NUMBER: "NUMBER", tokenize.STRING: "STRING",
            tokenize.COMMENT: "COMMENT"}.get(tok.type)


def tag_source(source: str) -> list[tuple[int, str, str]]:
    """(line, token text, tag) for every non-layout token of a Python source."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        tag = token_tag(tok)
        if tag is not None:
            out.append((tok.start[0], tok.string, tag))
    return out


def stdlib_files(limit: int | None = None) -> list[Path]:
    """The standard library's top-level modules (tests and vendored packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith(("test", "_")))
    if not files:
        raise HfkitError(f"no Python source files found in {root}")
    return files[:limit] if limit else files


def stdlib_documents(max_files: int | None = None) -> Dataset:
    """The standard library's own source (~570 modules, ~10 MB; tests, site-packages and the GUI
    packages left out), one document per file, in a fixed order: a code corpus on every machine."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "site-packages", "__pycache__", "idlelib", "lib2to3", "tkinter", "turtledemo")
    files = sorted(p for p in root.rglob("*.py") if not any(part.startswith(skip) for part in p.relative_to(root).parts))
    if not files:
        raise HfkitError(f"no Python source files found in {root}")
    files = files[:max_files] if max_files else files
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    return Dataset.from_dict({"text": texts, "path": [str(f.relative_to(root)) for f in files]})


def python_token_records(max_files: int | None = 60, max_words: int = 48, max_chars: int = 400) -> Dataset:
    """Records of consecutive whole lines (at most `max_words` tokens and about `max_chars` characters;
    a longer line is a record of its own, cut at `max_words`) from the first `max_files` stdlib modules."""
    rows = []
    for path in stdlib_files(max_files):
        try:
            tagged = tag_source(path.read_text(encoding="utf-8"))
        except (SyntaxError, tokenize.TokenError, UnicodeDecodeError):
            continue
        lines: dict[int, list[tuple[str, str]]] = {}
        for line, text, tag in tagged:
            lines.setdefault(line, []).append((text, f"B-{tag}"))
        words: list[tuple[str, str]] = []
        for line_words in lines.values():
            chars = sum(len(w) for w, _ in words) + sum(len(w) for w, _ in line_words)
            if words and (len(words) + len(line_words) > max_words or chars > max_chars):
                rows.append({"tokens": [w for w, _ in words], "tags": [t for _, t in words], "file": path.stem})
                words = []
            words += line_words[:max_words]
        if words:
            rows.append({"tokens": [w for w, _ in words], "tags": [t for _, t in words], "file": path.stem})
    return Dataset.from_list(rows)
