"""Scaling laws (hfkit.scaling): the fit recovers a known law from noisy losses, the planner's N and D
spend the budget and follow the default law's ~20 tokens per parameter, and `hfkit scaling` sweeps,
fits and plans end to end."""
import json

import numpy as np
import pytest

from hfkit.scaling import LAWS, Law, fit, plan


def test_the_fit_recovers_the_exponents_of_a_known_law_from_noisy_losses():
    true = Law(E=1.5, A=300.0, B=800.0, alpha=0.35, beta=0.30)
    rng = np.random.default_rng(0)
    n, d, loss = [], [], []
    for x in np.logspace(6, 9, 5):
        for y in np.logspace(8, 11, 5):
            n.append(x), d.append(y), loss.append(true.loss(x, y) * np.exp(rng.normal(0, 0.01)))  # 1% noise
    law, info = fit(n, d, loss)
    assert law.alpha == pytest.approx(0.35, abs=0.05) and law.beta == pytest.approx(0.30, abs=0.05)
    assert law.E == pytest.approx(1.5, abs=0.15)
    assert info["mean_relative_error"] < 0.01


def test_the_plan_spends_the_budget_and_the_default_law_gives_chinchillas_allocation():
    for c in (1e20, 1e22, 5.76e23, 1e25):
        p = plan(c, LAWS["besiroglu"])
        assert 6 * p["parameters"] * p["tokens"] == pytest.approx(c, rel=1e-9)
        assert 15 < p["tokens_per_parameter"] < 25  # ~20 tokens per parameter
        # optimal: a little more or fewer parameters at the same budget predicts a higher loss
        for f in (0.8, 1.25):
            n = p["parameters"] * f
            assert LAWS["besiroglu"].loss(n, c / (6 * n)) > p["loss"]
    chinchilla = plan(5.76e23, LAWS["besiroglu"])
    assert chinchilla["parameters"] == pytest.approx(70e9, rel=0.1) and chinchilla["tokens"] == pytest.approx(1.4e12, rel=0.1)
    assert plan(5.76e23, LAWS["hoffmann"])["parameters"] == pytest.approx(32e9, rel=0.1)


def test_sweep_overrides_turn_sizes_and_token_budgets_into_runs():
    from hfkit.scaling import sweep_overrides

    o = sweep_overrides(["64x2"], ["10k", "1.5M"], tokens_per_step=2048)
    assert "sweep.grid.size.64x2.model.hidden_size=64" in o and "sweep.grid.size.64x2.model.num_heads=2" in o
    assert "sweep.grid.tokens.10k.training.max_steps=5" in o and "sweep.grid.tokens.1.5M.training.max_steps=732" in o


def test_scaling_sweep_fit_and_plan_end_to_end(tmp_path):
    from hfkit.cli import main

    out = tmp_path / "sweep"
    common = [f"output_dir={out}", "data.sources.0.max_records=12", "tokenizer.vocab_size=300", "data.block_size=32",
              "per_device_train_batch_size=8", "--json"]
    assert main(["scaling", "sweep", "scaling_code", "--sizes", "32x1,48x1", "--tokens", "3k,6k,9k", *common]) == 0
    assert main(["scaling", "sweep", "scaling_code", "--sizes", "64x1", "--tokens", "9k", *common]) == 0  # appended
    rows = json.loads((out / "comparison.json").read_text())["runs"]
    assert len(rows) == 7
    for r in rows:
        m = json.loads((out / r["run"] / "metrics.json").read_text())
        assert r["non_embedding_parameters"] == m["non_embedding_parameters"] < m["parameters"]
        steps = round(int(r["tokens"][:-1]) * 1000 / 256)  # the budget in steps of 8 blocks of 32 tokens
        assert r["train_tokens"] == m["train"]["train_tokens"] == steps * 256
        assert r["validation_loss"] == m["eval_after"]["eval_loss"]
    assert main(["scaling", "fit", str(out), "--holdout", "64x1-9k", "--json"]) == 0
    report = json.loads((out / "scaling_fit.json").read_text())
    assert report["fit"]["points"] == 6
    held = [p for p in report["points"] if p["held_out"]]
    assert [p["run"] for p in held] == ["64x1-9k"]
    law = Law(**report["law"])
    assert held[0]["predicted"] == pytest.approx(law.loss(held[0]["N"], held[0]["D"]))
    from hfkit.outputs import is_hfkit_file

    assert is_hfkit_file(out / "scaling_fit.png")
    assert main(["scaling", "plan", "--flops", "1e12", "--fit", str(out / "scaling_fit.json"), "--json"]) == 0
