"""`hfkit serve RUN [RUN ...]`: an OpenAI-compatible server for run folders, adapter runs and Hub ids."""
from __future__ import annotations

import sys

from .common import add_bind_options


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve runs over an OpenAI-compatible HTTP API (/v1/chat/completions, "
                                     "/v1/completions, /v1/models)")
    s.add_argument("models", nargs="+", metavar="RUN", help="run folder, adapter run or cached Hub id (a folder is "
                                                            "served under its name)")
    add_bind_options(s, 8000, "allow a --host other than loopback (needs the API key in HFKIT_API_KEY)")
    s.set_defaults(handler=run_serve)


def run_serve(args) -> int:
    from ..serving import check_bind, load_served, make_app

    api_key = check_bind(args.host, args.allow_remote)  # before any model is loaded
    import uvicorn

    served = load_served(args.models)
    app = make_app(served, api_key)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hfkit serve: http://{host}:{args.port}/v1 (models: {', '.join(served)})"
          f"{'; API key required' if api_key else ''}; Ctrl-C stops", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
