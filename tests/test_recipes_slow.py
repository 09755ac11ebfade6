"""The shipped recipes as a user runs them (long: `make test-slow`, not in CI)."""
import json

import pytest

from hfkit.cli import main


@pytest.mark.slow
def test_clm_pretrain_recipe_learns(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "clm_pretrain", f"output_dir={out}", "max_steps=300", "eval_steps=100",
                 "save_steps=100", "--json"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_after"]["eval_perplexity"] < m["eval_before"]["eval_perplexity"] / 10
    assert len(m["samples"]) == 3 and all(s["outputs"][0] for s in m["samples"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe, key", [("mlm_pretrain", "eval_mlm_perplexity"), ("t5_span_pretrain", "eval_perplexity"),
                                         ("bart_denoise_pretrain", "eval_perplexity")])
def test_pretraining_recipes_learn(recipe, key, tmp_path):
    out = tmp_path / recipe
    assert main(["train", recipe, f"output_dir={out}", "max_steps=150", "eval_steps=150", "save_steps=150",
                 "--json"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_after"][key] < m["eval_before"][key] / 5


@pytest.mark.slow
@pytest.mark.parametrize("recipe, key, floor", [("classify_language", "eval_accuracy", 75), ("pair_match", "eval_accuracy", 80),
                                                ("code_tokens", "eval_f1", 95), ("pydoc_qa_extractive", "eval_f1", 35)])
def test_task_head_recipes_learn_as_shipped(recipe, key, floor, tmp_path):
    """The real MiniLM on the built-in labelled sets, as shipped: held-out scores far above the new head's."""
    out = tmp_path / recipe
    assert main(["train", recipe, f"output_dir={out}", "--json"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_after"][key] > floor and m["eval_after"][key] > m["eval_before"][key] + 20


@pytest.mark.slow
def test_compare_lms_as_shipped_ranks_every_model_against_the_unigram_floor(tmp_path):
    """The whole comparison (22 runs, ~12 minutes on 2 cores): every model but the context average
    beats its tokenizer's unigram model clearly, and bits per character put both tokenizers on one scale."""
    out = tmp_path / "compare"
    assert main(["train", "compare_lms", f"output_dir={out}", "--json"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "comparison.json").read_text())["runs"]}
    assert len(rows) == 22
    for name, r in rows.items():
        if not name.endswith(("unigram", "context_average")):
            assert r["vs_baseline"] > 1.5, name
    for tok in ("char", "bpe"):
        assert rows[f"{tok}-kn5"]["bits_per_char"] < rows[f"{tok}-unigram"]["bits_per_char"] - 1
