"""`hfkit ui [RUN ...]`: a local web UI (Gradio): chat with runs side by side, and the runs page."""
from __future__ import annotations

import sys

from .common import add_bind_options


def register(sub) -> None:
    u = sub.add_parser("ui", help="a local web UI: chat with runs (side by side with another run or the base), "
                                  "and every run's metrics, loss curve and eval reports")
    u.add_argument("runs", nargs="*", metavar="RUN", help="run folders (or cached Hub ids) to chat with")
    u.add_argument("--runs-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose run folders the runs page lists (repeatable; default: runs/ if it exists)")
    add_bind_options(u, 7860, "allow a --host other than loopback (needs a password in HFKIT_API_KEY, user 'hfkit')")
    u.set_defaults(handler=run_ui)


def run_ui(args) -> int:
    from pathlib import Path

    from ..errors import HfkitError
    from ..serving import LOOPBACK, check_bind
    from ..ui import build

    key = check_bind(args.host, args.allow_remote, "a password", "user 'hfkit'")  # before any model is loaded
    password = None if args.host in LOOPBACK else key  # loopback: no login
    for d in args.runs_dir:
        if not Path(d).is_dir():
            raise HfkitError(f"--runs-dir: no such folder: {d}")
    folders = args.runs_dir or (["runs"] if Path("runs").is_dir() else [])
    if not args.runs and not folders:
        raise HfkitError("give run folders to chat with, or --runs-dir DIR to list runs")
    app = build(args.runs, folders)
    print(f"hfkit ui: http://{args.host}:{args.port}/ ; Ctrl-C stops", file=sys.stderr, flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
               show_error=True, auth=("hfkit", password) if password else None)
    return 0
