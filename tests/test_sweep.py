"""Sweep recipes (hfkit.sweep): every combination of the grid trains once, the comparison table is
each run's own metrics, finished runs are reused, and every run is checked before the first trains."""
import json
import math

import pytest

from conftest import TINY_MODEL

SWEEP = """\
base: clm_pretrain
sweep:
  grid:
    tokenizer:
      char: {tokenizer.kind: char}
      bpe: {tokenizer.kind: bpe}
    model:
      unigram: {model.architecture: ngram, model.extra: {order: 1}}
      bigram: {model: {architecture: bigram}}
  baseline: {model: unigram}
"""
RUNS = ["char-unigram", "char-bigram", "bpe-unigram", "bpe-bigram"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import hfkit

    d = tmp_path_factory.mktemp("sweep")
    (d / "sweep.yaml").write_text(SWEEP)
    argv = TINY_MODEL + [f"output_dir={d}/out", "max_steps=12", "learning_rate=3e-2"]
    report = hfkit.train(str(d / "sweep.yaml"), argv, quiet=True)
    return d, argv, report


def test_every_combination_trains_once_and_the_table_is_each_runs_own_metrics(sweep):
    d, _, report = sweep
    assert [r["run"] for r in report["runs"]] == RUNS
    assert json.loads((d / "out" / "comparison.json").read_text())["runs"] == report["runs"]
    ppl = {}
    for r in report["runs"]:
        m = json.loads((d / "out" / r["run"] / "metrics.json").read_text())
        after = m["eval_after"]
        assert r["validation_perplexity"] == after["eval_perplexity"] == pytest.approx(math.exp(after["eval_loss"]))
        cpt = m["data"]["validation_chars_per_token"]
        assert r["bits_per_char"] == pytest.approx(after["eval_loss"] / math.log(2) / cpt, rel=1e-3)
        assert r["parameters"] == m["parameters"]
        ppl[r["run"]] = r["validation_perplexity"]
        assert m["train"]["train_tokens"] > 0 and r["tokens_per_second"] > 0
    for tok in ("char", "bpe"):
        base, row = (next(r for r in report["runs"] if r["run"] == f"{tok}-{m}") for m in ("unigram", "bigram"))
        assert base["vs_baseline"] == 1.0 and base["beats_baseline"] is None
        assert row["baseline"] == f"{tok}-unigram"
        assert row["vs_baseline"] == pytest.approx(ppl[f"{tok}-unigram"] / ppl[f"{tok}-bigram"])
        assert row["beats_baseline"] == (ppl[f"{tok}-bigram"] < ppl[f"{tok}-unigram"])
    assert (d / "out" / "comparison.md").read_text().count("\n| ") == len(RUNS)
    from hfkit.outputs import is_hfkit_file

    assert is_hfkit_file(d / "out" / "comparison.png")


def test_a_character_tokenizers_chars_per_token_is_its_share_of_non_special_tokens(sweep):
    """bits/char = loss / ln 2 / (characters per scored token): for a character tokenizer, every scored
    token but the special ones (document ends) is exactly one character."""
    from hfkit.recipe import load_recipe
    from hfkit.job import prepare_data

    d, argv, _ = sweep
    recipe = load_recipe(d / "out" / "char-bigram" / "recipe.yaml")
    tok, prepared = prepare_data(recipe)
    special = set(tok.all_special_ids)
    scored = [t for b in prepared.validation["input_ids"] for t in b[1:]]
    expected = sum(t not in special for t in scored) / len(scored)
    assert 0.9 < expected < 1.0  # the corpus's document ends are in there
    assert prepared.chars_per_token == pytest.approx(expected, abs=1e-12)


def test_running_again_reuses_every_finished_run_and_a_changed_run_is_refused_before_any_training(sweep):
    import hfkit
    from hfkit.errors import HfkitError

    d, argv, report = sweep
    stamps = {r: (d / "out" / r / "metrics.json").stat().st_mtime_ns for r in RUNS}
    again = hfkit.train(str(d / "sweep.yaml"), argv, quiet=True)
    assert again["runs"] == report["runs"]
    assert {r: (d / "out" / r / "metrics.json").stat().st_mtime_ns for r in RUNS} == stamps  # nothing retrained
    changed = r"sweep run 'char-bigram': .* holds a run of another recipe \(training.weight_decay: 0.1 there, 0.5 now\)"
    with pytest.raises(HfkitError, match=changed):
        hfkit.train(str(d / "sweep.yaml"), argv + ["sweep.grid.model.bigram.training.weight_decay=0.5"], quiet=True)
    assert {r: (d / "out" / r / "metrics.json").stat().st_mtime_ns for r in RUNS} == stamps


def test_a_run_folder_is_the_run_recipe_of_its_combination(sweep):
    from hfkit.recipe import load_recipe

    d, _, _ = sweep
    r = load_recipe(d / "out" / "bpe-unigram" / "recipe.yaml")
    assert (r.tokenizer.kind, r.model.architecture, r.model.extra, r.training["max_steps"]) == ("bpe", "ngram",
                                                                                                 {"order": 1}, 12)
    assert r.training["output_dir"] == str(d / "out" / "bpe-unigram")


def test_training_reports_the_tokens_it_trained_on(tiny_run):
    """Packed blocks have no padding: tokens = steps x batch x block size, exactly."""
    _, metrics = tiny_run
    assert metrics["train"]["train_tokens"] == 200 * 16 * 32
    assert metrics["train"]["train_tokens_per_second"] > 0
