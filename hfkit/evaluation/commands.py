"""`hfkit eval bleu|chrf|ter|rouge|match|icl|compare`: scoring files or a model's generations,
in-context evaluation, and side-by-side comparison of runs. Every eval writes a JSON report
(metrics, settings, model and data fingerprints, sacrebleu signatures) and prints a table."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import HfkitError


# --- fingerprints ---------------------------------------------------------------------------------

def _sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _identifies_model(f: Path) -> bool:
    """Weights (not the pickled training_args.bin), config and tokenizer: what makes the model what it is."""
    if f.name in ("config.json", "adapter_config.json", "tokenizer.json"):
        return True
    return f.suffix in (".safetensors", ".bin") and f.name != "training_args.bin"


def model_fingerprint(path: str) -> dict:
    """SHA-256 over a model folder's config and weights (safetensors/bin), or the Hub id as given."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and _identifies_model(f)]
        return {"path": str(p.resolve()), "sha256": _sha256_files(files), "files": sorted(f.name for f in files)}
    return {"hub_id": path}


def data_fingerprint(spec: str, records=None) -> dict:
    """SHA-256 of the data file(s) as bytes, or of the loaded records for built-in/Hub sources."""
    p = Path(spec)
    if p.is_file():
        return {"path": str(p.resolve()), "sha256": _sha256_files([p])}
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
        return {"path": str(p.resolve()), "sha256": _sha256_files(files), "files": len(files)}
    h = hashlib.sha256()
    for r in records or []:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode())
    return {"source": spec, "sha256": h.hexdigest()}


# --- scoring files --------------------------------------------------------------------------------

def read_lines(path: str, what: str) -> list[str]:
    """One segment per line, trailing whitespace stripped: how the sacrebleu CLI reads its files."""
    p = Path(path)
    if not p.is_file():
        raise HfkitError(f"{what}: no such file: {path}")
    try:
        with open(p, encoding="utf-8") as f:
            return [line.rstrip() for line in f]
    except UnicodeDecodeError as e:
        raise HfkitError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_aligned(predictions: str, references: list[str]) -> tuple[list[str], list[list[str]]]:
    """Predictions and reference streams read from files, checked to align line by line."""
    preds = read_lines(predictions, "--predictions")
    streams = []
    for r in references:
        refs = read_lines(r, "--references")
        if not refs or not any(x.strip() for x in refs):
            raise HfkitError(f"{r}: the references are empty")
        if len(refs) != len(preds):
            raise HfkitError(f"{predictions} has {len(preds)} lines but {r} has {len(refs)}: "
                             f"predictions and references must align line by line")
        streams.append(refs)
    return preds, streams


def score_files(predictions: str, references: list[str], metrics: list[str], per_class: bool = False,
                **options) -> dict:
    """Corpus metrics of a predictions file against reference files (or a per-class report)."""
    from .metrics import classification_report, corpus_metrics

    preds, streams = read_aligned(predictions, references)
    if per_class:
        if len(streams) != 1:
            raise HfkitError("--per-class takes one --references file")
        scores = classification_report(preds, streams[0])
    else:
        scores = corpus_metrics(preds, streams, metrics, **options)
    scores["n"] = len(preds)
    return scores


# --- scoring a model's generations ----------------------------------------------------------------

@dataclass
class GenerationInputs:
    prompts: list[str]
    references: list[str]
    extractors: list  # per prompt: the Template whose answer part to extract, or None (strip only)
    gen_kwargs: dict
    records: list[dict]


def generation_inputs(model_path: str, tokenizer, data: str, template: str | None, target_field: str,
                      input_field: str | None, limit: int | None) -> GenerationInputs:
    """Prompts and references for generation-based evaluation.

    With `template` (Jinja over a record's fields) or `input_field` (the record's text as it is, e.g.
    for a seq2seq model) the reference is `target_field`. Without them the model folder's
    `recipe.yaml` (an hfkit sft run) gives the template, fields and chat format it was trained with."""
    from ..data.sources import load_records, source_from_spec, source_where

    src = source_from_spec(data)
    ds = load_records(src)
    where = source_where(src)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise HfkitError(f"--data {data}: no records")
    if template or input_field:
        from .icl import render

        if target_field not in ds.column_names:
            raise HfkitError(f"{where}: target field '{target_field}' not found (columns: {', '.join(ds.column_names)})")
        if input_field and input_field not in ds.column_names:
            raise HfkitError(f"{where}: input field '{input_field}' not found (columns: {', '.join(ds.column_names)})")
        rows = [ds[i] for i in range(n)]
        prompts = [render(template, r, f"{where} record {i + 1}") if template else str(r[input_field])
                   for i, r in enumerate(rows)]
        return GenerationInputs(prompts, [str(r[target_field]) for r in rows], [None] * n, {}, rows)
    saved = Path(model_path) / "recipe.yaml"
    if not saved.is_file():
        raise HfkitError(f"give --template (with --target-field) or --input-field: '{model_path}' has no recipe.yaml "
                         f"of an hfkit sft run to take the prompt format from")
    from ..objectives import sft
    from ..recipe import load_recipe

    recipe = load_recipe(saved)
    if recipe.task != "sft":
        raise HfkitError(f"'{model_path}' was trained by a {recipe.task} recipe; give --template and --target-field")
    cfg = recipe.sft
    templates = sft.recipe_templates(cfg)
    records = sft.map_fields(ds.select(range(n)), cfg, templates, where)
    records = records.add_column("_index", list(range(len(records))))
    chat = cfg.format == "chat"
    if chat:
        sft.setup_chat_template(tokenizer, None, cfg)  # the run saved its template (and its tokens) with the tokenizer
    # the same prompts and template choice as the run's own `eval:` block
    prompts, refs, extractors = sft.eval_prompts(records, tokenizer, cfg, templates, recipe.training.get("seed", 42), None)
    gen_kw = {"add_special_tokens": not chat, "stop_token_ids": sft.chat_stop_ids(tokenizer) if chat else None}
    return GenerationInputs(prompts, refs, extractors, gen_kw, [records[i] for i in range(len(records))])


def evaluate_generation(model_path: str, data: str, metrics: list[str], template: str | None = None,
                        target_field: str = "target", input_field: str | None = None, limit: int | None = None,
                        batch_size: int = 16, max_new_tokens: int = 64, num_beams: int = 1,
                        **options) -> tuple[dict, list[dict], dict]:
    """Generate for every record of `data` in batches, extract the answers, score them; returns
    (scores, samples, data fingerprint)."""
    from ..data.tokenizer import load_tokenizer
    from ..models import load_model
    from .generation import generate
    from .metrics import corpus_metrics

    tokenizer = load_tokenizer(model_path)
    inputs = generation_inputs(model_path, tokenizer, data, template, target_field, input_field, limit)
    model = load_model(model_path)
    outs = generate(model, tokenizer, inputs.prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    num_beams=num_beams, **inputs.gen_kwargs)
    preds = [t.extract_answer(o[0]) if t else o[0].strip() for o, t in zip(outs, inputs.extractors)]
    scores = corpus_metrics(preds, inputs.references, metrics, **options)
    scores["n"] = len(inputs.references)
    samples = [{"prompt": p, "reference": r, "prediction": y} for p, r, y in zip(inputs.prompts, inputs.references, preds)]
    return scores, samples, data_fingerprint(data, inputs.records)


# --- reports --------------------------------------------------------------------------------------

def report(kind: str, metrics: dict, settings: dict, model: str | None = None, data: dict | None = None) -> dict:
    import importlib.metadata as md

    out = {"kind": kind, "metrics": {k: v for k, v in metrics.items() if not k.endswith("_signature")},
           "signatures": {k[: -len("_signature")]: v for k, v in metrics.items() if k.endswith("_signature")},
           "settings": settings, "versions": {}}
    for pkg in ("hfkit", "transformers", "torch", "sacrebleu", "rouge-score"):
        try:
            out["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if model:
        out["model"] = model_fingerprint(model)
    if data:
        out["data"] = data
    if not out["signatures"]:
        del out["signatures"]
    return out


def print_report(rep: dict) -> None:
    from .report import print_table

    rows = [(k, v) for k, v in rep["metrics"].items() if not isinstance(v, (dict, list))]
    rows += [(f"{k} signature", v) for k, v in rep.get("signatures", {}).items()]
    if "model" in rep:
        rows.append(("model", rep["model"].get("path") or rep["model"].get("hub_id")))
    print_table(f"hfkit eval {rep['kind']}", rows)
    per_class = rep["metrics"].get("per_class")
    if per_class:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="per class")
        for c in ("label", "precision", "recall", "f1", "support"):
            t.add_column(c, justify="right" if c != "label" else "left")
        for label, m in per_class.items():
            t.add_row(label, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", str(m["support"]))
        Console().print(t)


# --- compare --------------------------------------------------------------------------------------

def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = float(v)
        elif isinstance(v, dict) and k != "per_class":
            out.update(_flatten(v, f"{key}."))
    return out


_RUN_SECTIONS = ("eval_before", "eval_after", "generation_before", "generation_after", "icl_before", "icl_after")
_SKIP = ("runtime", "per_second", "model_preparation_time", "epoch")


def run_metrics(path: str) -> tuple[str, dict]:
    """(label, {metric: value}) of a training run folder (its metrics.json and eval/*.json reports)
    or of one eval report JSON."""
    p = Path(path)
    found: dict = {}
    if p.is_dir():
        if not (p / "metrics.json").is_file() and not list((p / "eval").glob("*.json")):
            raise HfkitError(f"'{path}': no metrics.json or eval/*.json reports in this folder")
        if (p / "metrics.json").is_file():
            m = _load_json(p / "metrics.json")
            for sec in _RUN_SECTIONS:
                if isinstance(m.get(sec), dict):
                    found.update(_flatten(m[sec], f"{sec}."))
            if isinstance(m.get("train"), dict) and "train_loss" in m["train"]:
                found["train_loss"] = float(m["train"]["train_loss"])
        for f in sorted((p / "eval").glob("*.json")):
            rep = _load_json(f)
            found.update(_flatten(rep.get("metrics", {}), f"{f.stem}."))
        label = p.name
    elif p.is_file():
        rep = _load_json(p)
        if "metrics" not in rep:
            raise HfkitError(f"{path}: not an hfkit eval report (no 'metrics')")
        found.update(_flatten(rep["metrics"], f"{rep.get('kind', p.stem)}."))
        label = p.stem
    else:
        raise HfkitError(f"no such run folder or report: {path}")
    return label, {k: v for k, v in found.items() if not any(s in k for s in _SKIP)}


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HfkitError(f"{path}: not valid JSON ({e})") from None


def compare(paths: list[str]) -> dict:
    """Every metric of every run, side by side: {"runs": [labels], "metrics": {name: [value|None]}}."""
    if len(paths) < 2:
        raise HfkitError("compare needs at least two runs or reports")
    labels, tables = [], []
    for path in paths:
        label, m = run_metrics(path)
        while label in labels:  # two runs with the same folder name
            label = f"{label}'"
        labels.append(label)
        tables.append(m)
    names = sorted({k for t in tables for k in t})
    if not names:
        raise HfkitError("none of the runs has numeric metrics to compare")
    return {"runs": labels, "paths": paths, "metrics": {n: [t.get(n) for t in tables] for n in names}}


def print_comparison(cmp: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="hfkit eval compare")
    t.add_column("metric")
    for r in cmp["runs"]:
        t.add_column(r, justify="right")
    for name, vals in cmp["metrics"].items():
        t.add_row(name, *("—" if v is None else f"{v:.4g}" for v in vals))
    Console().print(t)


def plot_comparison(cmp: dict, path: str | Path, max_metrics: int = 24) -> None:
    """One small bar chart per metric (scales differ between metrics), runs side by side."""
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(cmp["metrics"])[:max_metrics]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names):
        vals = cmp["metrics"][name]
        xs = range(len(vals))
        ax.bar(xs, [v if v is not None else 0 for v in vals], color=[colors[i % len(colors)] for i in xs])
        ax.set_title(name, fontsize=8)
        ax.set_xticks(list(xs), cmp["runs"], fontsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
