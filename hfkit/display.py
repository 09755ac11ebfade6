"""Run reports: a readable table for the terminal and the loss curve as a PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def print_grid(title: str, headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> None:
    """A table with a header row. Nothing in it is ever cut: in a terminal narrower than the table,
    long cells fold onto the next line; in a pipe or a log (no terminal) the table takes the width its
    longest cells need (rich would otherwise assume 80 columns and cut names with '…')."""
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=any(headers))
    for i, h in enumerate(headers):
        table.add_column(h, overflow="fold", justify="right" if i in right else "left",
                         style="bold" if not any(headers) and i == 0 else None)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    width = None if sys.stdout.isatty() else 100_000
    Console(width=width, soft_wrap=False).print(table)


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table (label, value) on the terminal: see print_grid."""
    print_grid(title, ["", ""], [[str(k), _fmt(v)] for k, v in rows])


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Write a matplotlib figure as a PNG atomically (a hidden sibling, then renamed), signed as
    hfkit's (PNG metadata Software: hfkit, so a later run may replace it), and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, metadata={"Software": "hfkit"}, **savefig_kwargs)
    finally:
        plt.close(fig)
    os.replace(tmp, path)


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
    save_figure(fig, path)
