"""`hfkit ui` in a real browser: Debian's chromium driven by Playwright's Python API. The page answers a
prompt with the run's answer and, side by side, with its base's answer through the run's prompt format;
the runs page lists the runs' metrics and opens a run's loss curve. Screenshots are kept in
build/test-artifacts/."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_serve import MAX, expected_chat, start
from test_sft import MEMO

ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"


def chromium() -> str:
    path = os.environ.get("HFKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no chromium here: `make test` installs Debian's chromium package (apt-get install chromium, as root)"
    return path


@pytest.fixture(scope="module")
def ui(chat_runs):
    proc, port = start(chat_runs, {"GRADIO_ANALYTICS_ENABLED": "False"}, "ui",
                       ["--runs-dir", str(chat_runs[0].parent)], "/")
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(timeout=30)


def base_answer(chat_runs, message):
    """The LoRA run's base model, prompted through the run's own conversation (tokenizer, prompt format)."""
    from hfkit.conversation import conversation_for
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.inference.generation import generate
    from hfkit.models import load_model
    from hfkit.ui import base_of

    lora = chat_runs[1]
    tok = load_tokenizer(str(lora))
    talk = conversation_for(str(lora), tok)
    base = load_model(base_of(lora))
    out = generate(base, tok, [talk.prompt([{"role": "user", "content": message}])], max_new_tokens=MAX,
                   **talk.generate_kwargs())[0][0]
    return talk.reply(out)


def pick(page, elem_id: str, option: str) -> None:
    """Choose in a Gradio dropdown (its options list opens at the end of the page), then close it."""
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).filter(visible=True).click()
    page.locator(f"#{elem_id} input").blur()
    page.wait_for_function(f"document.querySelector('#{elem_id} input').value === {json.dumps(option)}")
    page.wait_for_selector("[role=option]", state="hidden")


def test_the_ui_chats_side_by_side_and_opens_a_runs_loss_curve(ui, chat_runs):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    message = MEMO[2]["instruction"]
    want_chat, want_lora = (expected_chat(run, message)[0] for run in chat_runs)
    want_base = base_answer(chat_runs, message)
    assert want_chat == MEMO[2]["output"] and want_lora.strip()
    turns = "#{0} [data-testid=user], #{0} [data-testid=bot]"  # Gradio's chat bubbles

    def ask(page, a: str, b: str) -> tuple[list[str], list[str]]:
        page.click("#clear")
        pick(page, "model-a", a)
        pick(page, "model-b", b)
        page.fill("#prompt textarea", message)
        page.click("#send")
        page.wait_for_function(f"document.querySelectorAll('{turns.format('chat-a')}').length >= 2 && "
                               f"document.querySelectorAll('{turns.format('chat-b')}').length >= 2", timeout=120_000)
        return ([t.strip() for t in page.locator(turns.format("chat-a")).all_inner_texts()],
                [t.strip() for t in page.locator(turns.format("chat-b")).all_inner_texts()])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(ui)
            page.wait_for_selector("#prompt textarea", timeout=60_000)
            page.fill("#max-tokens input[type=number]", str(MAX))
            page.press("#max-tokens input[type=number]", "Enter")
            # two runs side by side, then a run beside its base (prompted through the run's format)
            assert ask(page, "chat", "lora") == ([message, want_chat], [message, want_lora.strip()])
            page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)
            assert ask(page, "lora", "base of lora") == ([message, want_lora.strip()], [message, want_base.strip()])

            page.get_by_role("tab", name="Runs").click()
            table = page.locator("#runs-table").inner_text()
            loss = json.loads((chat_runs[0] / "metrics.json").read_text())["train"]["train_loss"]
            assert "train_loss" in table and f"{round(loss, 4)}" in table
            pick(page, "run-select", "chat")
            page.wait_for_function("(() => { const i = document.querySelector('#loss-curve img'); "
                                   "return i && i.complete && i.naturalWidth > 0; })()", timeout=30_000)
            width = page.eval_on_selector("#loss-curve img", "i => i.naturalWidth")
            assert width > 100
            assert "recipe.yaml" in page.locator("#run-details").inner_text()
            page.screenshot(path=str(ARTIFACTS / "ui-runs.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "ui-chat.png").stat().st_size > 10_000


@pytest.mark.parametrize("extra, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 is not loopback"),
    (["--runs-dir", "/no/such/folder"], "--runs-dir: no such folder: /no/such/folder"),
])
def test_ui_refuses_bad_input_in_one_line(extra, message):
    env = {k: v for k, v in os.environ.items() if k != "HFKIT_API_KEY"}
    p = subprocess.run([sys.executable, "-m", "hfkit", "ui", *extra], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
