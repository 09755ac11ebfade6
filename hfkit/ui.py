"""`hfkit ui`: a local web UI (Gradio) to use what you trained.

- Chat: talk with a run, and side by side with another run or the run's base model (the same prompt,
  through the run's chat template or prompt format: hfkit.serving answers both, as `hfkit serve` does).
- Runs: every run's metrics side by side (what `hfkit eval compare` shows), and one run's loss curve,
  recipe and eval reports.

Binds to 127.0.0.1; another host needs `--allow-remote` and a password (HFKIT_API_KEY; user `hfkit`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import HfkitError
from .serving import ApiError, Served, Server, load_served

NONE = "(none)"
BASE = "base of "


def find_runs(paths: list[str]) -> list[Path]:
    """Run folders: those given, and every folder under a given folder that holds a finished run's
    metrics.json (one level or two: `runs/NAME`, `runs/sweep/NAME`)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(q.parent for q in [*p.glob("*/metrics.json"), *p.glob("*/*/metrics.json")])
    out, seen = [], set()
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def base_of(run: Path) -> str | None:
    """The base a run was tuned from: an adapter's base model, else the recipe's model.name_or_path."""
    cfg = run / "adapter_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("base_model_name_or_path")
    from .recipe import saved_recipe

    return ((saved_recipe(run) or {}).get("model") or {}).get("name_or_path")


def metrics_table(runs: list[Path]) -> tuple[list[str], list[list]]:
    """Every metric of every run (`hfkit eval compare`'s table): header, rows."""
    from .evaluation.compare import side_by_side

    cmp = side_by_side([str(r) for r in runs], skip_unreadable=True)
    return ["metric", *cmp["runs"]], [[n, *(None if v is None else round(v, 4) for v in vals)]
                                      for n, vals in cmp["metrics"].items()]


def run_details(run: Path) -> tuple[str | None, str]:
    """A run's loss curve (path) and its summary: recipe, results, eval reports (markdown)."""
    curve = run / "loss.png"
    parts = []
    if (run / "recipe.yaml").is_file():
        parts.append(f"### recipe.yaml\n```yaml\n{(run / 'recipe.yaml').read_text(encoding='utf-8')[:4000]}\n```")
    if (run / "metrics.json").is_file():
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        keep = {k: m[k] for k in ("eval_before", "eval_after", "generation_before", "generation_after", "train")
                if k in m}
        parts.append(f"### metrics.json\n```json\n{json.dumps(keep, indent=2)[:4000]}\n```")
    for rep in sorted((run / "eval").glob("*.json")):
        parts.append(f"### eval/{rep.name}\n```json\n{rep.read_text(encoding='utf-8')[:3000]}\n```")
    return (str(curve) if curve.is_file() else None), "\n\n".join(parts) or "no results in this folder"


class Chats:
    """The models the chat page talks to: the runs given (loaded once) and, on demand, a run's base,
    prompted through the run's own conversation (its tokenizer, chat template or prompt format)."""

    def __init__(self, served: dict[str, Served]):
        self.server = Server(served)
        self.bases = {f"{BASE}{name}": s for name, s in served.items()
                      if s.talk is not None and Path(s.ref).is_dir() and base_of(Path(s.ref))}

    def names(self) -> list[str]:
        return [n for n, s in self.server.served.items() if s.talk is not None and not n.startswith(BASE)]

    def compare_names(self) -> list[str]:
        return [NONE, *self.names(), *self.bases]

    def _ensure(self, name: str) -> None:
        if name in self.server.served or name not in self.bases:
            return
        from .models import load_model

        run = self.bases[name]
        base = load_model(base_of(Path(run.ref)))
        if base.get_input_embeddings().weight.shape[0] < len(run.tokenizer):
            raise ApiError(400, f"the base of {run.id} does not know the tokens its run added to the tokenizer")
        self.server.served[name] = Served(name, base_of(Path(run.ref)), base.eval(), run.tokenizer, run.talk)

    def reply(self, name: str, messages: list[dict], max_tokens: int, temperature: float) -> str:
        try:
            self._ensure(name)
            out = self.server.answer({"model": name, "messages": messages, "max_tokens": int(max_tokens),
                                      "temperature": float(temperature)}, chat=True)
            return out["choices"][0]["message"]["content"]
        except (ApiError, HfkitError) as e:
            return f"[error] {getattr(e, 'message', str(e))}"


def _text(content) -> str:
    """A Chatbot message's text (Gradio may hand content back as a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content)


def build(runs: list[str], folders: list[str]):
    """The Gradio app: chat with `runs`; the runs page lists `runs` and the run folders under `folders`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    chats = Chats(load_served(runs) if runs else {})
    listed = find_runs([*runs, *folders])
    by_label = {p.name if p.name not in {q.name for q in listed if q != p} else str(p): p for p in listed}

    with gr.Blocks(title="hfkit") as app:
        gr.Markdown("# hfkit")
        with gr.Tab("Chat", id="chat"):
            names = chats.names()
            with gr.Row():
                model_a = gr.Dropdown(names, value=names[0] if names else None, label="Model", elem_id="model-a")
                model_b = gr.Dropdown(chats.compare_names(), value=NONE, label="Side by side with", elem_id="model-b")
                max_tokens = gr.Slider(1, 512, value=64, step=1, label="max tokens", elem_id="max-tokens")
                temperature = gr.Slider(0, 2, value=0, step=0.05, label="temperature (0: greedy)")
            with gr.Row():
                chat_a = gr.Chatbot(label="Model", elem_id="chat-a", height=360)
                chat_b = gr.Chatbot(label="Side by side", elem_id="chat-b", height=360)
            with gr.Row():
                prompt = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, elem_id="prompt",
                                    scale=8)
                send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
                clear = gr.Button("Clear", elem_id="clear", scale=1)

            def respond(message, a, b, n, t, hist_a, hist_b):
                hist_a, hist_b = list(hist_a or []), list(hist_b or [])
                if not message.strip() or not a:
                    return "", hist_a, hist_b
                for name, hist in ((a, hist_a), (b, hist_b)):
                    if not name or name == NONE:
                        continue
                    turns = [{"role": m["role"], "content": _text(m["content"])} for m in hist]
                    turns.append({"role": "user", "content": message})
                    hist += [{"role": "user", "content": message},
                             {"role": "assistant", "content": chats.reply(name, turns, n, t)}]
                return "", hist_a, hist_b

            inputs = [prompt, model_a, model_b, max_tokens, temperature, chat_a, chat_b]
            send.click(respond, inputs, [prompt, chat_a, chat_b])
            prompt.submit(respond, inputs, [prompt, chat_a, chat_b])
            clear.click(lambda: ([], []), None, [chat_a, chat_b])

        with gr.Tab("Runs", id="runs"):
            header, rows = metrics_table(listed)
            gr.Markdown(f"{len(listed)} runs. Every metric side by side, as `hfkit eval compare` shows it.")
            gr.Dataframe(value=rows, headers=header, elem_id="runs-table", interactive=False, wrap=True)
            labels = list(by_label)
            run_pick = gr.Dropdown(labels, value=None, label="Run", elem_id="run-select")
            with gr.Row():
                curve = gr.Image(label="loss curve", elem_id="loss-curve", type="filepath", interactive=False)
                details = gr.Markdown(elem_id="run-details")
            run_pick.change(lambda label: run_details(by_label[label]) if label else (None, ""), run_pick,
                            [curve, details])
    return app
