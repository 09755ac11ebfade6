"""Scaling laws you can fit and plan with: L(N, D) = E + A / N^alpha + B / D^beta.

- `sweep_overrides`: a grid of model sizes x token budgets as a sweep (hfkit.sweep) of one recipe;
- `fit`: Hoffmann et al.'s approach 3 — Huber loss (delta 1e-3) between the log of the predicted
  and the measured loss, minimised with L-BFGS from a grid of starting points, the best kept;
- `plan`: the compute-optimal N and D for a budget C = 6 N D, and the loss the law predicts.

Default law: Besiroglu et al. (2024, "Chinchilla Scaling: A replication attempt"), who refitted
Hoffmann et al.'s own data points: their fit gives Chinchilla's allocation (about 70B parameters and
1.4T tokens at 5.76e23 FLOPs, ~20 tokens per parameter). Hoffmann et al.'s published approach-3
constants (`hoffmann`) put about 32B parameters at that budget: Besiroglu et al. traced the
disagreement to the original fit stopping early (a loose optimiser tolerance) and to rounded
reported values, and the refit agrees with Hoffmann's approaches 1 and 2.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import HfkitError


@dataclass
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n: float, d: float) -> float:
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta


LAWS = {"besiroglu": Law(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
        "hoffmann": Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)}
DEFAULT_LAW = "besiroglu"


def plan(flops: float, law: Law) -> dict:
    """N and D minimising L(N, D) subject to 6 N D = C: N = G (C/6)^(beta/(alpha+beta)), G =
    (alpha A / (beta B))^(1/(alpha+beta)), D = C / (6 N)."""
    if not (flops > 0 and math.isfinite(flops)):
        raise HfkitError(f"--flops must be a positive, finite number, got {flops}")
    a, b = law.alpha, law.beta
    g = (a * law.A / (b * law.B)) ** (1 / (a + b))
    n = g * (flops / 6) ** (b / (a + b))
    d = flops / (6 * n)
    return {"flops": flops, "parameters": n, "tokens": d, "tokens_per_parameter": d / n, "loss": law.loss(n, d)}


# ----------------------------------------------------------------------------- fitting


def _objective(theta, log_n, log_d, log_l, delta):
    """Sum of Huber losses between log L_pred = LSE(a - alpha log N, b - beta log D, e) and log L,
    and its gradient in theta = (a, b, e, alpha, beta)."""
    import numpy as np

    a, b, e, alpha, beta = theta
    u = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    m = u.max(axis=0)
    w = np.exp(u - m)
    lse = m + np.log(w.sum(axis=0))
    s = w / w.sum(axis=0)  # d lse / d u
    r = lse - log_l
    huber = np.where(np.abs(r) <= delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))
    h = np.clip(r, -delta, delta)  # d huber / d r
    grad = np.array([(h * s[0]).sum(), (h * s[1]).sum(), (h * s[2]).sum(), (h * s[0] * -log_n).sum(),
                     (h * s[1] * -log_d).sum()])
    return huber.sum(), grad


@contextlib.contextmanager
def _interruptible():
    """SIGINT sets a flag (read with the yielded function) instead of being lost inside compiled code."""
    import signal
    import threading

    hit = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda *_: hit.append(True))
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def fit(n, d, loss, delta: float = 1e-3, progress: bool = False) -> tuple[Law, dict]:
    """Fit the law to measured (N, D, loss) points; returns it and how the fit went. `progress`: a bar
    over the starting points (stderr); Ctrl-C stops between two starts."""
    import numpy as np
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    log_n, log_d, log_l = (np.log(np.asarray(x, dtype=float)) for x in (n, d, loss))
    if len(log_n) < 5:
        raise HfkitError(f"fitting E, A, B, alpha and beta needs at least 5 runs, got {len(log_n)}")
    best = None
    # starting points: 243, a coarser grid than Hoffmann et al.'s 4,500 (on a synthetic law it finds the
    # optimum the full grid finds, in 5 s instead of 45)
    grid = list(itertools.product([0, 10, 20], [0, 10, 20], [-1, 0, 1], [0.2, 0.5, 1.0], [0.2, 0.5, 1.0]))
    with _interruptible() as stop:  # scipy's L-BFGS-B swallows Ctrl-C: checked between starts instead
        for start in tqdm(grid, desc="fit L(N, D) (L-BFGS from each start)", disable=not progress):
            if stop():
                raise KeyboardInterrupt
            res = minimize(_objective, np.array(start, dtype=float), args=(log_n, log_d, log_l, delta), jac=True,
                           method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-12, "ftol": 1e-15})
            if best is None or res.fun < best.fun:
                best = res
    a, b, e, alpha, beta = best.x
    law = Law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta))
    pred = np.array([law.loss(math.exp(x), math.exp(y)) for x, y in zip(log_n, log_d)])
    rel = np.abs(pred / np.exp(log_l) - 1)
    return law, {"objective": float(best.fun), "points": len(log_n), "mean_relative_error": float(rel.mean()),
                 "max_relative_error": float(rel.max())}


# ----------------------------------------------------------------------------- sweeps and their tables


def parse_size(spec: str) -> tuple[int, int]:
    """'128x4' -> (hidden size 128, 4 layers)."""
    try:
        hidden, layers = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise HfkitError(f"--sizes: '{spec}' is not HIDDENxLAYERS (e.g. 128x4)") from None
    if hidden < 1 or layers < 1:
        raise HfkitError(f"--sizes: '{spec}' must have positive sizes")
    return hidden, layers


def parse_tokens(spec: str) -> int:
    """'500k', '2M', '1.5e6' -> tokens."""
    s = spec.strip().lower()
    mult = {"k": 1e3, "m": 1e6, "b": 1e9}.get(s[-1:], 1)
    try:
        value = float(s[:-1] if s[-1:] in "kmb" else s) * mult
    except ValueError:
        raise HfkitError(f"--tokens: '{spec}' is not a number of tokens (e.g. 500k, 2M)") from None
    if value < 1:
        raise HfkitError(f"--tokens: '{spec}' must be at least one token")
    return int(value)


def sweep_overrides(sizes: list[str], tokens: list[str], tokens_per_step: int, head_size: int = 32) -> list[str]:
    """Recipe overrides that make a sweep over sizes (hidden x layers; heads of `head_size`) and token
    budgets (max_steps = tokens / tokens per step)."""
    out = []
    for spec in sizes:
        hidden, layers = parse_size(spec)
        heads = max(1, hidden // head_size)
        out += [f"sweep.grid.size.{spec}.model.hidden_size={hidden}", f"sweep.grid.size.{spec}.model.num_layers={layers}",
                f"sweep.grid.size.{spec}.model.num_heads={heads}"]
    for spec in tokens:
        steps = max(1, round(parse_tokens(spec) / tokens_per_step))
        out += [f"sweep.grid.tokens.{spec}.training.max_steps={steps}",
                f"sweep.grid.tokens.{spec}.training.warmup_steps={max(1, steps // 20)}"]
    return out


def points(path: str | Path) -> list[dict]:
    """(N, D, loss) of every finished run of a sweep folder (or its comparison.json): N without the
    embeddings, D the tokens trained on, the validation loss."""
    p = Path(path)
    table = p / "comparison.json" if p.is_dir() else p
    try:
        report = json.loads(table.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HfkitError(f"{table}: not a sweep's comparison table ({e})") from None
    out = []
    for r in report.get("runs", []):
        if r.get("non_embedding_parameters") and r.get("train_tokens") and r.get("validation_loss"):
            if not all(isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0
                       for k in ("non_embedding_parameters", "train_tokens", "validation_loss")):
                raise HfkitError(f"{table}: run '{r.get('run')}' has a validation loss, N or D that is not a positive "
                                 f"finite number ({r['validation_loss']}): rerun it, or remove it from the sweep")
            out.append({"run": r["run"], "N": r["non_embedding_parameters"], "D": r["train_tokens"],
                        "loss": r["validation_loss"], "flops": r.get("train_flops")})
    if not out:
        raise HfkitError(f"{table}: no finished training runs with parameters, tokens and validation loss")
    return out


def fit_report(path: str | Path, delta: float = 1e-3, holdout: list[str] | None = None, progress: bool = False) -> dict:
    from .version import __version__

    pts = points(path)
    held = [p for p in pts if p["run"] in (holdout or [])]
    missing = set(holdout or []) - {p["run"] for p in held}
    if missing:
        raise HfkitError(f"--holdout: no finished run named {', '.join(sorted(missing))} in {path}")
    used = [p for p in pts if p not in held]
    law, info = fit([p["N"] for p in used], [p["D"] for p in used], [p["loss"] for p in used], delta,
                    progress)
    for p in pts:
        p["predicted"] = law.loss(p["N"], p["D"])
        p["relative_error"] = p["predicted"] / p["loss"] - 1
        p["held_out"] = p in held
    return {"hfkit": __version__, "law": asdict(law), "fit": info, "points": pts}


def plot_fit(report: dict, path: Path) -> None:
    """Measured loss vs training FLOPs, one colour per model size, with the fitted law's frontier
    (the loss of the compute-optimal N at each budget)."""
    from .display import save_figure

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    law = Law(**report["law"])
    pts = [p for p in report["points"] if p.get("flops")]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    sizes = sorted({p["N"] for p in pts})
    for i, n in enumerate(sizes):
        mine = sorted((p for p in pts if p["N"] == n), key=lambda p: p["flops"])
        ax.plot([p["flops"] for p in mine], [p["loss"] for p in mine], "o-", color=f"C{i % 10}", label=f"N={n:,}")
        for p in mine:
            if p["held_out"]:
                ax.plot(p["flops"], p["loss"], "s", mfc="none", mec="k", ms=10)
                ax.plot(p["flops"], p["predicted"], "x", color="k", ms=8, label="held out: predicted")
    if pts:
        c = np.logspace(math.log10(min(p["flops"] for p in pts)) - 0.3, math.log10(max(p["flops"] for p in pts)) + 0.5, 50)
        ax.plot(c, [plan(x, law)["loss"] for x in c], "k--", lw=1, label="fitted frontier")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
