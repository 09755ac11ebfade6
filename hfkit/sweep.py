"""Recipes that are several runs: a `sweep:` section whose `grid` lists, per axis, named sets of
recipe keys; every combination of one choice per axis is a run of the rest of the recipe.

    sweep:
      grid:
        tokenizer: {char: {tokenizer.kind: char}, bpe: {tokenizer.kind: bpe}}
        model: {unigram: {model.architecture: ngram, model.extra.order: 1}, lstm: {model.architecture: lstm}}
      baseline: {model: unigram}   # every row is compared with this run of the same other axes

Runs go to `<training.output_dir>/<choice>-<choice>` and one after the other in this process; every
run is built and checked (recipe, output folder, model config) before the first one trains. A
finished run whose saved recipe equals its recipe now is reused, so an interrupted sweep continues
where it stopped; the comparison (`comparison.json`, `.md`, `.png`) is rewritten after every run.
Command-line overrides apply to every run (after the grid's keys).
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HfkitError

KIND = "sweep"
COLUMNS = [  # (key in a row, header, format)
    ("parameters", "parameters", "{:,}"), ("non_embedding_parameters", "N (no emb.)", "{:,}"),
    ("train_flops", "FLOPs", "{:.3g}"), ("validation_loss", "val loss", "{:.4f}"), ("validation_perplexity", "val ppl", "{:.2f}"),
    ("bits_per_char", "bits/char", "{:.3f}"), ("generation_metric", "held-out metric", "{}"),
    ("generation_before", "before", "{:.2f}"), ("generation_after", "after", "{:.2f}"),
    ("vs_baseline", "vs baseline", "{:.2f}x"),
    ("train_seconds", "train s", "{:.1f}"), ("tokens_per_second", "tokens/s", "{:,.0f}")]


@dataclass
class SweepConfig:
    """Recipe section `sweep`: the axes of runs, and the run every row is measured against."""
    grid: dict = field(default_factory=dict)  # axis -> {choice name -> {dotted recipe key: value}}
    baseline: dict = field(default_factory=dict)  # axis -> choice: the baseline of each row (same other axes)


@dataclass
class SweepRun:
    name: str
    choices: dict  # axis -> choice
    recipe: Any  # hfkit.recipe.Recipe
    reuse: bool = False  # finished earlier with this very recipe


def is_sweep(recipe) -> bool:
    """A recipe file (name or path) with a `sweep:` section."""
    from .recipe import Recipe, _read_tree, resolve_recipe_path

    if isinstance(recipe, Recipe):
        return False
    return "sweep" in _read_tree(resolve_recipe_path(recipe), set())


def load_sweep(path, overrides: list[str] | dict | None = None) -> tuple[Path, SweepConfig, list[SweepRun]]:
    """(sweep folder, its section, its runs with their recipes built and checked)."""
    from .recipe import _read_tree, _set_dotted, build_recipe, flat_keys, parse_overrides, resolve_recipe_path
    from .schema import build_dataclass

    tree = _read_tree(resolve_recipe_path(path), set())
    given = parse_overrides(overrides)
    for key, value in given.items():  # `sweep.grid.model.lstm.training.max_steps=...` edits the grid
        if key.startswith("sweep."):
            _set_dotted(tree, key, value)
    cfg = build_dataclass(SweepConfig, tree.pop("sweep"), "sweep")
    grid = _check_grid(cfg)
    out_dir = tree.get("training", {}).get("output_dir")
    for key, value in given.items():
        if key in ("output_dir", "training.output_dir"):
            out_dir = value
    if not out_dir:
        raise HfkitError("recipe key 'training.output_dir' is needed: the sweep's runs go into folders under it")
    out = Path(str(out_dir))
    runs = []
    for combo in itertools.product(*[list(choices.items()) for choices in grid.values()]):
        choices = {axis: name for axis, (name, _) in zip(grid, combo)}
        name = "-".join(choices.values())
        if any(r.name == name for r in runs):
            raise HfkitError(f"recipe key 'sweep.grid': two runs would both be named '{name}' (choice names joined "
                             f"by '-'): rename a choice")
        run_tree = copy.deepcopy(tree)
        for axis, (choice, entry) in zip(grid, combo):
            for key, value in flat_keys(entry).items():
                if key in ("output_dir", "training.output_dir"):
                    raise HfkitError(f"recipe key 'sweep.grid.{axis}.{choice}.{key}': a run's folder is "
                                     f"<training.output_dir>/{name}, set by the sweep")
                _set_dotted(run_tree, key, value)
        for key, value in given.items():
            if not key.startswith("sweep."):
                _set_dotted(run_tree, key, value)
        _set_dotted(run_tree, "training.output_dir", str(out / name))
        try:
            recipe = build_recipe(run_tree)
        except HfkitError as e:
            raise HfkitError(f"sweep run '{name}': {e}") from None
        runs.append(SweepRun(name, choices, recipe))
    return out, cfg, runs


def _check_grid(cfg: SweepConfig) -> dict:
    if not cfg.grid or not isinstance(cfg.grid, dict):
        raise HfkitError("recipe key 'sweep.grid' must map each axis to its named choices")
    for axis, choices in cfg.grid.items():
        if not isinstance(choices, dict) or not choices:
            raise HfkitError(f"recipe key 'sweep.grid.{axis}' must map choice names to recipe keys")
        for choice, entry in choices.items():
            if not isinstance(entry, dict):
                raise HfkitError(f"recipe key 'sweep.grid.{axis}.{choice}' must be a mapping of recipe keys, "
                                 f"got {entry!r}")
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(choice)):
                raise HfkitError(f"recipe key 'sweep.grid.{axis}.{choice}': a choice names a folder: use letters, "
                                 f"digits, '_', '.' and '-'")
    for axis, choice in cfg.baseline.items():
        if axis not in cfg.grid or choice not in cfg.grid[axis]:
            raise HfkitError(f"recipe key 'sweep.baseline.{axis}'={choice!r} is not a choice of sweep.grid"
                             f" (axes: {', '.join(cfg.grid)})")
    return cfg.grid


def train(recipe, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """`hfkit.train`: a recipe of one run (hfkit.run.train: its metrics), or a sweep of runs (each run
    trained in turn: their comparison)."""
    from .run import train as train_one

    if is_sweep(recipe):  # (a Recipe object is one run)
        return train_sweep(recipe, overrides, quiet)
    return train_one(recipe, overrides, quiet)


def train_sweep(path, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """Run every run of a sweep recipe that has not finished yet; returns (and writes) the comparison."""
    from . import outputs
    from .version import __version__
    from .job import output_plan, preflight
    from .run import train
    from .tasks import get_task

    out, cfg, runs = load_sweep(path, overrides)
    outputs.plan_output(out, KIND, "recipe key 'training.output_dir'", resume=True)
    for run in runs:  # everything checked before the first run trains
        run.reuse = _finished_with(run)
        if not run.reuse:
            try:
                _refuse_changed(run)
                output_plan(run.recipe)
                preflight(run.recipe, get_task(run.recipe.task))
            except HfkitError as e:
                raise HfkitError(f"sweep run '{run.name}': {e}") from None
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = outputs.FolderLock(out, "recipe key 'training.output_dir'")
    try:
        outputs.write_marker(out, KIND, state="running", recipe=str(path), hfkit=__version__)
        earlier = _earlier_rows(out, runs)  # runs of another grid in this folder: kept in the table
        results = {}
        for i, run in enumerate(runs):
            if run.reuse:
                results[run.name] = json.loads((out / run.name / "metrics.json").read_text(encoding="utf-8"))
            else:
                if not quiet:
                    print(f"\n=== sweep run {i + 1}/{len(runs)}: {run.name} ===")
                results[run.name] = train(run.recipe, quiet=quiet)
            report = comparison(runs, results, cfg.baseline)
            report["runs"] = earlier + report["runs"]
            write_comparison(report, out)
        own = (outputs.read_marker(out) or {}).get("files", [])
        outputs.write_marker(out, KIND, state="finished", files=sorted({*own, "comparison.json", "comparison.md",
                                                                       "comparison.png", *(r.name for r in runs)}))
    except BaseException:
        if not existed and set(os.listdir(out)) <= {outputs.MARKER, outputs.LOCK}:
            lock.release()
            shutil.rmtree(out)  # the first run failed: no sweep folder with nothing in it is left behind
        raise
    finally:
        lock.release()
    if not quiet:
        print_comparison(report)
        print(f"\ncomparison: {out / 'comparison.md'} (and .json, .png)")
    return report


def _earlier_rows(out: Path, runs: list[SweepRun]) -> list[dict]:
    """Rows of the folder's table from an earlier sweep with another grid (`hfkit scaling sweep` adds
    sizes and budgets to one table), for runs still there and not in this grid."""
    try:
        rows = json.loads((out / "comparison.json").read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError):
        return []
    names = {r.name for r in runs}
    return [r for r in rows if isinstance(r, dict) and r.get("run") not in names and (out / str(r.get("run"))).is_dir()]


def _finished_with(run: SweepRun) -> bool:
    """The run's folder holds a finished run of this very recipe (its metrics can be reused)."""
    from .outputs import read_marker

    folder = Path(run.recipe.training["output_dir"])
    marker = read_marker(folder) or {}
    saved = folder / "recipe.yaml"
    return (marker.get("kind") == "train" and marker.get("state") == "finished" and (folder / "metrics.json").is_file()
            and saved.is_file() and saved.read_text(encoding="utf-8") == run.recipe.to_yaml()
            and not run.recipe.training.get("overwrite_output_dir"))


def _refuse_changed(run: SweepRun) -> None:
    """A finished run of another recipe in the run's folder: say which key differs (replacing it is the
    user's call: overwrite_output_dir=true)."""
    from .recipe import flat_keys, load_run_recipe

    folder = Path(run.recipe.training["output_dir"])
    if run.recipe.training.get("overwrite_output_dir") or run.recipe.training.get("resume_from_checkpoint"):
        return
    try:
        saved = load_run_recipe(folder)
    except HfkitError:
        return  # not a readable run recipe: output_plan says what the folder is
    if saved is None:
        return
    old, new = flat_keys(saved.to_dict()), flat_keys(run.recipe.to_dict())
    diff = next((k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)), None)
    if diff is not None:
        raise HfkitError(f"'{folder}' holds a run of another recipe ({diff}: {old.get(diff)!r} there, "
                         f"{new.get(diff)!r} now): replace it with overwrite_output_dir=true, or choose another "
                         f"output_dir")


GENERATION_METRICS = ("rougeL", "bleu", "chrf", "exact_match", "accuracy", "token_f1", "ter")  # the one a row shows


def row(metrics: dict) -> dict:
    """One run's figures: size, validation perplexity and bits per character, the held-out generation score
    before and after training (tasks that generate), time and throughput."""
    after, train = metrics.get("eval_after", {}), metrics.get("train", {})
    gen_before, gen_after = metrics.get("generation_before") or {}, metrics.get("generation_after") or {}
    metric = next((m for m in GENERATION_METRICS if m in gen_after), None)
    return {"generation_metric": metric, "generation_before": gen_before.get(metric) if metric else None,
            "generation_after": gen_after.get(metric) if metric else None,"parameters": metrics.get("parameters"), "non_embedding_parameters": metrics.get("non_embedding_parameters"),
            "train_flops": train.get("train_flops"), "validation_loss": after.get("eval_loss"),
            "validation_perplexity": after.get("eval_perplexity"), "bits_per_char": after.get("eval_bits_per_char"),
            "train_seconds": train.get("train_runtime"), "tokens_per_second": train.get("train_tokens_per_second"),
            "train_tokens": train.get("train_tokens")}


def comparison(runs: list[SweepRun], results: dict, baseline: dict) -> dict:
    """Rows of the runs done so far; `vs_baseline`: the baseline's perplexity / this run's (> 1: better)."""
    from .version import __version__

    rows = []
    for run in runs:
        if run.name not in results:
            continue
        r = {"run": run.name, **run.choices, **row(results[run.name])}
        base = "-".join(baseline.get(a, c) for a, c in run.choices.items()) if baseline else None
        if base in results and r["validation_perplexity"]:
            b = row(results[base])["validation_perplexity"]
            r["baseline"] = base
            r["vs_baseline"] = b / r["validation_perplexity"] if b else None
            r["beats_baseline"] = bool(b and r["validation_perplexity"] < b) if base != run.name else None
        rows.append(r)
    return {"hfkit": __version__, "runs": rows, "axes": list(runs[0].choices) if runs else [],
            "baseline": baseline}


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells: the axes, then the columns any run has a value for."""
    axes = report["axes"]
    cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in report["runs"])]
    cells = [[*(str(r.get(a, "-")) for a in axes), *(_fmt(r.get(k), f) for k, _, f in cols)] for r in report["runs"]]
    return [*axes, *(h for _, h, _ in cols)], cells


def markdown(report: dict) -> str:
    headers, cells = _table(report)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if report["baseline"]:
        which = ", ".join(f"{a}={c}" for a, c in report["baseline"].items())
        lines.append(f"\nvs baseline: the perplexity of the run with {which} (same other axes) / this run's; "
                     f"above 1 beats it.")
    return "\n".join(lines) + "\n"


def write_comparison(report: dict, out: Path) -> None:
    from .io import atomic_write_text, write_json

    write_json(out / "comparison.json", report)
    atomic_write_text(out / "comparison.md", markdown(report))
    plot_comparison(report, out / "comparison.png")


def plot_comparison(report: dict, path: Path) -> None:
    """Bits per character (or validation perplexity) of every run, one bar group per first-axis choice."""
    from .display import save_figure

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["runs"] if r.get("validation_perplexity")]
    if not rows:
        return
    key, label = (("bits_per_char", "validation bits per character") if all(r.get("bits_per_char") for r in rows)
                  else ("validation_perplexity", "validation perplexity"))
    axes = report["axes"]
    groups = list(dict.fromkeys(r.get(axes[0]) for r in rows)) if len(axes) > 1 else [None]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4), dpi=100)
    y, ticks, labels = 0, [], []
    for g, colour in zip(groups, itertools.cycle(["C0", "C1", "C2", "C3"])):
        members = [r for r in rows if g is None or r.get(axes[0]) == g]
        base = next((r for r in rows if r["run"] == members[0].get("baseline")), None)
        if base is not None:  # the floor: a bar beyond this line is worse than the baseline
            ax.vlines(base[key], y - 0.5, y + len(members) - 0.5, colors="k", linestyles="dashed", linewidth=1,
                      label="baseline" if g == groups[0] else None)
        for r in members:
            ax.barh(y, r[key], color=colour, label=g if r is members[0] and g else None)
            ax.text(r[key], y, f" {r[key]:.3g}", va="center", fontsize=8)
            ticks.append(y)
            labels.append("-".join(str(r.get(a, "-")) for a in axes[1:]) if g is not None else r["run"])
            y += 1
        y += 0.6
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(label + " (lower is better)")
    if groups != [None] or report["baseline"]:
        ax.legend(title=axes[0] if groups != [None] else None, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def print_comparison(report: dict) -> None:
    from .display import print_grid

    headers, cells = _table(report)
    print_grid("hfkit sweep", headers, cells)
