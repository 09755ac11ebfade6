"""`hfkit eval compare`: every metric of several runs or reports side by side, and a bar chart."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import HfkitError


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
# counts, not scores: listed in the table, never charted
COUNTS = {"n", "examples", "tokens", "tokens_scored", "windows", "paths", "support", "world_size", "masked_tokens"}


def is_count(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in COUNTS


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
            found.update(_flatten(rep.get("metrics", {}), f"{rep.get('name') or f.stem}."))
        label = p.name
    elif p.is_file():
        rep = _load_json(p)
        if "metrics" not in rep:
            raise HfkitError(f"{path}: not an hfkit eval report (no 'metrics')")
        # named as in a run folder's eval/, so the same evaluation lines up from either place
        found.update(_flatten(rep["metrics"], f"{rep.get('name') or rep.get('kind', p.stem)}."))
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
    cmp = side_by_side(paths)
    if not cmp["metrics"]:
        raise HfkitError("none of the runs has numeric metrics to compare")
    return cmp


def side_by_side(paths: list[str], skip_unreadable: bool = False) -> dict:
    """`compare`'s table for any number of runs (`skip_unreadable`: leave out a folder without results
    instead of refusing)."""
    labels, tables, kept = [], [], []
    for path in paths:
        try:
            label, m = run_metrics(path)
        except HfkitError:
            if skip_unreadable:
                continue
            raise
        while label in labels:  # two runs with the same folder name
            label = f"{label}'"
        labels.append(label)
        tables.append(m)
        kept.append(path)
    names = sorted({k for t in tables for k in t})
    return {"runs": labels, "paths": kept, "metrics": {n: [t.get(n) for t in tables] for n in names}}


def print_comparison(cmp: dict) -> None:
    """The table: every metric (counts too) of every run."""
    from ..display import print_grid

    print_grid("hfkit eval compare", ["metric", *cmp["runs"]],
               [[name, *("—" if v is None else f"{v:.4g}" for v in vals)] for name, vals in cmp["metrics"].items()],
               right=tuple(range(1, len(cmp["runs"]) + 1)))


def plot_comparison(cmp: dict, path: str | Path, max_metrics: int = 24) -> list[str]:
    """One small bar chart per metric (scales differ between metrics), runs side by side; counts are
    not charted. Returns the metrics charted."""
    from ..display import save_figure

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in cmp["metrics"] if not is_count(n)][:max_metrics]
    if not names:
        raise HfkitError("nothing to chart: the runs share only counts")
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
    save_figure(fig, path, dpi=110)
    return names
