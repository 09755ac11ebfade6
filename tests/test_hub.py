"""`hfkit push` against a loopback HTTP server that answers the Hub API calls huggingface_hub makes."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hfkit.cli import main

TOKEN = "hf_test_SECRET_token_123"


class FakeHub:
    """Repo create, branch create, card validation, preupload (all files 'regular') and NDJSON commit."""

    def __init__(self):
        self.requests, self.files, self.repos, self.branches = [], {}, [], []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                hub.requests.append(("GET", self.path, dict(self.headers)))
                self._send(404, {"error": "not found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                hub.requests.append(("POST", self.path, dict(self.headers)))
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    hub.repos.append(req)
                    return self._send(200, {"url": f"{hub.url}/{req.get('organization')}/{req['name']}"})
                if "/branch/" in self.path:
                    hub.branches.append(self.path.rsplit("/", 1)[1])
                    return self._send(200, {})
                if self.path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._send(200, {"commitUrl": f"{hub.url}/x/y/commit/{'a' * 40}", "commitOid": "a" * 40})
                self._send(404, {"error": "unknown"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as c

    h = FakeHub()
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    yield h
    h.server.shutdown()


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    import hfkit
    from conftest import TINY_MODEL

    root = tmp_path_factory.mktemp("push")
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={root / 'base'}", "max_steps=5"], quiet=True)
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={root / 'lora'}", "max_steps=5",
                                              f"model.name_or_path={root / 'base'}", "adapter.method=lora"], quiet=True)
    return root


def _card_meta(card: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard(card).data.to_dict()


def test_push_uploads_the_run_and_a_card(hub, adapter_run, monkeypatch, capsys):
    from huggingface_hub import ModelCard

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = adapter_run / "lora"
    assert main(["push", str(run), "--repo-id", "acme/tiny-lora", "--private", "--revision", "dev", "--json",
                 "--base-model", "acme/tiny-base"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err  # never printed
    assert hub.repos == [{"name": "tiny-lora", "organization": "acme", "visibility": "private"}]
    assert hub.branches == ["dev"]
    assert all(h.get("authorization", h.get("Authorization")) == f"Bearer {TOKEN}" for _, _, h in hub.requests)
    assert any("/commit/dev" in p for _, p, _ in hub.requests)
    assert set(hub.files) == {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                              "tokenizer_config.json", "recipe.yaml", "metrics.json", "log.jsonl", "loss.png", "README.md"}
    assert hub.files["adapter_model.safetensors"] == (run / "adapter_model.safetensors").read_bytes()
    # the uploaded adapter points at the named Hub base, not at this machine's folder
    assert json.loads(hub.files["adapter_config.json"])["base_model_name_or_path"] == "acme/tiny-base"
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == str(adapter_run / "base")
    card = ModelCard(hub.files["README.md"].decode())  # huggingface_hub's own parser
    meta = card.data.to_dict()
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert meta["base_model"] == "acme/tiny-base" and {"hfkit", "clm", "lora"} <= set(meta["tags"])
    results = {r.metric_type: r for r in card.data.eval_results}  # model-index, as the Hub shows it
    metrics = json.loads((run / "metrics.json").read_text())
    assert results["perplexity"].metric_value == pytest.approx(metrics["eval_after"]["eval_perplexity"], rel=1e-3)
    assert results["loss"].dataset_split == "validation" and results["perplexity"].task_type == "text-generation"
    assert "AutoPeftModelForCausalLM.from_pretrained(\"acme/tiny-lora\")" in card.content


def test_push_without_token_uploads_nothing(hub, adapter_run, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rc = main(["push", str(adapter_run / "lora"), "--repo-id", "acme/x", "--base-model", "acme/tiny-base"])
    err = capsys.readouterr().err
    assert rc == 2 and "no Hugging Face token" in err and err.count("\n") == 1
    assert hub.requests == []


def test_an_adapter_from_a_local_base_is_not_pushed_without_the_bases_hub_id(hub, adapter_run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc = main(["push", str(adapter_run / "lora"), "--repo-id", "acme/x"])
    err = capsys.readouterr().err
    assert rc == 2 and "--base-model OWNER/NAME" in err and err.count("\n") == 1
    assert hub.requests == []


def test_dry_run_lists_artefacts_with_sizes_writes_the_card_and_never_a_stray_or_outside_file(hub, adapter_run,
                                                                                             tmp_path, capsys):
    import shutil

    run = tmp_path / "base"
    shutil.copytree(adapter_run / "base", run, symlinks=True)
    (run / "notes.txt").write_text("private notes")  # a stray file: not an artefact
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run folder")
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").symlink_to(secret)  # an artefact's name, leading out of the folder
    assert main(["push", str(run), "--repo-id", "acme/base", "--dry-run", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    listed = {f["path"]: f["bytes"] for f in res["files"]}
    assert res["dry_run"] and listed["model.safetensors"] == (run / "model.safetensors").stat().st_size
    assert "README.md" in listed and not {"log.jsonl", "notes.txt", "training_args.bin", ".hfkit.json"} & set(listed)
    assert not any(p.startswith("checkpoint") for p in listed)
    assert any(x.startswith("log.jsonl (a symlink out of the run folder") for x in res["left_out"])
    card = (run / "README.md").read_text()  # written to disk for review
    meta = _card_meta(card)
    assert meta["pipeline_tag"] == "text-generation" and "base_model" not in meta  # trained from scratch
    assert hub.requests == []
    (run / "README.md").write_text("# my own notes\n")  # a README hfkit did not write is not replaced
    assert main(["push", str(run), "--repo-id", "acme/base", "--dry-run"]) == 2
    assert "was not written by hfkit" in capsys.readouterr().err
    assert (run / "README.md").read_text() == "# my own notes\n"
    assert main(["push", str(adapter_run), "--repo-id", "acme/base"]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err


def _snippet(card: str) -> str:
    return card.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_cards_snippet_loads_the_pushed_adapter_when_the_named_base_is_on_the_hub(hub, adapter_run, tmp_path,
                                                                                       monkeypatch, capsys):
    """Push an adapter trained from a local folder, naming the base's Hub id; lay the pushed files and
    the base out as the Hub cache would hold them; the card's own snippet, run in a fresh process
    offline, loads the adapter on that base and gives the run's logits."""
    import subprocess
    import sys

    import torch

    from hfkit.hub import import_to_cache
    from hfkit.models import load_model

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(adapter_run / "lora"), "--repo-id", "acme/tiny-lora", "--base-model",
                 "acme/tiny-base"]) == 0
    capsys.readouterr()
    pushed = tmp_path / "pushed"
    for name, data in hub.files.items():
        (pushed / name).parent.mkdir(parents=True, exist_ok=True)
        (pushed / name).write_bytes(data)
    cache = tmp_path / "hub"
    import_to_cache(adapter_run / "base", "acme/tiny-base", cache)
    import_to_cache(pushed, "acme/tiny-lora", cache)
    ids = [[5, 17, 42, 7, 99, 3]]
    code = _snippet(hub.files["README.md"].decode()) + (
        "import json, torch\n"
        f"print(json.dumps(model(input_ids=torch.tensor({ids})).logits[0, -1, :8].tolist()))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    got = torch.tensor(json.loads(p.stdout.strip().splitlines()[-1]))
    with torch.no_grad():
        want = load_model(str(adapter_run / "lora")).eval()(input_ids=torch.tensor(ids)).logits[0, -1, :8]
    assert torch.allclose(got, want, atol=1e-5)


def test_a_masked_lm_card_says_fill_mask_and_its_snippet_loads(tmp_path, capsys):
    import subprocess
    import sys

    import hfkit
    from conftest import TINY_MODEL
    from hfkit.hub import import_to_cache

    run = tmp_path / "mlm"
    hfkit.train("clm_pretrain", TINY_MODEL + ["task=mlm", "model.architecture=bert", f"output_dir={run}",
                                              "max_steps=3"], quiet=True)
    assert main(["push", str(run), "--repo-id", "acme/tiny-bert", "--dry-run"]) == 0
    capsys.readouterr()
    card = (run / "README.md").read_text()
    assert _card_meta(card)["pipeline_tag"] == "fill-mask" and "AutoModelForMaskedLM" in card
    cache = tmp_path / "hub"
    import_to_cache(run, "acme/tiny-bert", cache)
    code = _snippet(card) + "print(type(model).__name__, len(pipe('The <mask> statement')))\n"
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0 and p.stdout.split()[-2:] == ["BertForMaskedLM", "5"], p.stderr[-3000:]
