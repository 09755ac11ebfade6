"""What the command modules share: the parser class (one-line errors), option groups defined once,
and output helpers (JSON or a table; stdout kept clean for --json)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import typing


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message by default)
        raise UsageError(f"{self.prog}: {message}")


def subcommands(parser: argparse.ArgumentParser, dest: str, required: bool = True):
    return parser.add_subparsers(dest=dest, required=required, parser_class=Parser)


class Renamed(argparse.Action):
    """An option that was renamed: using it is an error naming the new one."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        raise UsageError(f"{parser.prog}: {option_string} was renamed {self.new}")


def number(kind: type = int, min: float | None = None, above: float | None = None, max: float | None = None):
    """An argparse type: an int or a finite float within limits (`above`: exclusive), else a usage
    error naming the flag (NaN, infinity and negative counts never get through)."""
    from ..inference.generation import out_of_range

    limits = {k: v for k, v in (("min", min), ("above", above), ("max", max)) if v is not None}

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects {'an integer' if kind is int else 'a number'}, got {text!r}")
        problem = out_of_range(value, limits)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_overwrite(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} if it exists (never one of the inputs; hfkit's own reports and "
                             f"charts are replaced without it)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (and nothing else on stdout)")


def add_generation_options(parser: argparse.ArgumentParser, names: typing.Iterable[str] | None = None,
                           seed: bool = True, batch_size: bool = True, helps: dict | None = None) -> None:
    """The decoding options, with one set of defaults: those of `GenerationSettings` (the recipe's
    `generate:` section). `names` picks a subset for commands that fix the others."""
    from ..inference.generation import GenerationSettings

    g = parser.add_argument_group("generation")
    hints = typing.get_type_hints(GenerationSettings)
    for f in dataclasses.fields(GenerationSettings):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = (helps or {}).get(f.name, f.metadata.get("help", ""))
        if names is not None and "do_sample" not in names:  # no --do-sample here: do not name it
            text = text.replace(" (with --do-sample)", "")
        help_text = f"{text} (default: {f.default})"
        if hints[f.name] is bool:
            g.add_argument(flag, action="store_true", default=f.default, help=text)
        else:
            limits = {k: f.metadata[k] for k in ("min", "above", "max") if k in f.metadata}
            g.add_argument(flag, type=number(_scalar(hints[f.name]), **limits), default=f.default, help=help_text)
    if batch_size:
        g.add_argument("--batch-size", type=number(int, min=1), default=16,
                       help="prompts (or sequences) per forward pass (default: 16)")
    if seed:
        g.add_argument("--seed", type=number(int, min=0), default=None, help="seed for sampling (default: not seeded)")


def _scalar(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def generation_kwargs(args, names: typing.Iterable[str] | None = None) -> dict:
    """The generation options of parsed `args` as keyword arguments for `hfkit.inference.generate`,
    checked together (e.g. several sequences need sampling or beams)."""
    from ..inference.generation import GenerationSettings, generation_config

    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(GenerationSettings)
          if (names is None or f.name in names) and hasattr(args, f.name)}
    generation_config(None, **kw)
    return kw


def emit(result: dict, as_json: bool, title: str) -> None:
    """A result as JSON, or as a table of its scalar fields."""
    from ..display import print_table

    if as_json:
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    else:
        print_table(title, [(k, v) for k, v in result.items() if not isinstance(v, (dict, list))])


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout — Python's and native libraries' (fd 1) — to stderr."""
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


def load_model_and_tokenizer(path: str):
    from ..data.tokenizer import load_tokenizer
    from ..models import load_model

    model = load_model(path)
    return model, load_tokenizer(path)


def add_bind_options(p, port: int, remote_help: str) -> None:
    """--host (loopback by default), --port and --allow-remote, as `hfkit serve` and `hfkit ui` take them."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=number(int, min=0, max=65535), default=port, help=f"port (default {port})")
    p.add_argument("--allow-remote", action="store_true", help=remote_help)
