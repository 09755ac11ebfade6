"""`hfkit tokenizer train`: a tokenizer trained on text data, saved as a `PreTrainedTokenizerFast`."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .common import add_json, add_overwrite, emit, number, stdout_to_stderr, subcommands


def register(sub) -> None:
    from ..data.tokenizer import KINDS

    tok = subcommands(sub.add_parser("tokenizer", help="tokenizer tools"), "action")
    tt = tok.add_parser("train", help="train a tokenizer on text data")
    tt.add_argument("--kind", choices=KINDS, default="bpe")
    tt.add_argument("--vocab-size", type=number(int, min=1), default=4096)
    tt.add_argument("--min-frequency", type=number(int, min=0), default=2)
    tt.add_argument("--lowercase", action="store_true")
    tt.add_argument("--data", action="append", default=None,
                    help="file, folder, 'default' or hub:owner/name (repeatable; default: default)")
    tt.add_argument("--text-field", default="text")
    tt.add_argument("--output", required=True, help="folder to save the tokenizer in (new, empty, or an hfkit "
                                                     "tokenizer folder to replace with --overwrite)")
    add_overwrite(tt, "an hfkit tokenizer folder at --output")
    add_json(tt)
    tt.set_defaults(handler=run_train)


def run_train(args) -> int:
    from datasets import concatenate_datasets

    from ..data.catalog import source_from_spec
    from ..data.sources import load_source
    from ..data.tokenizer import train_tokenizer
    from ..errors import HfkitError
    from ..io import atomic_write_text
    from ..outputs import plan_output, write_folder

    inputs = {f"--data {d}": d for d in args.data or []}
    plan_output(args.output, "tokenizer", "--output", overwrite=args.overwrite, inputs=inputs)  # before any work
    sources = [source_from_spec(s, args.text_field) for s in (args.data or ["default"])]
    ds = concatenate_datasets([load_source(s) for s in sources])
    if not any(t.strip() for t in ds["text"]):
        raise HfkitError(f"{', '.join(args.data or ['default'])}: no text to train a tokenizer on")
    with stdout_to_stderr() if args.json else contextlib.nullcontext():  # the trainer's progress lines
        tok = train_tokenizer(iter(ds["text"]), args.kind, args.vocab_size, args.min_frequency, args.lowercase)
    result = {"kind": args.kind, "vocab_size": len(tok), "documents": len(ds), "output": str(args.output),
              "special_tokens": tok.special_tokens_map}

    def write(folder: Path) -> None:
        tok.save_pretrained(str(folder))
        atomic_write_text(folder / "hfkit_tokenizer.json", json.dumps(result, indent=2) + "\n")

    write_folder(args.output, "tokenizer", "--output", write, overwrite=args.overwrite, inputs=inputs)
    emit(result, args.json, "tokenizer")
    return 0
