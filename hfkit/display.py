"""Run reports: a readable table for the terminal and the loss curve as a PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table on the terminal (rich when it is there)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in rows:
        table.add_row(str(k), _fmt(v))
    Console(stderr=False).print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def plot_loss(log_history: list[dict], path: str | os.PathLike, eval_before: dict | None = None) -> None:
    """Training and validation loss against the step, written atomically to `path`.

    `eval_before`: the evaluation run before training (Trainer's history starts afresh at train())."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    val = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if eval_before and "eval_loss" in eval_before and not any(s == 0 for s, _ in val):
        val.insert(0, (0, eval_before["eval_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
