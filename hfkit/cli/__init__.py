"""`hfkit` command line: one module per command group, each a thin layer over the package's functions.

Every command module has `register(sub)`, which adds its parsers and sets `handler` (the function that
carries the command out). Bad input is an `HfkitError` or a usage error, printed as one line on
stderr with exit status 2.
"""
from __future__ import annotations

import sys

from . import data, doctor, eval, generate, model, pipeline, prompts, rag, scaling, serve, tokenizer, train, ui
from ..io import is_main_rank
from .common import Parser, UsageError, subcommands

COMMAND_MODULES = (train, data, tokenizer, eval, generate, serve, ui, prompts, rag, pipeline, model, scaling, doctor)


def build_parser() -> Parser:
    p = Parser(prog="hfkit", description="Train, adapt and evaluate language models by running recipes.")
    sub = subcommands(p, "command")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ..errors import HfkitError

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # overrides after an option (`train R --num-processes 2 max_steps=5`) are still overrides
            if hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
                args.overrides = [*args.overrides, *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.handler(args)
    except (HfkitError, UsageError) as e:
        if is_main_rank():  # once, not once per process of a launched run
            print(f"hfkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hfkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hfkit ... | head`: the reader left; stop quietly (status 1, as Python's
        import os  # docs advise and as rich does for tables)

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except Exception as e:
        from ..errors import Interrupted

        if isinstance(e, Interrupted):
            if is_main_rank():
                print(f"hfkit: {e}", file=sys.stderr)
            return e.code
        raise


if __name__ == "__main__":
    sys.exit(main())
