"""`hfkit push` against a loopback HTTP server that answers the Hub API calls huggingface_hub makes."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

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


def test_push_uploads_the_run_and_a_card(hub, adapter_run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = adapter_run / "lora"
    assert main(["push", str(run), "--repo-id", "acme/tiny-lora", "--private", "--revision", "dev", "--json"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err  # never printed
    assert hub.repos == [{"name": "tiny-lora", "organization": "acme", "visibility": "private"}]
    assert hub.branches == ["dev"]
    assert all(h.get("authorization", h.get("Authorization")) == f"Bearer {TOKEN}" for _, _, h in hub.requests)
    assert any("/commit/dev" in p for _, p, _ in hub.requests)
    assert set(hub.files) == {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                              "tokenizer_config.json", "recipe.yaml", "metrics.json", "log.jsonl", "loss.png", "README.md"}
    assert "training_args.bin" not in hub.files and not any(f.startswith("checkpoint") for f in hub.files)
    assert hub.files["adapter_model.safetensors"] == (run / "adapter_model.safetensors").read_bytes()
    card = hub.files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"hfkit", "clm", "lora"} <= set(meta["tags"]) and "perplexity" in meta["metrics"]
    assert "AutoPeftModelForCausalLM.from_pretrained(\"acme/tiny-lora\")" in card
    assert "| validation perplexity |" in card


def test_push_without_token_uploads_nothing(hub, adapter_run, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rc = main(["push", str(adapter_run / "lora"), "--repo-id", "acme/x"])
    err = capsys.readouterr().err
    assert rc == 2 and "no Hugging Face token" in err and err.count("\n") == 1
    assert hub.requests == []


def test_push_dry_run_and_bad_folder(hub, adapter_run, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", str(adapter_run / "base"), "--repo-id", "acme/base", "--dry-run", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["dry_run"] and "model.safetensors" in listing["files"] and "README.md" in listing["files"]
    assert hub.requests == []
    assert main(["push", str(adapter_run), "--repo-id", "acme/base"]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
