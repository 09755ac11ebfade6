"""`hfkit prompts`: the prompt library (list, show, render) and Auto-CoT demonstrations."""
from __future__ import annotations

import json

from .common import add_json, add_overwrite, subcommands, number


def register(sub) -> None:
    p = sub.add_parser("prompts", help="the prompt library: list, show and render templates; Auto-CoT demonstrations")
    ps = subcommands(p, "prompts_command", required=False)
    p.set_defaults(handler=run_list)
    add_json(p)
    sh = ps.add_parser("show", help="print one template")
    sh.add_argument("name", help="a library name or a .yaml template file")
    add_json(sh)
    sh.set_defaults(handler=run_show)
    r = ps.add_parser("render", help="render a template over records (with demonstrations when it takes some)")
    r.add_argument("name")
    r.add_argument("--record", action="append", help="a JSON object (repeatable), e.g. '{\"question\": \"...\"}'")
    r.add_argument("--data", help="JSONL of records")
    r.add_argument("--demos", help="JSONL of demonstrations (question, answer, optional rationale)")
    r.add_argument("--seed", type=number(int, min=0), default=1234)
    add_json(r)
    r.set_defaults(handler=run_render)
    a = ps.add_parser("autocot", help="Auto-CoT: cluster the questions (MiniLM + k-means), generate one rationale "
                                      "per cluster, keep those that pass the heuristics, write demonstrations")
    a.add_argument("--data", required=True, help="JSONL with a 'question' field (answers are not used)")
    a.add_argument("--model", required=True, help="the model that writes the rationales")
    a.add_argument("--out", required=True, help="demonstrations JSONL (question, rationale, answer, cluster)")
    a.add_argument("--clusters", type=number(int, min=1), default=4, help="k: demonstrations to build (default: 4)")
    a.add_argument("--max-question-tokens", type=number(int, min=1), default=60, help="heuristic: longer questions are skipped")
    a.add_argument("--max-steps", type=number(int, min=1), default=5, help="heuristic: rationales with more reasoning steps are skipped")
    a.add_argument("--max-new-tokens", type=number(int, min=1), default=128)
    a.add_argument("--seed", type=number(int, min=0), default=0)
    add_overwrite(a, "--out")
    add_json(a)
    a.set_defaults(handler=run_autocot)


def run_list(args) -> int:
    from ..display import print_table
    from ..prompting.library import LIBRARY

    if args.json:
        print(json.dumps([{"name": t.name, "description": t.description, **t.icl_settings()} for t in LIBRARY.values()],
                         indent=2))
        return 0
    rows = [(t.name, f"[{t.shots} shot{'s' if t.shots != 1 else ''}" + (f", {t.select}" if t.shots else "")
             + (", CoT" if t.cot else "") + (f", {t.self_consistency} paths" if t.self_consistency else "")
             + f"] {t.description}") for t in LIBRARY.values()]
    print_table("hfkit prompt library (hfkit prompts show NAME)", rows)
    return 0


def run_show(args) -> int:
    from ..prompting.library import get_template

    t = get_template(args.name, "prompts show")
    if args.json:
        print(json.dumps({"name": t.name, "description": t.description, **t.icl_settings(),
                          "fields": sorted(t.fields_needed())}, indent=2))
        return 0
    print(f"# {t.name}: {t.description}")
    print(f"# shots={t.shots} select={t.select} cot={t.cot} self_consistency={t.self_consistency}")
    print(f"# fields: {', '.join(sorted(t.fields_needed())) or 'none'}")
    print(t.template)
    return 0


def read_records(path: str, what: str) -> list[dict]:
    """JSONL objects; one line naming the file and line otherwise."""
    from ..errors import HfkitError
    from ..io import read_jsonl_objects

    out = [obj for _, obj in read_jsonl_objects(path, what)]
    if not out:
        raise HfkitError(f"{path}: no records")
    return out


def record_args(records: list[str] | None, data: str | None) -> list[dict]:
    from ..errors import HfkitError

    out = []
    for i, r in enumerate(records or []):
        try:
            rec = json.loads(r)
        except json.JSONDecodeError:
            rec = {"question": r}  # plain text: the question
        if not isinstance(rec, dict):
            raise HfkitError(f"--record {i + 1}: expected a JSON object or plain text")
        out.append(rec)
    if data:
        out += read_records(data, "--data")
    if not out:
        raise HfkitError("give --record JSON (repeatable) or --data FILE")
    return out


def run_render(args) -> int:
    from ..prompting import get_template, library_prompts

    t = get_template(args.name, "prompts render")
    records = record_args(args.record, args.data)
    demos = read_records(args.demos, "--demos") if args.demos else None
    prompts = library_prompts(t, records, demos, args.seed)
    if args.json:
        print(json.dumps([{"record": r, "prompt": p} for r, p in zip(records, prompts)], indent=2, ensure_ascii=False))
    else:
        print("\n\n=====\n\n".join(prompts))
    return 0


def run_autocot(args) -> int:
    from ..data.tokenizer import load_tokenizer
    from ..io import write_jsonl
    from ..models import load_model
    from ..outputs import check_output_file
    from ..prompting.autocot import auto_cot

    check_output_file(args.out, "--out", {"data": args.data, "model": args.model}, args.overwrite)
    questions = read_records(args.data, "--data")
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    demos, report = auto_cot(questions, model, tokenizer, k=args.clusters, max_question_tokens=args.max_question_tokens,
                             max_steps=args.max_steps, max_new_tokens=args.max_new_tokens, seed=args.seed,
                             progress=not args.json)
    write_jsonl(args.out, demos)
    if args.json:
        print(json.dumps({"out": args.out, **report}, indent=2))
    else:
        print(f"{len(demos)} demonstrations ({report['clusters']} clusters, {report['skipped']} candidates skipped by "
              f"the heuristics) -> {args.out}\nuse them: hfkit eval icl --prompt-template auto_cot --demos {args.out} ...")
    return 0
