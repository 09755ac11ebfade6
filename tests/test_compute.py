"""Training cost (hfkit.training.compute): FLOPs per token against hand counts, and every run's
FLOPs, FLOP/s and utilisation consistent with its tokens and time."""
import json

import pytest
import torch


def test_gpt2_flops_per_token_equal_a_hand_count():
    from transformers import GPT2Config, GPT2LMHeadModel

    from hfkit.training.compute import flops_per_token

    d, layers, heads, vocab, T = 64, 3, 4, 100, 32
    model = GPT2LMHeadModel(GPT2Config(n_embd=d, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=T))
    # per block: 2 layer norms (2d each), qkv (d x 3d + 3d), attention out (d x d + d), MLP (d x 4d + 4d, 4d x d + d)
    per_block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    n = layers * per_block + 2 * d  # + the final layer norm; token/position tables: not counted
    head = vocab * d  # the output layer: the token table itself (tied), still one matmul per token
    assert flops_per_token(model, T) == 6 * (n + head) + 12 * layers * d * T
    assert flops_per_token(model, T, reference_forwards=1) == 8 * (n + head) + 16 * layers * d * T  # + DPO's reference


def test_an_untied_output_head_counts_and_a_classic_lm_has_no_attention_term():
    from transformers import LlamaConfig, LlamaForCausalLM

    from hfkit.training.compute import flops_per_token, non_embedding_parameters

    d, inter, layers, vocab = 32, 96, 2, 50
    model = LlamaForCausalLM(LlamaConfig(hidden_size=d, intermediate_size=inter, num_hidden_layers=layers,
                                         num_attention_heads=4, num_key_value_heads=4, vocab_size=vocab,
                                         tie_word_embeddings=False))
    n = layers * (4 * d * d + 3 * d * inter + 2 * d) + d + vocab * d  # q,k,v,o; gate, up, down; 2 norms; final norm; head
    assert non_embedding_parameters(model) == n
    assert flops_per_token(model, 16) == 6 * n + 12 * layers * d * 16

    from hfkit.models import ModelConfig, model_config

    class Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return 40

    from transformers import AutoModelForCausalLM

    lstm = AutoModelForCausalLM.from_config(model_config(ModelConfig(architecture="lstm", hidden_size=16), Tok()))
    total = sum(p.numel() for p in lstm.parameters())
    assert flops_per_token(lstm, 128) == 6 * (total - 40 * 16)  # everything but the embedding table, no attention


def test_a_runs_flops_and_utilisation_follow_from_its_tokens_time_and_the_peak(tiny_run):
    from transformers import AutoModelForCausalLM

    from hfkit.training.compute import flops_per_token, peak_flops

    out, metrics = tiny_run
    t = metrics["train"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert t["train_flops_per_token"] == flops_per_token(model, 32)
    assert t["train_flops"] == t["train_flops_per_token"] * t["train_tokens"]
    seconds = t["train_tokens"] / t["train_tokens_per_second"]
    assert t["train_flops_per_second"] == pytest.approx(t["train_flops"] / seconds, rel=1e-3)
    assert t["utilisation"] == pytest.approx(t["train_flops_per_second"] / t["peak_flops_per_second"])
    assert 0 < t["utilisation"] < 1
    dtype = "bfloat16" if metrics["precision"].startswith("bf16") else "float32"  # the peak of what the run computes in
    assert peak_flops(dtype) == (t["peak_flops_per_second"], "cached measurement")  # measured once, then cached
    logged = [line for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert logged and all('"flops"' in line and '"utilisation"' in line for line in logged)


def test_the_measured_peak_is_a_matmul_rate():
    from hfkit.training.compute import measure_peak

    rate = measure_peak("float32", size=256, seconds=0.2)
    a = torch.randn(256, 256)
    import time

    t0 = time.perf_counter()
    for _ in range(20):
        a @ a
    plain = 20 * 2 * 256 ** 3 / (time.perf_counter() - t0)
    assert rate >= 0.5 * plain  # the best of its timings is no slower than an average one, give or take noise


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_match_torchs_flop_counter_tied_or_not(tied):
    """torch's FlopCounterMode counts every matmul of a forward and backward pass (not bias adds or
    norms): hfkit's 6N + 12LHQT per token is within 2% of it, for tied and untied output layers alike."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import GPT2Config, GPT2LMHeadModel

    from hfkit.training.compute import flops_per_token

    d, layers, heads, vocab, T, batch = 128, 2, 4, 1000, 64, 2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=d, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=T,
                                       tie_word_embeddings=tied))
    model.config._attn_implementation = "eager"  # the counter sees the attention matmuls one by one
    ids = torch.randint(0, vocab, (batch, T))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    measured = counter.get_total_flops() / (batch * T)
    assert flops_per_token(model, T) == pytest.approx(measured, rel=0.02)


def test_bf16_auto_is_decided_by_a_cached_probe_of_the_runs_model_on_a_bf16_cpu(monkeypatch, tmp_path):
    """On a CPU with bf16 arithmetic (faked here: this machine may have none), `bf16: auto` times the
    run's own model in fp32 and under bf16 autocast and takes bf16 only when it is >= 5% faster; the
    probe leaves weights, gradients and random state alone, is cached, and metrics.json says what it
    measured."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    import hfkit
    from hfkit.training import precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: "amx_bf16")
    monkeypatch.setattr(precision, "_cache_path", lambda: tmp_path / "bf16_probe.json")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=2,
                                                        n_positions=64)).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    use, why, measured = precision.decide(model, 4, 32)
    assert torch.equal(state, torch.random.get_rng_state()) and not model.training
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert measured["source"] == "probe" and measured["fp32_step_s"] > 0 and measured["bf16_step_s"] > 0
    assert measured["bf16_speedup"] == round(measured["fp32_step_s"] / measured["bf16_step_s"], 3)
    assert use == (measured["bf16_speedup"] >= precision.GAIN) and measured["chosen"] == ("bf16" if use else "fp32")
    cache = json.loads((tmp_path / "bf16_probe.json").read_text())
    assert list(cache) == [precision.probe_key(model, 4, 32)]
    again = precision.decide(model, 4, 32)
    assert again[0] == use and again[2]["source"] == "cached probe" and "cached probe" in again[1]
    # through a run: the choice reaches TrainingArguments and metrics.json
    from conftest import TINY_MODEL

    metrics = hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={tmp_path / 'run'}", "max_steps=2"], quiet=True)
    got = metrics["bf16_auto"]
    assert got["measured"]["source"] == "probe" and got["use"] == (got["measured"]["bf16_speedup"] >= precision.GAIN)
    assert metrics["precision"].startswith("bf16 autocast" if got["use"] else "fp32") and "probe" in metrics["precision"]
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: None)
    plain = hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={tmp_path / 'run2'}", "max_steps=2"], quiet=True)
    assert "bf16_auto" in plain and "measured" not in plain["bf16_auto"] and plain["precision"].startswith("fp32")
