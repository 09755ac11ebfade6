"""Shared fixtures: a tokenizer and a tiny GPT-2 trained here, on the built-in corpus, once per session."""
import os
import tempfile

# Keep datasets' cache and any Hub lookups inside a throw-away folder, and never touch the network.
_CACHE = tempfile.mkdtemp(prefix="hfkit-test-cache-")
os.environ.setdefault("HF_HOME", _CACHE)
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE, "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

TINY_MODEL = [
    "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.max_position_embeddings=64",
    "model.dropout=0.0", "tokenizer.vocab_size=400", "data.block_size=32",
    "per_device_train_batch_size=16", "learning_rate=3e-3", "warmup_steps=0", "logging_steps=5",
    "eval_steps=1000", "save_strategy=no", "load_best_model_at_end=false", "generate.prompts=[]",
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny CLM trained for 200 steps through the real recipe path; returns (run_dir, metrics)."""
    import hfkit

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    metrics = hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={out}", "max_steps=200",
                                                        "report_to=[tensorboard]"], quiet=True)
    return out, metrics


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = tiny_run
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    return model, AutoTokenizer.from_pretrained(out)


def tiny_bart(tok):
    """A 1+1-layer BART (encoder-decoder) built from a config for `tok`, seeded, in eval mode."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None)
    return BartForConditionalGeneration(cfg).eval()


@pytest.fixture(scope="session")
def chat_runs(tmp_path_factory, tiny_run):
    """Two runs that converse: a chat run trained from scratch (its chat template) and a LoRA adapter on
    `tiny_run` (its own prompt format, no chat template). Returns (chat, lora) folders."""
    import json

    import hfkit
    from test_sft import MEMO, _sft_overrides

    t = tmp_path_factory.mktemp("serve")
    chats = t / "chats.jsonl"
    chats.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": r["instruction"]},
                                                        {"role": "assistant", "content": r["output"]}]}) for r in MEMO))
    instr = t / "instr.jsonl"
    instr.write_text("\n".join(json.dumps(r) for r in MEMO))
    hfkit.train("sft", _sft_overrides(chats, t / "chat", ["max_steps=150", "sft.format=chat"]), quiet=True)
    base = tiny_run[0]
    hfkit.train("sft", [f"model.name_or_path={base}", "data.sources.0.kind=json", f"data.sources.0.path={instr}",
                        "data.validation_fraction=0", "sft.max_length=64", f"output_dir={t / 'lora'}",
                        "learning_rate=5e-3", "warmup_steps=0", "save_strategy=no", "generate.prompts=[]",
                        "per_device_train_batch_size=6", "max_steps=150", "adapter.method=lora", "adapter.r=8",
                        "sft.templates=[{prompt: 'Q: {{ instruction }} A:', answer: ' {{ output }}', name: qa}]"],
                quiet=True)
    assert (t / "lora" / "adapter_config.json").exists() and not (t / "lora" / "chat_template.jinja").exists()
    return t / "chat", t / "lora"
