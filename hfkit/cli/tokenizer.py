"""`hfkit tokenizer train`: a tokenizer trained on text data, saved as a `PreTrainedTokenizerFast`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .common import add_json, emit, subcommands


def register(sub) -> None:
    from ..data.tokenizer import KINDS

    tok = subcommands(sub.add_parser("tokenizer", help="tokenizer tools"), "action")
    tt = tok.add_parser("train", help="train a tokenizer on text data")
    tt.add_argument("--kind", choices=KINDS, default="bpe")
    tt.add_argument("--vocab-size", type=int, default=4096)
    tt.add_argument("--min-frequency", type=int, default=2)
    tt.add_argument("--lowercase", action="store_true")
    tt.add_argument("--data", action="append", default=None,
                    help="file, folder, 'default' or hub:owner/name (repeatable; default: default)")
    tt.add_argument("--text-field", default="text")
    tt.add_argument("--output", required=True, help="folder to save the tokenizer in")
    add_json(tt)
    tt.set_defaults(handler=run_train)


def run_train(args) -> int:
    import shutil

    from datasets import concatenate_datasets

    from ..data.sources import load_source, source_from_spec
    from ..data.tokenizer import train_tokenizer
    from ..errors import HfkitError
    from ..io import atomic_write_text, check_writable_dir

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
        shutil.rmtree(out)
    os.replace(tmp, out)
    result = {"kind": args.kind, "vocab_size": len(tok), "documents": len(ds), "output": str(out),
              "special_tokens": tok.special_tokens_map}
    atomic_write_text(out / "hfkit_tokenizer.json", json.dumps(result, indent=2) + "\n")
    emit(result, args.json, "tokenizer")
    return 0
