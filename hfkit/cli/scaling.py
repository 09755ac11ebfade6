"""`hfkit scaling sweep|fit|plan`: train a grid of sizes x token budgets, fit L(N, D), plan a budget."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import HfkitError
from .common import add_json, emit, stdout_to_stderr, subcommands, number


def register(sub) -> None:
    sc = subcommands(sub.add_parser("scaling", help="scaling laws: sweep sizes x tokens, fit L(N, D), plan a budget"),
                     "action")
    sw = sc.add_parser("sweep", help="train every model size for every token budget (a sweep; resumable)")
    sw.add_argument("recipe", help="a causal-LM recipe (e.g. scaling_code)")
    sw.add_argument("overrides", nargs="*", help="dotted.key=value overrides for every run")
    sw.add_argument("--sizes", required=True, help="comma-separated HIDDENxLAYERS, e.g. 64x2,96x3,128x4")
    sw.add_argument("--tokens", required=True, help="comma-separated token budgets, e.g. 250k,500k,1M")
    add_json(sw)
    sw.set_defaults(handler=run_sweep)

    ft = sc.add_parser("fit", help="fit L(N, D) = E + A/N^alpha + B/D^beta to a sweep's runs")
    ft.add_argument("sweep", help="a sweep folder (or its comparison.json)")
    ft.add_argument("--holdout", action="append", default=[], metavar="RUN",
                    help="leave this run out of the fit and report its predicted vs measured loss (repeatable)")
    ft.add_argument("--delta", type=number(float, above=0), default=1e-3, help="Huber delta on log loss (default: 1e-3, as Hoffmann et al.)")
    add_json(ft)
    ft.set_defaults(handler=run_fit)

    pl = sc.add_parser("plan", help="compute-optimal parameters and tokens for a FLOP budget")
    pl.add_argument("--flops", required=True, type=number(float, above=0), help="training compute C (FLOPs), e.g. 5.76e23")
    pl.add_argument("--fit", default=None, help="a scaling_fit.json from `hfkit scaling fit` (default: a published law)")
    pl.add_argument("--law", default=None, choices=["besiroglu", "hoffmann"],
                    help="published law (default besiroglu: Chinchilla's data refitted, ~20 tokens per parameter)")
    add_json(pl)
    pl.set_defaults(handler=run_plan)


def run_sweep(args) -> int:
    from ..recipe import load_recipe
    from ..scaling import sweep_overrides
    from ..sweep import is_sweep, train_sweep

    if is_sweep(args.recipe):
        raise HfkitError(f"{args.recipe} is already a sweep: give `hfkit scaling sweep` a single-run recipe")
    base = load_recipe(args.recipe, args.overrides)
    from ..job import training_settings

    t = training_settings(base)
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * base.data.block_size
    grid = sweep_overrides([s for s in args.sizes.split(",") if s], [s for s in args.tokens.split(",") if s], per_step)
    with stdout_to_stderr() if args.json else contextlib.nullcontext():
        report = train_sweep(args.recipe, [*grid, *args.overrides], quiet=args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def run_fit(args) -> int:
    from ..io import write_json
    from ..outputs import check_output_file
    from ..scaling import fit_report, plot_fit

    folder = Path(args.sweep) if Path(args.sweep).is_dir() else Path(args.sweep).parent
    out, png = folder / "scaling_fit.json", folder / "scaling_fit.png"
    for f in (out, png):
        check_output_file(f, "the fit's output")
    report = fit_report(args.sweep, args.delta, args.holdout, progress=True)
    write_json(out, report)
    plot_fit(report, png)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    law = report["law"]
    rows = {"law": f"L = {law['E']:.3f} + {law['A']:.4g}/N^{law['alpha']:.3f} + {law['B']:.4g}/D^{law['beta']:.3f}",
            "points fitted": report["fit"]["points"], "mean |error| (fitted)": f"{report['fit']['mean_relative_error']:.2%}"}
    for p in report["points"]:
        if p["held_out"]:
            rows[f"held out {p['run']}"] = (f"predicted {p['predicted']:.4f}, measured {p['loss']:.4f} "
                                            f"({p['relative_error']:+.2%})")
    rows["written"] = f"{out}, {png}"
    emit(rows, False, "hfkit scaling fit")
    return 0


def run_plan(args) -> int:
    from ..scaling import DEFAULT_LAW, LAWS, Law, plan

    if args.fit and args.law:
        raise HfkitError("give --fit FILE or --law NAME, not both")
    if args.fit:
        import math

        try:
            law = Law(**json.loads(Path(args.fit).read_text(encoding="utf-8"))["law"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HfkitError(f"--fit {args.fit}: not a scaling_fit.json written by `hfkit scaling fit` ({e})") from None
        for k, v in vars(law).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise HfkitError(f"--fit {args.fit}: law.{k} is {v!r}, not a finite number >= 0")
        source = args.fit
    else:
        law, source = LAWS[args.law or DEFAULT_LAW], args.law or DEFAULT_LAW
    result = {**plan(args.flops, law), "law": source}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    emit({"compute (FLOPs)": f"{result['flops']:.3g}", "parameters N": f"{result['parameters']:.4g}",
          "tokens D": f"{result['tokens']:.4g}", "tokens per parameter": f"{result['tokens_per_parameter']:.1f}",
          "predicted loss": f"{result['loss']:.4f}", "law": source}, False, "hfkit scaling plan")
    return 0
