"""`hfkit pipeline TASK --model M`: a transformers pipeline over inputs from the command line or a file,
one JSON line per input."""
from __future__ import annotations

import json

from .common import add_overwrite, number


def register(sub) -> None:
    from ..inference.pipelines import TASKS

    p = sub.add_parser("pipeline", help="run a pipeline (text-generation, fill-mask, classification, QA, "
                                        "summarization, ...) on a run, an adapter or a cached Hub model")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--model", required=True, help="run folder, adapter folder or Hub id")
    p.add_argument("--input", action="append", help="an input (repeatable); question-answering: a JSON object "
                                                    "with question and context")
    p.add_argument("--file", help="inputs: JSONL (objects: 'text', or question/context) or one text per line")
    p.add_argument("--out", help="write the JSONL here (default: standard output)")
    p.add_argument("--batch-size", type=number(int, min=1), default=8)
    p.add_argument("--max-new-tokens", type=number(int, min=1), default=64, help="text-generation, summarization, translation")
    p.add_argument("--prefix", default="", help="summarization/translation: text put before every input "
                                               "(e.g. 'summarize: ' for T5)")
    add_overwrite(p, "--out")
    p.set_defaults(handler=run_pipeline_command)


def read_inputs(values: list[str] | None, path: str | None, task: str) -> list:
    from pathlib import Path

    from ..errors import HfkitError

    out: list = []
    for v in values or []:
        if task == "question-answering":
            try:
                out.append(json.loads(v))
            except json.JSONDecodeError:
                raise HfkitError("--input for question-answering: a JSON object with question and context") from None
        else:
            out.append(v)
    if path:
        p = Path(path)
        if p.suffix == ".jsonl":
            from ..io import read_jsonl_objects

            out += [obj for _, obj in read_jsonl_objects(p, "--file", text=task != "question-answering")]
        elif not p.is_file():
            raise HfkitError(f"--file: no such file: {p}")
        else:
            try:
                out += [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            except UnicodeDecodeError:
                raise HfkitError(f"{p}: not UTF-8 text") from None
    if not out:
        raise HfkitError("no inputs: give --input (repeatable) or --file")
    return out


def run_pipeline_command(args) -> int:
    from ..inference.pipelines import load_for, run_pipeline
    from ..io import write_jsonl
    from ..outputs import check_output_file

    check_output_file(args.out, "--out", {"model": args.model, "file": args.file}, args.overwrite)
    inputs = read_inputs(args.input, args.file, args.task)
    model, tokenizer = load_for(args.task, args.model)
    outs = run_pipeline(args.task, model, tokenizer, inputs, args.batch_size, args.max_new_tokens, args.prefix)
    rows = [{"input": x, "output": o} for x, o in zip(inputs, outs)]
    if args.out:
        write_jsonl(args.out, rows)
    else:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False, default=str))
    return 0
