"""`hfkit serve`: the official `openai` client against a server started here, on loopback, for a chat run
(its chat template) and a LoRA adapter run (its own prompt format, its base loaded through peft)."""
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from test_sft import MEMO

openai = pytest.importorskip("openai")  # a dev dependency: installed by `make test`

MAX = 12  # tokens per answer (the adapter run's base has 64 positions)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(models, env_extra=None, command="serve", extra=(), path="/health"):
    """`hfkit serve` (or `hfkit ui`) on a free loopback port, once it answers: (process, port)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "hfkit", command, *map(str, models), *extra, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hfkit {command} exited: {proc.stderr.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return proc, port
        except urllib.error.HTTPError:  # up (an API key is asked for)
            return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"hfkit {command} did not start")


@pytest.fixture(scope="module")
def runs(chat_runs):
    return chat_runs


@pytest.fixture(scope="module")
def server(runs):
    proc, port = start(runs)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0), port
    proc.terminate()
    proc.wait(timeout=30)


def expected_chat(run, message):
    """What `hfkit chat` answers: the run's conversation (chat template or prompt format) and greedy
    `hfkit.inference.generate`, as run_chat calls them."""
    from hfkit.conversation import conversation_for
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.inference.generation import generate
    from hfkit.models import load_model

    model, tok = load_model(str(run)), load_tokenizer(str(run))
    talk = conversation_for(str(run), tok)
    out = generate(model, tok, [talk.prompt([{"role": "user", "content": message}])], max_new_tokens=MAX,
                   **talk.generate_kwargs())[0][0]
    return talk.reply(out), talk.description


def hfkit_generate(run, prompts, capsys):
    from hfkit.cli import main

    capsys.readouterr()
    assert main(["generate", "--model", str(run), *sum((["--prompt", p] for p in prompts), []),
                 "--max-new-tokens", str(MAX), "--json"]) == 0
    return [r["outputs"][0] for r in json.loads(capsys.readouterr().out)]


def test_models_lists_runs_by_folder_name(server):
    client, _ = server
    assert sorted(m.id for m in client.models.list()) == ["chat", "lora"]
    assert client.models.retrieve("lora").id == "lora"


def test_greedy_completions_equal_hfkit_generate_streamed_or_not(server, runs, capsys):
    client, _ = server
    prompts = [MEMO[1]["instruction"], "The file", "Say"]
    for name, run in zip(("chat", "lora"), runs):
        want = hfkit_generate(run, prompts, capsys)
        got = [client.completions.create(model=name, prompt=p, temperature=0, max_tokens=MAX).choices[0].text
               for p in prompts]
        assert got == want
        streamed = ["".join(c.choices[0].text for c in client.completions.create(
            model=name, prompt=p, temperature=0, max_tokens=MAX, stream=True)) for p in prompts]
        assert streamed == want


def test_chat_answers_equal_hfkit_chat_through_template_or_prompt_format(server, runs):
    client, _ = server
    for name, run in zip(("chat", "lora"), runs):
        for row in MEMO[:3]:
            want, how = expected_chat(run, row["instruction"])
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": row["instruction"]}],
                                               temperature=0, max_tokens=MAX)
            assert r.choices[0].message.content == want, how
            assert r.choices[0].message.role == "assistant"
            assert 0 < r.usage.completion_tokens <= MAX and r.usage.prompt_tokens > 5
            assert r.choices[0].finish_reason == ("length" if r.usage.completion_tokens == MAX else "stop")
            chunks = list(client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": row["instruction"]}], temperature=0,
                max_tokens=MAX, stream=True, stream_options={"include_usage": True}))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
            assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == r.choices[0].finish_reason
    # the chat run learnt its answers
    r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": MEMO[2]["instruction"]}],
                                       temperature=0, max_tokens=MAX)
    assert r.choices[0].message.content == MEMO[2]["output"]


def test_stop_strings_cut_the_answer_alike_streamed_or_not(server):
    client, _ = server
    msg = [{"role": "user", "content": MEMO[2]["instruction"]}]
    full = client.chat.completions.create(model="chat", messages=msg, temperature=0, max_tokens=MAX)
    text = full.choices[0].message.content
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = client.chat.completions.create(model="chat", messages=msg, temperature=0, max_tokens=MAX, stop=[stop])
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="chat", messages=msg, temperature=0, max_tokens=MAX, stop=[stop], stream=True))
    assert streamed == cut.choices[0].message.content


def raw_post(port, path, body: bytes):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server):
    client, port = server
    msg = [{"role": "user", "content": "hi"}]
    cases = [(dict(model="nope", messages=msg), 404, "model_not_found"),
             (dict(model="chat", messages=msg, max_tokens=100_000), 400, "context_length_exceeded"),
             (dict(model="chat", messages=msg, n=2), 400, None),
             (dict(model="chat", messages=msg, temperature=-1), 400, None),
             (dict(model="chat", messages=[{"role": "robot", "content": "x"}]), 400, None),
             (dict(model="chat", messages=[]), 400, None)]
    for kw, status, code in cases:
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(**kw)
        assert e.value.status_code == status, kw
        assert e.value.body["type"] == "invalid_request_error" and e.value.body["message"]
        assert e.value.body["code"] == code
    status, body = raw_post(port, "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = raw_post(port, "/v1/completions", b'["a list"]')
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = raw_post(port, "/v1/completions", json.dumps({"model": "chat", "prompt": 3}).encode())
    assert status == 400 and body["error"]["param"] == "prompt"
    with pytest.raises(openai.APIStatusError) as e:  # stream=True: checked before the stream starts
        client.chat.completions.create(model="chat", messages=msg, max_tokens=100_000, stream=True)
    assert e.value.status_code == 400
    r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": MEMO[2]["instruction"]}],
                                       temperature=0, max_tokens=MAX)
    assert r.choices[0].message.content == MEMO[2]["output"]


def test_a_bounded_load_of_50_requests_8_at_a_time_completes_without_errors(server):
    client, _ = server
    msgs = [[{"role": "user", "content": MEMO[i % len(MEMO)]["instruction"]}] for i in range(50)]
    want = {}
    for m in msgs[:len(MEMO)]:
        want[m[0]["content"]] = client.chat.completions.create(model="chat", messages=m, temperature=0,
                                                               max_tokens=MAX).choices[0].message.content

    def ask(m):
        return m[0]["content"], client.chat.completions.create(model="chat", messages=m, temperature=0,
                                                               max_tokens=MAX).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, msgs))
    assert len(answers) == 50 and all(a == want[q] for q, a in answers)


def test_an_api_key_is_required_when_set_and_never_printed(runs):
    key = "sk-test-" + "k" * 20
    proc, port = start(runs[:1], {"HFKIT_API_KEY": key})
    try:
        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        assert [m.id for m in good.models.list()] == ["chat"]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert key not in out + err


@pytest.mark.parametrize("extra, env, message", [
    (["--host", "0.0.0.0"], {}, "--host 0.0.0.0 is not loopback"),
    (["--host", "0.0.0.0", "--allow-remote"], {}, "needs an API key: set HFKIT_API_KEY"),
])
def test_a_host_beyond_loopback_needs_a_flag_and_a_key(extra, env, message, tmp_path):
    p = subprocess.run([sys.executable, "-m", "hfkit", "serve", str(tmp_path / "no-such-run"), *extra],
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in {**os.environ, **env}.items() if k != "HFKIT_API_KEY"})
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_two_runs_of_one_name_are_refused(tmp_path, runs):
    other = tmp_path / "chat"
    other.mkdir()
    p = subprocess.run([sys.executable, "-m", "hfkit", "serve", str(runs[0]), str(other)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "would both be served as model 'chat'" in p.stderr


def test_a_chat_run_end_to_end_pushed_dry_run_with_a_card_whose_chat_snippet_answers(runs, server, tmp_path):
    """Trained (the fixture), served and answered through the openai client (above), pushed with
    --dry-run: the card's loading and chat snippets, run in a fresh process on the folder, give the
    served answer."""
    import re
    import shutil

    client, _ = server
    run = tmp_path / "chat"
    shutil.copytree(runs[0], run)
    p = subprocess.run([sys.executable, "-m", "hfkit", "push", str(run), "--repo-id", "someone/tiny-chat", "--dry-run"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr
    card = (run / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 2 and "apply_chat_template" in blocks[1] and "hfkit serve" in card
    message = MEMO[2]["instruction"]
    code = (blocks[0] + blocks[1]).replace('"someone/tiny-chat"', repr(str(run))).replace('"Hello!"', repr(message))
    code = code.replace("max_new_tokens=64", f"max_new_tokens={MAX}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    served = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": message}],
                                            temperature=0, max_tokens=MAX).choices[0].message.content
    assert out.stdout.strip() == served == MEMO[2]["output"]


def test_a_cached_hub_id_is_served_under_its_id_offline(runs, tmp_path):
    """A model in the local Hub cache (laid out as the Hub's, `hfkit hub import`) served by its id with
    HF_HUB_OFFLINE=1; its chat template answers as the run folder it came from."""
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "hfkit", "hub", "import", str(runs[0]), "--repo-id", "acme/tiny-chat"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert p.returncode == 0, p.stderr
    proc, port = start(["acme/tiny-chat"], env)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["acme/tiny-chat"]
        assert client.models.retrieve("acme/tiny-chat").id == "acme/tiny-chat"
        r = client.chat.completions.create(model="acme/tiny-chat", temperature=0, max_tokens=MAX,
                                           messages=[{"role": "user", "content": MEMO[2]["instruction"]}])
        assert r.choices[0].message.content == expected_chat(runs[0], MEMO[2]["instruction"])[0] == MEMO[2]["output"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
