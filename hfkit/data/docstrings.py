"""Instruction tasks from the Python standard library's own source (real code and prose, offline):

- summarization: a function's or class's docstring body -> its summary line (PEP 257: a one-line
  summary, a blank line, then the description). Records {"document", "summary", "module", "name"}.
- code generation: a function's signature and docstring -> its body. Records {"prompt", "completion",
  "module", "name"}; the prompt is the `def` line(s) and the docstring as written, the completion the
  statements after the docstring, as written.

Both read every top-level module of the standard library (tests and private modules excluded) with
`ast`; `module` names the file, so a split by module (`group_field: module`) holds whole modules out.
"""
from __future__ import annotations

import ast
import inspect
import textwrap

from datasets import Dataset

from ..errors import HfkitError
from .code_tokens import stdlib_files


def _definitions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every documented function and class of a module, classes' methods
    included (`Class.method`), functions nested in functions not."""
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if ast.get_docstring(node):
                yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from _definitions(node, f"{prefix}{node.name}.")


def pep257_parts(doc: str) -> tuple[str, str] | None:
    """(summary line, description) of a docstring written as PEP 257 asks, else None."""
    lines = inspect.cleandoc(doc).splitlines()
    if len(lines) < 3 or not lines[0].strip() or lines[1].strip():
        return None
    summary, body = lines[0].strip(), "\n".join(lines[2:]).strip()
    if not summary.endswith(".") or len(summary) > 120:
        return None
    return summary, body


def summarization_records(max_modules: int | None = None, min_chars: int = 80, max_chars: int = 1500) -> Dataset:
    rows = []
    for path in stdlib_files(max_modules):
        tree = _parse(path)
        for name, node in _definitions(tree) if tree else ():
            parts = pep257_parts(ast.get_docstring(node, clean=False))
            if parts and min_chars <= len(parts[1]) <= max_chars:
                rows.append({"document": parts[1], "summary": parts[0], "module": path.stem, "name": name})
    if not rows:
        raise HfkitError("no docstrings with a summary line found in the standard library")
    return Dataset.from_list(rows)


def code_records(max_modules: int | None = None, max_body_lines: int = 25) -> Dataset:
    rows = []
    for path in stdlib_files(max_modules):
        source = path.read_text(encoding="utf-8", errors="replace")
        tree = _parse(path, source)
        if tree is None:
            continue
        lines = source.splitlines()
        for name, node in _definitions(tree):
            if isinstance(node, ast.ClassDef) or len(node.body) < 2 or node.decorator_list:
                continue
            doc, first = node.body[0], node.body[1]
            body = lines[first.lineno - 1:node.end_lineno]
            if not 1 <= len(body) <= max_body_lines:
                continue
            header = lines[node.lineno - 1:doc.end_lineno]
            prompt = textwrap.dedent("\n".join(header)) + "\n"
            indent = len(header[0]) - len(header[0].lstrip())
            completion = "\n".join(ln[indent:] if ln[:indent].strip() == "" else ln for ln in body) + "\n"
            rows.append({"prompt": prompt, "completion": completion, "module": path.stem, "name": name})
    if not rows:
        raise HfkitError("no documented functions found in the standard library")
    return Dataset.from_list(rows)


def _parse(path, source: str | None = None):
    try:
        return ast.parse(source if source is not None else path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return None
