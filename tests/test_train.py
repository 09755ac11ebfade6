import json

import pytest
from safetensors.torch import load_file


def test_tiny_clm_learns_and_run_folder_is_complete(tiny_run):
    out, metrics = tiny_run
    for name in ("recipe.yaml", "model.safetensors", "config.json", "tokenizer.json", "metrics.json",
                 "log.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("pytorch_model*.bin"))  # weights only as safetensors
    assert load_file(out / "model.safetensors")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:2]) / 2 - 1.0  # training loss falls by over a nat
    before, after = metrics["eval_before"]["eval_perplexity"], metrics["eval_after"]["eval_perplexity"]
    assert after < before / 3  # validation perplexity falls by a large factor
    assert json.loads((out / "metrics.json").read_text())["eval_after"]["eval_perplexity"] == pytest.approx(after)
    # the resolved recipe is a complete, loadable recipe that reproduces this run's settings
    from hfkit.recipe import load_recipe

    r = load_recipe(out / "recipe.yaml")
    assert r.training["max_steps"] == 200 and r.model.hidden_size == 32
    # packing reports what it dropped, and the token counts add up
    tp = metrics["data"]["train_packing"]
    assert tp["blocks"] * tp["block_size"] + tp["dropped_tokens"] == tp["tokens"]
    # TensorBoard event files when the recipe asks for them
    assert list(out.rglob("events.out.tfevents.*"))


def test_llama_preset_builds_from_config():
    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.models import build_model
    from hfkit.models import ModelConfig

    tok = train_tokenizer(["some text here"] * 10, "char", 60)
    model = build_model(ModelConfig(architecture="llama", hidden_size=48, num_layers=2, num_heads=4,
                                        num_kv_heads=2), tok)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tok) and model.config.num_key_value_heads == 2
    assert model.config.intermediate_size == 128  # 8/3 * 48 rounded up to 64
    assert model.config.eos_token_id == tok.eos_token_id


def test_vocab_larger_than_model_is_rejected():
    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.errors import HfkitError
    from hfkit.models import build_model
    from hfkit.models import ModelConfig

    tok = train_tokenizer(["some text here"] * 10, "char", 60)
    with pytest.raises(HfkitError, match="smaller than the tokenizer's vocabulary"):
        build_model(ModelConfig(vocab_size=5), tok)


def test_continue_from_a_saved_model_uses_its_weights_and_tokenizer(tiny_run, tmp_path):
    import hfkit
    from conftest import TINY_MODEL

    run_dir, first = tiny_run
    metrics = hfkit.train("clm_pretrain", TINY_MODEL + [f"model.name_or_path={run_dir}", "max_steps=5",
                                                        f"output_dir={tmp_path / 'cont'}"], quiet=True)
    # same validation blocks, same weights: the new run starts where the first one ended
    assert metrics["eval_before"]["eval_loss"] == pytest.approx(first["eval_after"]["eval_loss"], rel=1e-5)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "cont").get_vocab() == AutoTokenizer.from_pretrained(run_dir).get_vocab()


def test_masked_lm_task_trains_a_bert_from_config(tmp_path):
    import hfkit
    from conftest import TINY_MODEL

    m = hfkit.train("clm_pretrain", TINY_MODEL + ["task=mlm", "model.architecture=bert", f"output_dir={tmp_path / 'mlm'}",
                                                  "max_steps=150", "learning_rate=2e-3"], quiet=True)
    assert m["eval_after"]["eval_loss"] < m["eval_before"]["eval_loss"] - 1.0
    from transformers import AutoModelForMaskedLM

    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm")).__name__ == "BertForMaskedLM"
    from hfkit.errors import HfkitError
    from hfkit.recipe import load_recipe

    with pytest.raises(HfkitError, match="does not fit task mlm"):
        load_recipe("clm_pretrain", ["task=mlm"])


def test_minilm_recipe_runs_offline_by_hub_id(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    import hfkit

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))  # empty cache: seeded from the package
    m = hfkit.train("minilm_mlm", [f"output_dir={tmp_path / 'run'}", "max_steps=4", "eval_steps=100",
                                   "per_device_train_batch_size=4", "data.validation_fraction=0.02"], quiet=True)
    p = m["data"]["parameters"]
    assert p["method"] == "selective" and 0 < p["trainable"] < p["total"] / 3  # 2 of 6 layers + head transform
    assert (tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "main").is_file()
    assert m["eval_after"]["eval_loss"] < m["eval_before"]["eval_loss"]


def test_random_init_twin_takes_the_checkpoints_config_and_tokenizer_but_not_its_weights(tiny_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    import hfkit
    from conftest import TINY_MODEL

    run_dir, _ = tiny_run
    out = tmp_path / "twin"
    hfkit.train("clm_pretrain", TINY_MODEL + [f"model.name_or_path={run_dir}", "model.random_init=true",
                                              f"output_dir={out}", "max_steps=1", "learning_rate=1e-12"], quiet=True)
    a, b = json.loads((run_dir / "config.json").read_text()), json.loads((out / "config.json").read_text())
    for k in ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions"):
        assert a[k] == b[k]
    assert (out / "tokenizer.json").read_text() == (run_dir / "tokenizer.json").read_text()
    wa, wb = load_file(run_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert wa.keys() == wb.keys() and not any(torch.allclose(wa[k], wb[k]) for k in wa if wa[k].dim() == 2)
    assert json.loads((out / ".hfkit.json").read_text())["base_model"] is None  # no pretrained base to credit


def test_report_to_trackio_logs_the_runs_metrics_offline_under_the_runs_name(tmp_path):
    """`report_to: [trackio]` (Hugging Face's local-first tracker, through transformers' TrackioCallback):
    the run's logged losses land in trackio's local store, offline, under the run folder's name."""
    import os
    import subprocess
    import sys

    pytest.importorskip("trackio")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRACKIO_DIR": str(tmp_path / "trackio")}
    out = tmp_path / "tracked-run"
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", "model.hidden_size=32",
                        "model.num_layers=1", "model.num_heads=2", "tokenizer.vocab_size=300", "max_steps=10",
                        "logging_steps=5", "eval_steps=5", f"output_dir={out}", "report_to=[trackio]",
                        "project=hfkit-test"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    read = ("import json; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps({'runs': S.get_runs('hfkit-test'), 'logs': S.get_logs('hfkit-test', 'tracked-run')}))")
    got = json.loads(subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, env=env,
                                    check=True).stdout)
    assert got["runs"] == ["tracked-run"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    want = [(r["step"], r["loss"]) for r in logged if "loss" in r]
    tracked = [(r["train/global_step"], r["train/loss"]) for r in got["logs"] if "train/loss" in r]
    assert len(want) == 2 and [s for s, _ in tracked] == [s for s, _ in want]
    assert [v for _, v in tracked] == pytest.approx([v for _, v in want])
    assert [r["eval/loss"] for r in got["logs"] if "eval/loss" in r] == pytest.approx(
        [r["eval_loss"] for r in logged if "eval_loss" in r])
