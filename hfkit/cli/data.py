"""`hfkit data report` (a recipe's data, prepared and reported without training) and `hfkit data gettext`."""
from __future__ import annotations

import json

from .common import add_json, add_overwrite, emit, subcommands, number


def register(sub) -> None:
    data = subcommands(sub.add_parser("data", help="data tools"), "action")
    d = data.add_parser("report", help="build a recipe's dataset and report it (no model, no training)")
    d.add_argument("recipe")
    d.add_argument("overrides", nargs="*")
    add_json(d)
    d.set_defaults(handler=run_report)
    gt = data.add_parser("gettext", help="English->LANG pairs from the machine's gettext catalogs, as JSONL")
    gt.add_argument("--lang", required=True, help="target language, e.g. de, fr")
    gt.add_argument("--locale-dir", default="/usr/share/locale")
    gt.add_argument("--max-chars", type=number(int, min=1), default=None, help="drop pairs longer than this")
    gt.add_argument("--output", required=True, help="JSONL file to write (source, target, catalog)")
    add_overwrite(gt, "the --output file")
    add_json(gt)
    gt.set_defaults(handler=run_gettext)


def run_report(args) -> int:
    from ..display import print_table
    from ..recipe import load_recipe
    from ..job import prepare_data

    recipe = load_recipe(args.recipe, args.overrides)
    prepared = prepare_data(recipe)[1]
    stats = prepared.stats
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
        return 0
    rows = [(label, stats[k]) for k, label in (("documents_loaded", "documents loaded"),
                                               ("removed_by_length", "removed by length"),
                                               ("removed_duplicates", "removed duplicates"
                                                + (f" ({stats['dedup']})" if stats.get("dedup") else "")))
            if k in stats]
    for k, m in stats.get("mixture", {}).items():
        rows.append((f"{k}", f"{m['tokens']:,} tokens, drawn {m['drawn_tokens']:,} "
                             f"= {m['effective_epochs']:.2f} epochs, {m['share']:.1%} of mixture"))
    rows += prepared.overview
    print_table(f"hfkit data ({recipe.task})", rows)
    return 0


def run_gettext(args) -> int:
    from ..data.gettext_pairs import gettext_pairs
    from ..io import write_jsonl
    from ..outputs import check_output_file

    check_output_file(args.output, "--output", {"locale folder": args.locale_dir}, args.overwrite)
    ds, report = gettext_pairs(args.lang, args.locale_dir, max_chars=args.max_chars)
    write_jsonl(args.output, ds)
    report = {**report, "catalogs_skipped": len(report["catalogs_skipped"]), "output": args.output}
    emit(report, args.json, f"gettext en->{args.lang}")
    return 0
