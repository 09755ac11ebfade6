"""Small file helpers: writes are atomic (temp file, then rename) so nothing is left half-written."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to `path` through a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    """One JSON object per line (UTF-8 kept as is), written atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """Fail early, in one line, when `path` cannot become a folder we write to: a file in the way,
    or a parent we may not write into (tested by creating and removing a temporary folder)."""
    from .errors import HfkitError

    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise HfkitError(f"{what} '{path}' is a file, not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise HfkitError(f"{what} '{path}' cannot be created: '{probe}' is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".hfkit-write-test-"))
    except OSError as e:
        raise HfkitError(f"{what} '{path}' is not writable: {e.strerror} ('{probe}')") from None


def check_writable_file(path: str | os.PathLike, what: str) -> None:
    """The same check for a file we are about to write: its folder must be writable."""
    from .errors import HfkitError

    path = Path(path)
    if path.is_dir():
        raise HfkitError(f"{what} '{path}' is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise HfkitError(f"{what} '{path}' is not writable")
    check_writable_dir(path.absolute().parent, f"{what}: the folder")
