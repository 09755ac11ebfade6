"""`hfkit train` (one process, or several through accelerate) and `hfkit recipes` (list, cp)."""
from __future__ import annotations

import contextlib
import json
import os

from ..io import is_main_rank
from .common import add_json, stdout_to_stderr, subcommands, number


def register(sub) -> None:
    from ..training.launch import shipped_configs

    t = sub.add_parser("train", help="run a training recipe")
    t.add_argument("recipe", help="recipe YAML file or shipped recipe name (see `hfkit recipes`)")
    t.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. max_steps=100")
    add_json(t)
    t.add_argument("--num-processes", type=number(int, min=1), default=None, metavar="N",
                   help="launch N processes with accelerate (DDP over GPUs; gloo over CPU cores without GPUs)")
    t.add_argument("--accelerate-config", default=None, metavar="NAME|FILE",
                   help="accelerate config: a file, or a shipped one: " + ", ".join(shipped_configs()))
    t.add_argument("--machine-rank", type=number(int, min=0), default=None, help="this machine's rank (multi-node configs)")
    t.set_defaults(handler=run_train)

    r = sub.add_parser("recipes", help="list the shipped recipes, or copy one to edit")
    add_json(r)
    r.set_defaults(handler=run_list)
    rs = subcommands(r, "action", required=False)
    cp = rs.add_parser("cp", help="copy a shipped recipe to a file you can edit (as torchtune's `tune cp`)")
    cp.add_argument("name", help="shipped recipe name")
    cp.add_argument("dest", help="file to write (must not exist), or a folder")
    cp.set_defaults(handler=run_copy)


def run_train(args) -> int:
    from ..sweep import train  # one run, or a sweep of runs

    launched = "LOCAL_RANK" in os.environ  # already inside a process started by a launcher
    if (args.num_processes is not None or args.accelerate_config) and not launched:
        from ..recipe import load_recipe
        from ..job import output_plan
        from ..training.launch import check_launch, launch

        from ..errors import HfkitError
        from ..sweep import is_sweep

        if is_sweep(args.recipe):
            raise HfkitError(f"{args.recipe} is a sweep: its runs train one after another in this process; "
                             "--num-processes and --accelerate-config are for a single run")
        # validated once here: one clear error, not one per process
        check_launch(args)
        recipe = load_recipe(args.recipe, args.overrides)
        output_plan(recipe)  # the output folder may be written (and no run holds it)
        return launch(args)
    # with --json, stdout carries only the JSON: Trainer's log lines and bars go to stderr
    with stdout_to_stderr() if args.json else contextlib.nullcontext():
        metrics = train(args.recipe, args.overrides, quiet=args.json)
    if args.json and is_main_rank():  # once, not once per process
        print(json.dumps(metrics, indent=2, default=str))
    return 0


def run_list(args) -> int:
    from ..recipe import list_recipes

    recipes = list_recipes()
    if args.json:
        print(json.dumps(recipes, indent=2))
        return 0
    from ..display import print_grid

    print_grid("hfkit recipes (hfkit train NAME; hfkit recipes cp NAME my.yaml to edit one)",
               ["name", "task", "what it trains", "path"],
               [[name, r["task"], r["description"], r["path"]] for name, r in recipes.items()])
    return 0


def run_copy(args) -> int:
    from ..recipe import copy_recipe

    dest = copy_recipe(args.name, args.dest)
    print(f"copied {args.name} to {dest}: edit it, then `hfkit train {dest}`")
    return 0
