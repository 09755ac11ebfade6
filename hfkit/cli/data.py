"""`hfkit data report` (a recipe's data, prepared and reported without training), `hfkit data gettext`
and `hfkit data self-instruct`."""
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
    si = data.add_parser("self-instruct", help="Self-Instruct: a model writes new instruction tasks from seed tasks; "
                                               "the filtered ones are written as SFT records (resumable)")
    si.add_argument("--model", required=True, help="the generator: a run folder or a cached Hub id")
    si.add_argument("--output", required=True, help="JSONL of the kept tasks (instruction, input, output); its "
                                                    "state and report go to OUTPUT.self_instruct.json")
    si.add_argument("--seed-tasks", default=None, help="JSONL of seed tasks (default: hfkit's 24 for its built-in tasks)")
    from ..prompting.self_instruct import SelfInstructConfig

    d = SelfInstructConfig()
    for name, kind, helptext in (
            ("num_instructions", int, "stop when this many are kept"),
            ("tasks_per_prompt", int, "tasks shown in each prompt"),
            ("machine_tasks", int, "of them, drawn from the generated ones (the paper: 2 of 8)"),
            ("prompts_per_round", int, "prompts generated between two saves"),
            ("rouge_threshold", float, "drop an instruction whose ROUGE-L with one in the pool is above this"),
            ("max_new_tokens", int, "tokens generated per prompt"),
            ("temperature", float, "sampling temperature"),
            ("top_p", float, "nucleus sampling"),
            ("seed", int, "seeds the draws and the sampling"),
            ("max_rounds", int, "give up after this many rounds"),
            ("batch_size", int, "prompts generated at once")):
        si.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(d, name),
                        help=f"{helptext} (default: {getattr(d, name)})")
    add_json(si)
    si.set_defaults(handler=run_self_instruct)


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


def run_self_instruct(args) -> int:
    from ..data.tokenizer import load_tokenizer
    from ..errors import HfkitError
    from ..models import load_model
    from ..outputs import check_output_file
    from ..prompting.self_instruct import SelfInstructConfig, load_seed_tasks, self_instruct, state_path

    cfg = SelfInstructConfig(**{k: getattr(args, k) for k in SelfInstructConfig.__dataclass_fields__})
    for name, what in cfg.problems()[:1]:
        raise HfkitError(f"--{name.replace('_', '-')} {what}")
    seeds = load_seed_tasks(args.seed_tasks)
    if not state_path(args.output).is_file():  # a new run (one with a state file continues, if its settings agree)
        check_output_file(args.output, "--output", {"seed tasks": args.seed_tasks, "model": args.model})
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    report = self_instruct(model, tokenizer, args.model, seeds, cfg, args.output, progress=not args.json)
    rows = {"rounds": report["rounds"], "prompts": report["prompts"], "generated": report["generated"],
            "kept": report["kept"], **{f"dropped: {k}": v for k, v in report["dropped"].items()},
            "output": args.output}
    emit(rows if not args.json else {**report, "output": args.output}, args.json, "self-instruct")
    return 0
