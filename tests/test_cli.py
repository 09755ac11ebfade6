"""The command line: shipped recipes, the eval/generate/tokenizer commands, and bad input -> exit 2."""
import json
import subprocess
import sys

import pytest

from hfkit.cli import main

BASE = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "max_steps=2"]


def run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  hidden_size: 4\n   num_layers: [\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "a fine document"}\n\n{"text": "x" "y"}\n')
    (tmp_path / "body.jsonl").write_text('{"body": "a fine document"}\n')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "not_a_model").mkdir()
    return tmp_path


BAD_TRAIN = [
    (["{tmp}/bad.yaml"], "bad.yaml: invalid YAML at line 3"),
    (["clm_pretrain", "model.hidden_sise=3"], "unknown recipe key 'model.hidden_sise'"),
    (["clm_pretrain", "max_steps=many"], "recipe key 'training.max_steps' expects int, got str 'many'"),
    (["clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={tmp}/missing.jsonl"],
     "no such file or folder: {tmp}/missing.jsonl"),
    (["clm_pretrain", "data.sources.0.kind=text", "data.sources.0.path={tmp}/nodir"], "no such file or folder"),
    (["clm_pretrain", "data.sources.0.kind=text", "data.sources.0.path={tmp}/empty_dir"], "no text files found"),
    (["clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={tmp}/bad.jsonl"],
     "bad.jsonl line 3: invalid JSON"),
    (["clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={tmp}/body.jsonl"],
     "text field 'text' not found (columns: body)"),
    (["clm_pretrain", "data.sources.0.kind=text", "data.sources.0.path={tmp}/latin1.txt"], "latin1.txt: not UTF-8"),
    (["clm_pretrain", "data.min_chars=1000000"], "no documents left after filtering"),
    (["clm_pretrain", "data.block_size=512"], "exceeds the model's maximum positions"),
    (["clm_pretrain", "model.vocab_size=100", "tokenizer.vocab_size=300"], "smaller than the tokenizer's vocabulary"),
    (["clm_pretrain", "tokenizer.path={tmp}/no_tok"], "recipe key 'tokenizer.path': no such folder"),
    (["clm_pretrain", "max_steps"], "is not of the form key=value"),
    (["no_such_recipe"], "recipe file not found: no_such_recipe"),
]


@pytest.mark.parametrize("argv, message", BAD_TRAIN, ids=[m[:30] for _, m in BAD_TRAIN])
def test_bad_training_input_exits_2_with_one_line(argv, message, files, capsys):
    out_dir = files / "run_out"
    argv = [a.format(tmp=files) for a in argv]
    rc, out, err = run(["train", *argv, *BASE[:3], f"output_dir={out_dir}"], capsys)
    assert rc == 2
    assert err.startswith("hfkit: error: ") and err.count("\n") == 1, err
    assert message.format(tmp=files) in err
    assert "Traceback" not in err
    assert not out_dir.exists()  # nothing half-written


BAD_OTHER = [
    (["eval", "perplexity", "--model", "{tmp}/not_a_model", "--data", "default"], "has no config.json"),
    (["eval", "perplexity", "--model", "{tmp}/bad.yaml", "--data", "default"], "is a file"),
    (["eval", "perplexity", "--model", "{tmp}/x", "--data", "{tmp}/nope.txt"], "data source not found"),
    (["generate", "--model", "{tmp}/not_a_model", "--prompts-file", "{tmp}/none.txt"], "no such file"),
    (["generate", "--model", "{tmp}/x"], "one of the arguments --prompt --prompts-file is required"),
    (["tokenizer", "train", "--kind", "bpe", "--data", "{tmp}/bad.jsonl", "--output", "{tmp}/tok"], "line 3"),
    (["tokenizer", "train", "--kind", "sentencepiece", "--output", "{tmp}/tok"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD_OTHER, ids=[m[:30] for _, m in BAD_OTHER])
def test_bad_input_to_other_commands(argv, message, files, capsys):
    rc, out, err = run([a.format(tmp=files) for a in argv], capsys)
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not (files / "tok").exists()


def test_real_entry_point_exits_2_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", "model.nope=1"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "unknown recipe key 'model.nope'" in p.stderr


def test_recipes_lists_shipped_recipes(capsys):
    rc, out, _ = run(["recipes", "--json"], capsys)
    assert rc == 0 and "clm_pretrain" in json.loads(out)
    listed = json.loads(out)["clm_pretrain"]
    assert listed["description"].startswith("Pretrain") and listed["task"] == "clm"
    assert listed["path"].endswith("recipes/clm_pretrain.yaml")


def test_eval_and_generate_commands(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    rc, out, _ = run(["eval", "perplexity", "--model", str(run_dir), "--data", "default", "--split", "validation",
                      "--block-size", "64", "--stride", "32", "--json", "--output", str(tmp_path / "ppl.json")], capsys)
    assert rc == 0
    res = json.loads(out)
    assert res == json.loads((tmp_path / "ppl.json").read_text())
    # the same report shape as every eval: metrics, settings, fingerprints; named after its settings
    assert res["kind"] == "perplexity" and res["settings"]["kind"] == "corpus" and res["settings"]["stride"] == 32
    assert 1 < res["metrics"]["perplexity"] < 400 and res["name"] == "perplexity_default_validation_block64_stride32"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prefix": "The if", "continuation": " statement"}\n{"prefix": "", "continuation": "Hello"}\n')
    rc, out, _ = run(["eval", "perplexity", "--model", str(run_dir), "--data", str(pairs),
                      "--continuation-field", "continuation", "--json"], capsys)
    cond = json.loads(out)
    assert rc == 0 and cond["settings"]["kind"] == "conditional" and cond["settings"]["examples"] == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The if statement\nA function\n")
    rc, out, _ = run(["generate", "--model", str(run_dir), "--prompts-file", str(prompts), "--json",
                      "--max-new-tokens", "5", "--num-beams", "2", "--num-return-sequences", "2"], capsys)
    gen = json.loads(out)
    assert rc == 0 and [g["prompt"] for g in gen] == ["The if statement", "A function"]
    assert all(len(g["outputs"]) == 2 for g in gen)


def test_tokenizer_train_command(tmp_path, capsys):
    rc, out, _ = run(["tokenizer", "train", "--kind", "wordpiece", "--vocab-size", "600",
                      "--output", str(tmp_path / "tok"), "--json"], capsys)
    assert rc == 0 and json.loads(out)["vocab_size"] == 600
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.mask_token == "<mask>" and len(tok) == 600


def test_doctor_reports_the_stack_but_never_the_token(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_doctor_SECRET_value")
    rc, out, err = run(["doctor", "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["hub_token"] == "present" and "hf_doctor_SECRET_value" not in out + err
    import transformers

    assert info["transformers"] == transformers.__version__ and info["hub_offline"] is True
    monkeypatch.delenv("HF_TOKEN")
    assert json.loads(run(["doctor", "--json"], capsys)[1])["hub_token"] == "absent"


def test_train_json_stdout_is_only_json(tmp_path):
    from conftest import TINY_MODEL

    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *TINY_MODEL, "max_steps=5",
                        f"output_dir={tmp_path / 'run'}", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads(p.stdout)  # Trainer's log lines and native progress output went to stderr
    assert m["world_size"] == 1 and m["train"]["train_loss"] > 0
    assert "'loss'" in p.stderr or "train_runtime" in p.stderr
