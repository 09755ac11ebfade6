"""Checkpoints that cannot mislead: each one records, when saved, the size of every file it holds
and a signature of the model it belongs to (`hfkit_checkpoint.json`). Resuming picks only a
checkpoint whose files are whole and readable and whose model is this run's model."""
from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

from ..errors import HfkitError

MANIFEST = "hfkit_checkpoint.json"


def model_signature(model) -> str:
    """SHA-256 over the parameter names and shapes: the same architecture and size, or not."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(p.shape)};".encode())
    return h.hexdigest()


def write_manifest(folder: Path, model) -> None:
    """Record every file's size and the model's signature (called once the checkpoint is complete)."""
    from ..io import write_json

    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    write_json(folder / MANIFEST, {"files": files, "model": model_signature(model)})


def _unreadable(path: Path) -> str | None:
    """Why a weights/state file cannot be read, from its structure (cheap: headers and directories)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                f.keys()
        elif path.suffix in (".pt", ".bin", ".pth"):
            with zipfile.ZipFile(path) as z:  # torch.save's format: a zip whose directory sits at the end
                z.namelist()
    except Exception as e:
        return f"{path.name} cannot be read ({' '.join(str(e).split())[:80]})"
    return None


def checkpoint_problem(folder: Path, signature: str | None = None) -> str | None:
    """Why `folder` is not a checkpoint to resume this run from, or None when it is."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such folder"
    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable (the save did not finish)"
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
        except ValueError:
            return f"{MANIFEST} is unreadable"
        for name, size in recorded.get("files", {}).items():
            p = folder / name
            if not p.is_file():
                return f"{name} is missing"
            if p.stat().st_size != size:
                return f"{name} is {p.stat().st_size:,} bytes, {size:,} when saved (cut short or changed)"
        if signature is not None and recorded.get("model") not in (None, signature):
            return "it belongs to a different model (other parameter names or shapes)"
    for p in sorted(folder.iterdir()):
        if p.is_file() and (problem := _unreadable(p)):
            return problem
    return None


def _numbered(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        step = d.name.split("-", 1)[1]
        if d.is_dir() and step.isdigit():
            found.append((int(step), d))
    return sorted(found, reverse=True)


def latest_complete_checkpoint(output_dir: Path, signature: str | None = None, warn: bool = False) -> Path | None:
    """The newest checkpoint-N that is complete, readable and (given a signature) this model's.
    Newer ones that fail are skipped, with a warning each when `warn`."""
    for _, d in _numbered(output_dir):
        problem = checkpoint_problem(d, signature)
        if problem is None:
            return d
        if warn:
            print(f"hfkit: warning: not resuming from {d.name}: {problem}", file=sys.stderr)
    return None


def resolve_resume(value: str | None, output_dir: Path, signature: str | None) -> str | None:
    """The checkpoint a run resumes from: `auto` -> the newest good one in output_dir (None: a fresh
    start when there is none at all), a path -> that one if it is good. Errors are one line."""
    if not value:
        return None
    if value == "auto":
        found = latest_complete_checkpoint(output_dir, signature, warn=True)
        if found is None and _numbered(output_dir):
            problems = "; ".join(f"{d.name}: {checkpoint_problem(d, signature)}" for _, d in _numbered(output_dir)[:3])
            raise HfkitError(f"resume_from_checkpoint=auto: no checkpoint in '{output_dir}' can be resumed "
                             f"({problems})")
        return str(found) if found else None
    problem = checkpoint_problem(Path(value), signature)
    if problem:
        raise HfkitError(f"recipe key 'training.resume_from_checkpoint': '{value}' cannot be resumed: {problem}")
    return value


def check_resume_path(value: str | None) -> None:
    """An explicit checkpoint, checked before any data is prepared (its model is checked later)."""
    if value and value != "auto":
        problem = checkpoint_problem(Path(value))
        if problem:
            raise HfkitError(f"recipe key 'training.resume_from_checkpoint': '{value}' cannot be resumed: {problem}")


def fix_best_checkpoint_paths(folder: Path, old_root: Path) -> None:
    """After a run built in a staging folder is moved into place: point trainer_state.json's
    best_model_checkpoint at the final folder."""
    for state in folder.glob("checkpoint-*/trainer_state.json"):
        data = json.loads(state.read_text())
        best = data.get("best_model_checkpoint")
        if best and best.startswith(str(old_root)):
            data["best_model_checkpoint"] = str(folder) + best[len(str(old_root)):]
            from ..io import write_json

            write_json(state, data)
            manifest = state.parent / MANIFEST
            if manifest.is_file():  # the state file's size changed with the path
                m = json.loads(manifest.read_text())
                m["files"]["trainer_state.json"] = state.stat().st_size
                write_json(manifest, m)
