"""Small file helpers: writes are atomic (temp file, then rename) so nothing is left half-written."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_modes(folder: str | os.PathLike) -> None:
    """Files of `folder` that a library wrote through a temporary file (mode 0600) get the mode the
    user's umask gives a new file."""
    mode = 0o666 & ~_umask()
    for p in Path(folder).iterdir():
        if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
            os.chmod(p, mode)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to `path` through a temporary file in the same folder, then rename it into place.
    The file gets the permissions the user's umask gives a new file (mkstemp would leave 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
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


def read_jsonl_objects(path: str | os.PathLike, what: str, text: bool = False) -> list[tuple[int, dict | str]]:
    """(line number, object) of every non-blank line of a JSONL file; one line naming the file and
    line for a missing file, text that is not UTF-8, a line that does not parse or is not an object
    (or, with `text`, a string)."""
    from .errors import HfkitError

    p = Path(path)
    if not p.is_file():
        raise HfkitError(f"{what}: no such file: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise HfkitError(f"{p}: not UTF-8 text") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise HfkitError(f"{p} line {n}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, (dict, str) if text else dict):
            raise HfkitError(f"{p} line {n}: expected a JSON object{' or string' if text else ''}")
        out.append((n, obj))
    return out


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


def is_main_rank() -> bool:
    """True except on the non-zero ranks of a launched multi-process run (which leave printing and
    the output folder to rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0
