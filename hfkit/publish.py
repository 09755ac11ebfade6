"""Publishing a run to the Hub: what is uploaded (`upload_plan`: the run's artefacts by name, never
anything else), the model card (`model_card`, from the run's recipe, metrics and task), and `push`.
Above the tasks (a card names the task's pipeline and scores); the offline resolver it uses is
hfkit.hub."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import HfkitError
from .hub import looks_like_hub_id
from .outputs import CARD_MARK, replaceable_card

# what a run publishes, by name: never anything else in the folder (no checkpoints, no pickles, no strays)
ARTEFACTS = {
    "model": ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
              "model.safetensors.index.json"),
    "adapter": ("adapter_config.json", "adapter_model.safetensors"),
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                  "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "tokenizer.model", "added_tokens.json"),
    "run": ("recipe.yaml", "metrics.json", "log.jsonl", "loss.png", "eval/*.json"),
}


@dataclass
class Upload:
    path_in_repo: str
    source: Path | None = None  # a file of the run folder ...
    data: bytes | None = None  # ... or content made for the upload (the card, a rewritten adapter config)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.source.stat().st_size


def _run_files(run: Path) -> tuple[list[Path], list[str]]:
    """The run's artefacts by the names above, and what was left out (symlinks that leave the folder)."""
    import fnmatch

    root = run.resolve()
    chosen, skipped = [], []
    for f in sorted(p for p in run.rglob("*") if p.is_file() or p.is_symlink()):
        rel = f.relative_to(run).as_posix()
        if not any(fnmatch.fnmatch(rel, pat) for pats in ARTEFACTS.values() for pat in pats):
            continue
        target = f.resolve()
        if f.is_symlink() and root not in target.parents:
            skipped.append(f"{rel} (a symlink out of the run folder, to {target})")
            continue
        if target.is_file():
            chosen.append(f)
    return chosen, skipped


def _read_json(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run_base_model(run: Path) -> dict | None:
    """What the run started from: {"name_or_path", "local"}; None when trained from scratch."""
    from .outputs import read_marker
    from .recipe import saved_recipe

    info = (read_marker(run) or {}).get("base_model")
    if info:
        return info
    recipe = saved_recipe(run)
    name = _read_json(run / "adapter_config.json").get("base_model_name_or_path") or \
        (recipe.get("model") or {}).get("name_or_path")
    if not name:
        return None
    return {"name_or_path": name, "local": Path(name).is_absolute() or Path(name).exists()}


def upload_plan(run_dir: str, repo_id: str, base_model: str | None = None) -> tuple[list[Upload], list[str]]:
    """Everything `hfkit push` uploads (the card included) and what it leaves out, with reasons.
    `base_model`: the Hub id of a base the run was trained from as a local folder; it goes into the
    card and into the uploaded adapter_config.json, so the adapter loads for anyone."""
    import json

    run = Path(run_dir)
    if not run.is_dir() or not ((run / "config.json").is_file() or (run / "adapter_config.json").is_file()):
        raise HfkitError(f"'{run_dir}' is not a finished run folder (no config.json or adapter_config.json)")
    if "/" not in repo_id or not looks_like_hub_id(repo_id):
        raise HfkitError(f"--repo-id '{repo_id}' must be owner/name")
    if base_model is not None and ("/" not in base_model or not looks_like_hub_id(base_model)):
        raise HfkitError(f"--base-model '{base_model}' must be a Hub id (owner/name)")
    files, skipped = _run_files(run)
    uploads = []
    for f in files:
        if f.suffix == ".safetensors":  # never publish a truncated or corrupt weights file
            from safetensors import safe_open

            try:
                with safe_open(str(f), "pt") as st:
                    st.keys()
            except Exception as e:
                raise HfkitError(f"{f}: not a loadable safetensors file ({str(e).splitlines()[0][:120]}); "
                                 f"nothing uploaded") from None
        rel = f.relative_to(run).as_posix()
        if rel == "adapter_config.json" and base_model:
            cfg = _read_json(f)
            cfg["base_model_name_or_path"] = base_model
            uploads.append(Upload(rel, data=(json.dumps(cfg, indent=2) + "\n").encode()))
        else:
            uploads.append(Upload(rel, source=f))
    base = run_base_model(run)
    if base and base.get("local") and not base_model:
        skipped.append(f"base model: the run started from the local folder {base['name_or_path']}; name its Hub id "
                       f"with --base-model OWNER/NAME so the card and the adapter point to it")
    uploads.append(Upload("README.md", data=model_card(run, repo_id, base_model).encode()))
    return uploads, skipped


def _hub_base(run: Path, base_model: str | None) -> str | None:
    if base_model:
        return base_model
    base = run_base_model(run)
    if base and not base.get("local") and looks_like_hub_id(base["name_or_path"]):
        return base["name_or_path"]
    return None


def _eval_results(run: Path, recipe: dict, metrics: dict, pipeline_tag: str) -> list:
    """model-index entries (huggingface_hub's EvalResult) from metrics.json and eval/*.json."""
    from huggingface_hub import EvalResult

    sources = (recipe.get("data") or {}).get("sources") or []
    hub = [s["path"] for s in sources if s.get("kind") == "hub"]
    labels = [s.get("name") or s.get("path") or s.get("kind") for s in sources]
    dtype = hub[0] if len(hub) == 1 and len(sources) == 1 else "hfkit/" + "+".join(map(str, labels or ["data"]))
    dname = ", ".join(map(str, labels)) or "training data"
    out = []

    def add(metric: str, value, name: str, dataset_type: str = dtype, dataset_name: str = dname,
            split: str = "validation"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(EvalResult(task_type=pipeline_tag, dataset_type=dataset_type, dataset_name=dataset_name,
                                  dataset_split=split, metric_type=metric, metric_value=round(float(value), 4),
                                  metric_name=name))

    after = metrics.get("eval_after") or {}
    add("perplexity", after.get("eval_perplexity"), "validation perplexity")
    add("loss", after.get("eval_loss"), "validation loss")
    for k, v in (metrics.get("generation_after") or {}).items():
        if k not in ("n", "examples"):
            add(k, v, f"held-out {k}")
    for task_name, scores in (metrics.get("icl_after") or {}).items():
        for k, v in scores.items():
            if k not in ("n", "paths"):
                add(k, v, f"{task_name} {k}", f"hfkit/{task_name}", task_name, "test")
    for f in sorted((run / "eval").glob("*.json")):
        rep = _read_json(f)
        data = rep.get("data") or {}
        first = next(iter(data.values()), {}) if data else {}
        src = (first.get("source") or Path(first.get("path", f.stem)).stem) if isinstance(first, dict) else f.stem
        for k, v in (rep.get("metrics") or {}).items():
            if k not in ("n", "tokens_scored", "examples", "paths", "per_class"):
                add(k, v, f"{rep.get('name', f.stem)} {k}", f"hfkit/{src}", str(src), "test")
    return out


def _loading_snippet(spec, adapter: bool, repo_id: str, base: str | None) -> str:
    """Python that loads the pushed model (or adapter on its base) and its tokenizer, for the task."""
    tok = f"from transformers import AutoTokenizer\ntokenizer = AutoTokenizer.from_pretrained(\"{repo_id}\""
    if adapter:  # an adapter repository has no config.json of its own: the tokenizer takes the base's
        tok += ", config=model.config)"
    else:
        tok += ")"
    if adapter and spec.auto_class == "AutoModelForCausalLM":
        loader = ("from peft import AutoPeftModelForCausalLM\n"
                  f"model = AutoPeftModelForCausalLM.from_pretrained(\"{repo_id}\")  # loads the base too")
    elif adapter:
        loader = (f"from peft import PeftModel\nfrom transformers import {spec.auto_class}\n"
                  f"base = {spec.auto_class}.from_pretrained(\"{base or 'BASE_MODEL_ID'}\")\n"
                  f"model = PeftModel.from_pretrained(base, \"{repo_id}\")")
    elif spec.pipeline_task:
        loader = (f"from transformers import {spec.auto_class}, pipeline\n"
                  f"model = {spec.auto_class}.from_pretrained(\"{repo_id}\")\n"
                  f"pipe = pipeline(\"{spec.pipeline_task}\", model=\"{repo_id}\")")
    else:
        loader = (f"from transformers import {spec.auto_class}\n"
                  f"model = {spec.auto_class}.from_pretrained(\"{repo_id}\")")
    return loader + "\n" + tok


def _use_section(run: Path, spec, repo_id: str) -> str:
    """How to talk to it: a chat run (its tokenizer has a chat template) through `apply_chat_template`
    and, for any run that converses, `hfkit chat` / `hfkit serve` on the downloaded folder."""
    if not spec.causal:
        return ""
    template = (run / "chat_template.jinja").is_file() or "chat_template" in _read_json(run / "tokenizer_config.json")
    if not template:
        return ""
    return """
## Chat
```python
messages = [{"role": "user", "content": "Hello!"}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**inputs, max_new_tokens=64)
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```
Or, with hfkit, on the downloaded folder: `hfkit chat FOLDER`, or an OpenAI-compatible server with
`hfkit serve FOLDER` (then `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")`).
"""


def model_card(run: Path, repo_id: str, base_model: str | None = None) -> str:
    """README.md with Hub metadata (base_model, library_name, tags, datasets, pipeline_tag, model-index)
    and a body: how it was trained, how to load it (right for the task and for adapters), results."""
    from huggingface_hub import ModelCard, ModelCardData

    from .recipe import saved_recipe
    from .tasks import DEFAULT_TASK, get_task

    recipe = saved_recipe(run)
    metrics = _read_json(run / "metrics.json")
    adapter = (run / "adapter_config.json").is_file()
    method = (recipe.get("adapter") or {}).get("method", "full")
    task_name = recipe.get("task", DEFAULT_TASK)
    spec = get_task(task_name)
    base = _hub_base(run, base_model)
    datasets = [s["path"] for s in (recipe.get("data") or {}).get("sources", []) if s.get("kind") == "hub"]
    results = _eval_results(run, recipe, metrics, spec.pipeline_tag)
    data = ModelCardData(
        base_model=base, library_name="peft" if adapter else "transformers",
        tags=["hfkit", task_name, method] + (["lora"] if method == "lora" else []),
        datasets=datasets or None, pipeline_tag=spec.pipeline_tag,
        model_name=repo_id.split("/")[-1], eval_results=results or None)
    loader = _loading_snippet(spec, adapter, repo_id, base)
    table = "\n".join(f"| {r.metric_name} | {r.dataset_name} ({r.dataset_split}) | {r.metric_value:.4g} |"
                      for r in results)
    params = (metrics.get("data") or {}).get("parameters") or {}
    sources = ", ".join(str(s.get("path") or s.get("kind")) for s in (recipe.get("data") or {}).get("sources", []))
    training = recipe.get("training") or {}
    origin = f" from [`{base}`](https://huggingface.co/{base})" if base else (
        " from a local base model" if run_base_model(run) else " from scratch")
    body = f"""
{CARD_MARK}
# {repo_id.split('/')[-1]}

Trained with [hfkit](https://pypi.org/project/hfkit/) (`task: {task_name}`, `adapter.method: {method}`){origin}.

## Training
- data: {sources or 'see recipe.yaml'}
- steps: {training.get('max_steps', '?')}, learning rate {training.get('learning_rate', '?')}
- trainable parameters: {params.get('trainable', '?')} of {params.get('total', '?')}
- the full resolved recipe is `recipe.yaml` in this repository; metrics are in `metrics.json`.

## How to load
```python
{loader}
```

{_use_section(run, spec, repo_id)}
## Evaluation
| metric | data | value |
|---|---|---|
{table or '| (none recorded) | | |'}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").content


def push(run_dir: str, repo_id: str, private: bool = False, revision: str | None = None, dry_run: bool = False,
         base_model: str | None = None, endpoint: str | None = None) -> dict:
    """Upload a run (model or adapter, tokenizer, recipe, metrics, eval reports, model card) in one
    commit. `dry_run`: list what would go, with sizes, and write the card to RUN/README.md."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    uploads, skipped = upload_plan(run_dir, repo_id, base_model)
    listing = [{"path": u.path_in_repo, "bytes": u.size} for u in uploads]
    result = {"repo_id": repo_id, "revision": revision or "main", "files": listing, "left_out": skipped}
    run = Path(run_dir)
    if dry_run:
        card_path = run / "README.md"
        if card_path.exists() and not replaceable_card(card_path.read_text(encoding="utf-8", errors="replace")):
            raise HfkitError(f"{card_path} exists and was not written by hfkit: not replacing it with the card")
        from .io import atomic_write_text

        atomic_write_text(card_path, next(u.data for u in uploads if u.path_in_repo == "README.md").decode())
        return {**result, "dry_run": True, "card": str(card_path)}
    base = run_base_model(run)
    if base and base.get("local") and not base_model and (run / "adapter_config.json").is_file():
        raise HfkitError(f"this adapter's base model is the local folder {base['name_or_path']}, which nobody else "
                         f"has: name its Hub id with --base-model OWNER/NAME; nothing uploaded")
    token = get_token()
    if not token:
        raise HfkitError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`; nothing uploaded")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=u.path_in_repo,
                                  path_or_fileobj=u.data if u.data is not None else str(u.source)) for u in uploads]
        commit = api.create_commit(repo_id, operations=ops, commit_message="Upload with hfkit push",
                                   revision=revision)
    except Exception as e:  # never echo request headers (they carry the token)
        raise HfkitError(f"push to '{repo_id}' failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return {**result, "url": str(url), "commit": commit.oid}
