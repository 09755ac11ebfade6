"""`hfkit generate` (prompts in batches) and `hfkit chat` (a terminal conversation, streamed)."""
from __future__ import annotations

import json
from pathlib import Path

from .common import add_generation_options, add_json, generation_kwargs, load_model_and_tokenizer


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate text from prompts, in batches")
    g.add_argument("--model", required=True, help="model folder or Hub id")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument("--prompts-file", help="one prompt per line, or JSONL with a 'prompt' field (with "
                                            "--prompt-template: records with the template's fields)")
    g.add_argument("--prompt-template", default=None, metavar="NAME",
                   help="render each input with a library template (`hfkit prompts`); a plain prompt is its 'question'")
    g.add_argument("--demos", default=None, help="JSONL demonstrations for a few-shot template")
    add_json(g)
    add_generation_options(g)
    g.set_defaults(handler=run_generate)

    c = sub.add_parser("chat", help="talk with a tuned model in the terminal (streams tokens)")
    c.add_argument("model", help="run folder or model folder / Hub id")
    c.add_argument("--system", default=None, help="system prompt")
    add_generation_options(c, batch_size=False)
    c.set_defaults(handler=run_chat)


def read_prompts(path: str, records: bool = False) -> list:
    """One prompt per line, or JSONL records with a text `prompt` field (`records`: the JSONL objects
    whole, for a template that reads their fields)."""
    from ..errors import HfkitError
    from ..io import read_jsonl_objects

    p = Path(path)
    if p.suffix == ".jsonl":
        prompts = []
        for n, rec in read_jsonl_objects(p, "--prompts-file"):
            if records:
                prompts.append(rec)
            elif not isinstance(rec.get("prompt"), str):
                got = "no 'prompt' field" if "prompt" not in rec else f"'prompt' is {type(rec['prompt']).__name__}"
                raise HfkitError(f"{p} line {n}: expected a JSON object with a text 'prompt' field ({got})")
            else:
                prompts.append(rec["prompt"])
    else:
        if not p.is_file():
            raise HfkitError(f"--prompts-file: no such file: {p}")
        try:
            prompts = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError:
            raise HfkitError(f"{p}: not UTF-8 text") from None
    if not prompts:
        raise HfkitError(f"{p}: no prompts in the file")
    return prompts


def run_generate(args) -> int:
    from ..inference.generation import generate, generation_config

    prompts = read_prompts(args.prompts_file, bool(args.prompt_template)) if args.prompts_file else args.prompt
    if args.prompt_template:
        from ..prompting import get_template, library_prompts
        from .prompts import read_records

        template = get_template(args.prompt_template)
        records = [p if isinstance(p, dict) else {"question": p} for p in prompts]
        demos = read_records(args.demos, "--demos") if args.demos else None
        prompts = library_prompts(template, records, demos, args.seed if args.seed is not None else 1234,
                                  args.prompts_file or "--prompt")
    elif args.demos:
        from ..errors import HfkitError

        raise HfkitError("--demos goes with a few-shot --prompt-template")
    generation_config(None, **generation_kwargs(args))  # the settings' own errors, before loading the model
    model, tokenizer = load_model_and_tokenizer(args.model)
    outs = generate(model, tokenizer, prompts, batch_size=args.batch_size, seed=args.seed, progress=not args.json,
                    **generation_kwargs(args))
    if args.json:
        print(json.dumps([{"prompt": p, "outputs": o} for p, o in zip(prompts, outs)], indent=2, ensure_ascii=False))
    else:
        for p, o in zip(prompts, outs):
            for text in o:
                print(f"### {p}{text}\n")
    return 0


def run_chat(args) -> int:
    """A terminal chat, through the run's chat template (every turn sees the conversation so far) or
    its own single-turn prompt format; a model with neither is refused."""
    from transformers import TextStreamer

    from ..conversation import conversation_for
    from ..inference.generation import generate

    generation_kwargs(args)  # the settings' own errors, before loading the model
    model, tokenizer = load_model_and_tokenizer(args.model)
    talk = conversation_for(args.model, tokenizer)
    history = [{"role": "system", "content": args.system}] if args.system else []
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    print(f"hfkit chat ({talk.description}): type a message; /reset clears the conversation, an empty line or "
          f"Ctrl-D quits.")
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
        print("model> ", end="", flush=True)
        reply = generate(model, tokenizer, [talk.prompt(history)], seed=args.seed, streamer=streamer,
                         **talk.generate_kwargs(), **generation_kwargs(args))[0][0]
        history.append({"role": "assistant", "content": talk.reply(reply)})
    return 0
