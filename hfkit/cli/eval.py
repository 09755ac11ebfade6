"""`hfkit eval perplexity|bleu|chrf|ter|rouge|match|icl|compare`.

Every evaluation writes a JSON report (hfkit.evaluation.reports) named after its settings, by default
into the model folder's `eval/`, where `eval compare` finds it, and prints a table.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import HfkitError
from .common import Renamed, add_generation_options, add_json, add_overwrite, subcommands, number

TEXT_COMMANDS = {"bleu": "bleu", "chrf": "chrf", "ter": "ter", "rouge": "rouge",
                 "match": "accuracy,exact_match,token_f1"}


def register(sub) -> None:
    ev = subcommands(sub.add_parser("eval", help="evaluate a model"), "metric")
    _register_perplexity(ev)
    for name, default in TEXT_COMMANDS.items():
        _register_text(ev, name, default)
    _register_icl(ev)
    _register_compare(ev)


def _register_perplexity(ev) -> None:
    pp = ev.add_parser("perplexity", help="corpus (sliding window) or conditional perplexity")
    pp.add_argument("--model", required=True, help="model folder or Hub id")
    pp.add_argument("--data", help="file, folder, 'default' or hub:owner/name")
    pp.add_argument("--text-field", default="text")
    pp.add_argument("--split", choices=["all", "train", "validation"], default="all",
                    help="score only this part of the data, split as a training recipe does")
    pp.add_argument("--block-size", type=number(int, min=1), default=None,
                    help="window length (default: the block size an hfkit run trained with, else the model maximum)")
    pp.add_argument("--stride", type=number(int, min=1), default=None, help="window step (default: block_size/2)")
    pp.add_argument("--prefix-field", default=None, help="conditional: field holding the prefix")
    pp.add_argument("--continuation-field", default=None, help="conditional: field holding the continuation")
    pp.add_argument("--prefix", default=None, help="conditional, one pair: the prefix text")
    pp.add_argument("--continuation", default=None, help="conditional, one pair: the continuation text")
    pp.add_argument("--batch-size", type=number(int, min=1), default=16, help="windows per forward pass (default: 16)")
    _report_options(pp, "the --output file")
    pp.set_defaults(handler=run_perplexity)


def _register_text(ev, name: str, default: str) -> None:
    e = ev.add_parser(name, help=f"{name}: score --predictions against --references, or a model's generations")
    e.add_argument("--predictions", help="file with one prediction per line")
    e.add_argument("--references", action="append", help="file with one reference per line (repeatable)")
    e.add_argument("--model", help="model folder or Hub id: generate for --data and score")
    e.add_argument("--data", help="records (JSONL/CSV/Parquet, hub:owner/name) to generate for")
    e.add_argument("--template", help="Jinja prompt over a record's fields, e.g. '{{source}} =>' "
                                      "(default: the prompt format of the run the model comes from)")
    e.add_argument("--input-field", help="use this field as the prompt as it is (e.g. a seq2seq model)")
    e.add_argument("--target-field", default="target", help="reference field of the records")
    e.add_argument("--max-examples", type=number(int, min=1), default=None)
    add_generation_options(e, names=("max_new_tokens", "num_beams"), seed=False)
    e.add_argument("--metrics", default=default, help=f"comma-separated (default: {default}); any of "
                                                        "bleu, chrf, ter, rouge, accuracy, exact_match, token_f1")
    e.add_argument("--tokenize", default=None, help="sacrebleu BLEU tokenizer (13a, intl, zh, char, ...)")
    e.add_argument("--rouge-stemmer", action="store_true", help="Porter stemming in ROUGE")
    if name == "match":
        e.add_argument("--per-class", action="store_true", help="labels: per-class precision/recall/F1 report")
    e.add_argument("--save-predictions", default=None, help="write prompts, references, predictions (JSONL)")
    _report_options(e, "the --output and --save-predictions files")
    e.set_defaults(handler=run_text)


def _register_icl(ev) -> None:
    ic = ev.add_parser("icl", help="zero/few-shot in-context evaluation: multiple choice or generation")
    ic.add_argument("--model", required=True)
    ic.add_argument("--data", required=True, help="the task: JSONL with question, answer, optional choices and rationale")
    ic.add_argument("--task", action=Renamed, new="--data")
    ic.add_argument("--demos", default=None, help="JSONL of demonstrations (default: the task file, minus the example)")
    ic.add_argument("--prompt-template", default=None, metavar="NAME",
                    help="a library template (`hfkit prompts`): its prompt, shots, selection, CoT and "
                         "self-consistency, each overridden by the flag of its own")
    ic.add_argument("--shots", type=number(int, min=0), default=None, help="demonstrations in front (default: 0)")
    ic.add_argument("--select", choices=["random", "tfidf", "similar", "embedding"], default=None,
                    help="demonstrations at random (seeded, default), the most similar by TF-IDF cosine "
                         "(tfidf; similar is its old name) or by MiniLM embedding cosine")
    ic.add_argument("--template", default=None, help="Jinja prompt over an example's fields "
                                                     "(default: 'Question: {{question}}\\nAnswer:')")
    ic.add_argument("--definition", default=None, metavar="FILE",
                    help="a task definition (YAML/JSON; a Natural Instructions task file too) put in front of "
                         "every prompt, the template as its input")
    ic.add_argument("--positive-examples", type=number(int, min=0), default=2,
                    help="the definition's positive examples shown (default: 2)")
    ic.add_argument("--negative-examples", type=number(int, min=0), default=0,
                    help="the definition's negative examples shown (default: 0)")
    ic.add_argument("--input-field", default="question")
    ic.add_argument("--mode", choices=["auto", "multiple_choice", "generate"], default="auto")
    ic.add_argument("--cot", action="store_true", default=None,
                    help="chain-of-thought: reason first, then 'The answer is X'")
    ic.add_argument("--self-consistency", type=number(int, min=0), default=None, metavar="N",
                    help="sample N reasoning paths and take the majority answer")
    add_generation_options(ic, names=("max_new_tokens", "temperature", "top_p"), seed=False,
                           helps={"temperature": "sampling temperature of the --self-consistency paths",
                                  "top_p": "nucleus sampling of the --self-consistency paths"})
    ic.add_argument("--seed", type=number(int, min=0), default=1234, help="chooses the demonstrations, seeds sampling (default: 1234)")
    ic.add_argument("--answer-regex", default=None, help="extract the answer: the first group of this regex")
    ic.add_argument("--limit", type=number(int, min=1), default=None)
    ic.add_argument("--log-samples", default=None, help="write every example's prompt, scores, answers (JSONL)")
    _report_options(ic, "the --output and --log-samples files")
    ic.set_defaults(handler=run_icl)


def _register_compare(ev) -> None:
    cp = ev.add_parser("compare", help="side-by-side table (and a bar chart with --png) of runs or eval reports")
    cp.add_argument("runs", nargs="+", help="run folders (metrics.json, eval/*.json) or eval report JSON files")
    cp.add_argument("--png", default=None, help="write a bar chart per metric to this PNG (counts are not charted)")
    cp.add_argument("--output", default=None, help="also write the comparison as JSON")
    add_overwrite(cp, "the --png and --output files")
    add_json(cp)
    cp.set_defaults(handler=run_compare)


# --- shared ---------------------------------------------------------------------------------------

def _report_options(parser, files: str) -> None:
    parser.add_argument("--output", default=None, help="report JSON (default with an hfkit run folder as --model: "
                                                       "DIR/eval/NAME.json, NAME from the settings)")
    add_overwrite(parser, files)
    add_json(parser)


def _check_outputs(args, inputs: dict, **paths) -> None:
    """Every file a command will write, checked before any work: never an input, never a file hfkit
    did not write unless --overwrite ({flag name: path or None})."""
    from ..outputs import check_output_file

    for flag, path in paths.items():
        check_output_file(path, "--" + flag.replace("_", "-"), inputs, args.overwrite)


def _inputs(args) -> dict:
    return {name: getattr(args, name, None) for name in ("model", "data", "predictions", "references", "demos",
                                                         "definition")}


def _finish(rep: dict, args, default: Path | None) -> int:
    from ..evaluation.reports import print_report
    from ..io import write_json

    out = args.output or default
    if out:
        write_json(out, rep)
    if args.json:
        print(json.dumps(rep, indent=2, ensure_ascii=False))
    else:
        print_report(rep)
        if out:
            print(f"report: {out}")
    return 0


# --- perplexity -----------------------------------------------------------------------------------

def run_perplexity(args) -> int:
    from ..evaluation.reports import data_stem, default_output, report, report_name
    from ..inference.scoring import conditional_perplexity, perplexity
    from .common import load_model_and_tokenizer

    _check_outputs(args, _inputs(args), output=args.output)
    if args.prefix is not None or args.continuation is not None:
        if args.continuation is None:
            raise HfkitError("--prefix needs --continuation")
        pairs, ds = [(args.prefix or "", args.continuation)], None
    else:
        if not args.data:
            raise HfkitError("give --data SRC (or --prefix/--continuation)")
        ds = _perplexity_data(args)
        if not args.continuation_field and not any(t.strip() for t in ds["text"]):
            raise HfkitError(f"--data {args.data}: no text to score")
        pairs = None
        if args.continuation_field:
            pf = args.prefix_field or "prefix"
            for f in (pf, args.continuation_field):
                if f not in ds.column_names:
                    raise HfkitError(f"{args.data}: field '{f}' not found (columns: {', '.join(ds.column_names)})")
            pairs = list(zip(ds[pf], ds[args.continuation_field]))
    model, tokenizer = load_model_and_tokenizer(args.model)
    progress = not args.json
    block_size = args.block_size or _trained_length(args.model)
    if pairs is not None:
        result = {"kind": "conditional", **conditional_perplexity(model, tokenizer, pairs, args.batch_size, progress)}
        name = report_name("perplexity", data_stem(args.data) or "pair", "conditional")
    else:
        result = {"kind": "corpus", **perplexity(model, tokenizer, ds["text"], block_size, args.stride,
                                                 args.batch_size, progress)}
        name = report_name("perplexity", data_stem(args.data), args.split, f"block{result['block_size']}",
                           f"stride{result['stride']}")
    settings = {k: v for k, v in result.items() if k in ("kind", "block_size", "stride", "windows", "tokens",
                                                         "examples")}
    settings.update(data=args.data, split=args.split)
    scores = {k: v for k, v in result.items() if k in ("perplexity", "nll", "tokens_scored")}
    rep = report("perplexity", scores, settings, model=args.model, name=name)
    return _finish(rep, args, default_output(args.model, name))


def _trained_length(model: str) -> int | None:
    """The sequence length the run in folder `model` trained with (its block size), if it is an
    hfkit run: windows of that length are what the model knows."""
    from ..recipe import load_run_recipe
    from ..tasks import get_task

    try:
        recipe = load_run_recipe(model)
    except HfkitError:
        return None
    return get_task(recipe.task).sequence_length(recipe)[0] if recipe else None


def _perplexity_data(args):
    """The evaluation data: a whole source, or the train/validation part a recipe would use."""
    from ..data.catalog import source_from_spec
    from ..data.sources import load_source

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
    from ..data.corpus import DataConfig, build_corpus
    from ..recipe import saved_recipe
    from ..training.arguments import default

    r = saved_recipe(args.model)  # split exactly as the run that trained this model did (else by the defaults)
    seed = (r.get("training") or {}).get("seed", default("seed"))
    d = r.get("data") or {}
    kw = {k: d[k] for k in ("validation_fraction", "min_chars", "max_chars", "dedup") if k in d}
    corpus = build_corpus(DataConfig(sources=[src], **kw), seed)
    return corpus.validation if args.split == "validation" else next(iter(corpus.train.values()))


# --- text metrics ---------------------------------------------------------------------------------

def run_text(args) -> int:
    from ..evaluation import generation_eval as g
    from ..evaluation.reports import (data_fingerprint, data_stem, default_output, if_writable, report,
                                      report_name)
    from ..evaluation.text_metrics import TEXT_METRICS
    from ..io import write_jsonl

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        if m not in TEXT_METRICS:
            raise HfkitError(f"--metrics: unknown metric '{m}' (one of: {', '.join(TEXT_METRICS)})")
    options = {"tokenize": args.tokenize} if args.tokenize else {}
    options["rouge_stemmer"] = args.rouge_stemmer
    _check_outputs(args, _inputs(args), output=args.output, save_predictions=args.save_predictions)
    if args.predictions or args.references:
        if args.model or args.data:
            raise HfkitError("give either --predictions/--references or --model/--data, not both")
        if not (args.predictions and args.references):
            raise HfkitError("--predictions and --references go together")
        scores = g.score_files(args.predictions, args.references, metrics,
                               per_class=getattr(args, "per_class", False), **options)
        settings = {"metrics": metrics, "predictions": args.predictions, "references": args.references, **options}
        data = {"predictions": data_fingerprint(args.predictions),
                "references": [data_fingerprint(r) for r in args.references]}
        default = if_writable(Path(args.predictions).with_suffix(f".{args.metric}.json"))  # hyp.txt -> hyp.bleu.json
        return _finish(report(args.metric, scores, settings, data=data), args, default)
    if not (args.model and args.data):
        raise HfkitError("give --predictions FILE --references FILE, or --model DIR --data SRC")
    from ..recipe import load_run_recipe

    recipe = None if (args.template or args.input_field) else load_run_recipe(args.model)
    run_prompts = None
    if recipe is not None:  # the same prompts (template, fields, chat format) as the run's own evaluation
        from ..tasks import get_task

        task = get_task(recipe.task)
        run_prompts = lambda records, tok, where: task.generation_inputs(recipe, records, tok, where, args.model)  # noqa: E731
    scores, samples, data = g.evaluate_generation(
        args.model, args.data, metrics, template=args.template, target_field=args.target_field,
        input_field=args.input_field, limit=args.max_examples, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, progress=not args.json, run_prompts=run_prompts,
        **options)
    if args.save_predictions:
        write_jsonl(args.save_predictions, samples)
    settings = {"metrics": metrics, "template": args.template, "input_field": args.input_field,
                "target_field": args.target_field, "max_examples": args.max_examples, "num_beams": args.num_beams,
                "max_new_tokens": args.max_new_tokens, "decoding": "greedy" if args.num_beams == 1 else "beam", **options}
    name = report_name(args.metric, data_stem(args.data), args.max_examples and f"max{args.max_examples}",
                       args.num_beams > 1 and f"beams{args.num_beams}")
    rep = report(args.metric, scores, settings, model=args.model, data=data, name=name)
    rep["examples"] = samples[:5]
    return _finish(rep, args, default_output(args.model, name))


# --- in-context evaluation ------------------------------------------------------------------------

def run_icl(args) -> int:
    from ..data.tokenizer import load_tokenizer
    from ..evaluation.icl import DEFAULT_TEMPLATE, IclConfig, build_prompts, evaluate_icl, load_task
    from ..evaluation.reports import data_fingerprint, default_output, report, report_name
    from ..io import write_jsonl
    from ..models import load_model

    _check_outputs(args, _inputs(args), output=args.output, log_samples=args.log_samples)
    base = {"template": DEFAULT_TEMPLATE, "shots": 0, "select": "random", "cot": False, "self_consistency": 0}
    if args.prompt_template:
        from ..prompting import get_template

        base = get_template(args.prompt_template).icl_settings()
    given = {k: getattr(args, k) for k in base if getattr(args, k) is not None}  # a flag wins over the template
    cfg = IclConfig(path=args.data, seed=args.seed, demos=args.demos, limit=args.limit,
                    input_field=args.input_field, mode=args.mode, temperature=args.temperature, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, answer_regex=args.answer_regex,
                    definition=args.definition, positive_examples=args.positive_examples,
                    negative_examples=args.negative_examples, **{**base, **given})
    for name, what in cfg.problems()[:1]:
        raise HfkitError(f"--{'data' if name == 'path' else name.replace('_', '-')} {what}")
    cfg = cfg.resolved()  # the definition read and checked before the model loads
    examples = load_task(args.data, cfg.input_field)
    demos = load_task(args.demos, cfg.input_field) if args.demos else None
    build_prompts(examples[:1] if demos is not None else examples, demos, cfg, args.data, args.demos)  # fields, shots
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    res = evaluate_icl(model, tokenizer, examples, cfg, demos, args.data, args.demos, progress=not args.json)
    if args.log_samples:
        write_jsonl(args.log_samples, res["samples"])
    data = {"task": data_fingerprint(args.data)}
    if args.demos:
        data["demos"] = data_fingerprint(args.demos)
    if args.definition:
        data["definition"] = data_fingerprint(args.definition)
    name = report_name("icl", Path(args.data).stem, f"{cfg.shots}shot", f"seed{cfg.seed}",
                       cfg.select != "random" and cfg.select, cfg.cot and "cot",
                       cfg.self_consistency and f"sc{cfg.self_consistency}", cfg.limit and f"limit{cfg.limit}")
    rep = report("icl", res["metrics"], res["settings"], model=args.model, data=data, name=name)
    return _finish(rep, args, default_output(args.model, name))


# --- compare --------------------------------------------------------------------------------------

def run_compare(args) -> int:
    from ..evaluation.compare import compare, plot_comparison, print_comparison
    from ..io import write_json

    _check_outputs(args, {"runs": args.runs}, png=args.png, output=args.output)
    cmp = compare(args.runs)
    if args.png:
        plot_comparison(cmp, args.png)
    if args.output:
        import importlib.metadata as md

        write_json(args.output, {**cmp, "versions": {"hfkit": md.version("hfkit")}})
    if args.json:
        print(json.dumps({**cmp, "png": args.png}, indent=2))
    else:
        print_comparison(cmp)
        if args.png:
            print(f"chart: {args.png}")
    return 0
