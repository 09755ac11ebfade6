"""The `hfkit eval` commands other than perplexity (argument handling; the work is in `commands`)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import HfkitError
from ..io import check_writable_file, write_json, write_jsonl
from . import commands as c


def default_output(model: str | None, name: str) -> Path | None:
    """Reports go into the model folder (`eval/NAME.json`), where `eval compare` finds them."""
    if model and Path(model).is_dir():
        return _if_writable(Path(model) / "eval" / f"{name}.json")
    return None


def _if_writable(path: Path) -> Path | None:
    try:
        check_writable_file(path, "report")
    except HfkitError:
        return None  # a read-only folder: the report is printed, not written
    return path


def _finish(rep: dict, args, default: Path | None) -> int:
    out = args.output or default
    if out:
        write_json(out, rep)
    if args.json:
        print(json.dumps(rep, indent=2, ensure_ascii=False))
    else:
        c.print_report(rep)
        if out:
            print(f"report: {out}")
    return 0


def _check_outputs(**paths) -> None:
    """Every file a command will write, checked before any work: {flag name: path or None}."""
    for flag, path in paths.items():
        if path:
            check_writable_file(path, "--" + flag.replace("_", "-"))


def run(args) -> int:
    if args.metric == "icl":
        return _icl(args)
    if args.metric == "compare":
        return _compare(args)
    return _text(args)


def _text(args) -> int:
    from .metrics import TEXT_METRICS

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        if m not in TEXT_METRICS:
            raise HfkitError(f"--metrics: unknown metric '{m}' (one of: {', '.join(TEXT_METRICS)})")
    options = {"tokenize": args.tokenize} if args.tokenize else {}
    options["rouge_stemmer"] = args.rouge_stemmer
    _check_outputs(output=args.output, save_predictions=args.save_predictions)
    if args.predictions or args.references:
        if args.model or args.data:
            raise HfkitError("give either --predictions/--references or --model/--data, not both")
        if not (args.predictions and args.references):
            raise HfkitError("--predictions and --references go together")
        scores = c.score_files(args.predictions, args.references, metrics,
                               per_class=getattr(args, "per_class", False), **options)
        settings = {"metrics": metrics, "predictions": args.predictions, "references": args.references, **options}
        data = {"predictions": c.data_fingerprint(args.predictions),
                "references": [c.data_fingerprint(r) for r in args.references]}
        default = _if_writable(Path(args.predictions).with_suffix(f".{args.metric}.json"))  # hyp.txt -> hyp.bleu.json
        return _finish(c.report(args.metric, scores, settings, data=data), args, default)
    if not (args.model and args.data):
        raise HfkitError("give --predictions FILE --references FILE, or --model DIR --data SRC")
    scores, samples, data = c.evaluate_generation(
        args.model, args.data, metrics, template=args.template, target_field=args.target_field,
        input_field=args.input_field, limit=args.max_examples, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, **options)
    if args.save_predictions:
        write_jsonl(args.save_predictions, samples)
    settings = {"metrics": metrics, "template": args.template, "input_field": args.input_field,
                "target_field": args.target_field, "max_examples": args.max_examples, "num_beams": args.num_beams,
                "max_new_tokens": args.max_new_tokens, "decoding": "greedy" if args.num_beams == 1 else "beam", **options}
    rep = c.report(args.metric, scores, settings, model=args.model, data=data)
    rep["examples"] = samples[:5]
    return _finish(rep, args, default_output(args.model, args.metric))


def _icl(args) -> int:
    from ..data.tokenizer import load_tokenizer
    from ..models import load_model
    from .icl import DEFAULT_TEMPLATE, IclConfig, build_prompts, evaluate_icl, load_task

    _check_outputs(output=args.output, log_samples=args.log_samples)
    if args.self_consistency < 0:
        raise HfkitError(f"--self-consistency must be >= 0, got {args.self_consistency}")
    if args.self_consistency and args.temperature <= 0:
        raise HfkitError("--self-consistency samples: --temperature must be > 0")
    cfg = IclConfig(shots=args.shots, seed=args.seed, select=args.select, template=args.template or DEFAULT_TEMPLATE,
                    input_field=args.input_field, mode=args.mode, cot=args.cot,
                    self_consistency=args.self_consistency, temperature=args.temperature, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, answer_regex=args.answer_regex, batch_size=args.batch_size,
                    limit=args.limit)
    examples = load_task(args.task, cfg.input_field)
    demos = load_task(args.demos, cfg.input_field) if args.demos else None
    build_prompts(examples[:1] if demos is not None else examples, demos, cfg, args.task, args.demos)  # fields, shots
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    res = evaluate_icl(model, tokenizer, examples, cfg, demos, args.task, args.demos, progress=not args.json)
    if args.log_samples:
        write_jsonl(args.log_samples, res["samples"])
    data = {"task": c.data_fingerprint(args.task)}
    if args.demos:
        data["demos"] = c.data_fingerprint(args.demos)
    rep = c.report("icl", res["metrics"], res["settings"], model=args.model, data=data)
    return _finish(rep, args, default_output(args.model, f"icl_{Path(args.task).stem}"))


def _compare(args) -> int:
    _check_outputs(png=args.png, output=args.output)
    cmp = c.compare(args.runs)
    c.plot_comparison(cmp, args.png)
    if args.output:
        write_json(args.output, cmp)
    if args.json:
        print(json.dumps({**cmp, "png": args.png}, indent=2))
    else:
        c.print_comparison(cmp)
        print(f"chart: {args.png}")
    return 0
