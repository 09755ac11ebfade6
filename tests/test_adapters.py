import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from hfkit.adapters import apply_adapter, lora_parameter_formula, merge_adapter
from hfkit.errors import HfkitError
from hfkit.adapters import AdapterConfig


def tiny(arch="llama"):
    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    else:
        cfg = GPT2Config(vocab_size=120, n_embd=32, n_layer=3, n_head=4, n_positions=64, resid_pdrop=0,
                         embd_pdrop=0, attn_pdrop=0)
    return AutoModelForCausalLM.from_config(cfg)


def _one_step(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 120, (2, 16), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return changed, with_grad, trainable


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("cfg", [
    AdapterConfig.from_dict({"method": "lora", "r": 4}), AdapterConfig.from_dict({"method": "lora", "r": 4, "use_dora": True}),
    AdapterConfig.from_dict({"method": "ia3"}), AdapterConfig.from_dict({"method": "prompt_tuning"}),
    AdapterConfig.from_dict({"method": "prefix_tuning", "num_virtual_tokens": 5}),
    AdapterConfig.from_dict({"method": "selective", "trainable_last_layers": 1}), AdapterConfig.from_dict({"method": "selective", "trainable_patterns": ["norm", "ln_f"]}),
], ids=["lora", "dora", "ia3", "prompt", "prefix", "last_layer", "patterns"])
def test_only_intended_parameters_train(arch, cfg):
    model, counts = apply_adapter(tiny(arch), cfg)
    if cfg.method == "lora":  # make B non-zero so A receives gradient too
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.02)
    changed, with_grad, trainable = _one_step(model)
    assert trainable and changed == with_grad == trainable  # frozen params: no grad, bit-equal
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    if cfg.method in ("lora", "ia3", "prompt_tuning", "prefix_tuning"):
        assert not any("base_layer" in n or n.endswith("embed_tokens.weight") for n in trainable)
    if cfg.method == "selective" and cfg.trainable_last_layers:
        assert all(".2." in n for n in trainable)  # only the last of 3 blocks
    if cfg.method == "selective" and cfg.trainable_patterns:
        assert all("norm" in n or "ln_" in n for n in trainable)


@pytest.mark.parametrize("arch, targets", [("llama", None), ("llama", ["q_proj", "v_proj", "down_proj"]),
                                           ("gpt2", None), ("gpt2", ["c_attn", "c_fc"])])
def test_lora_parameter_count_is_r_times_d_plus_k(arch, targets):
    r = 4
    base = tiny(arch)
    shapes = {}
    from transformers.pytorch_utils import Conv1D

    for name, m in base.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, torch.nn.Linear):
            shapes[name] = (leaf, m.in_features, m.out_features)
        elif isinstance(m, Conv1D):
            shapes[name] = (leaf, m.weight.shape[0], m.weight.shape[1])
    model, counts = apply_adapter(base, AdapterConfig.from_dict({"method": "lora", "r": r, "target_modules": targets}))
    adapted = targets or {"llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}[arch]
    expected = sum(r * (d + k) for leaf, d, k in shapes.values() if leaf in adapted)
    assert counts["trainable"] == expected == lora_parameter_formula(model)


def test_target_modules_that_match_nothing_list_the_real_ones():
    with pytest.raises(HfkitError, match=r"'query' matches no module of LlamaForCausalLM \(linear modules: "
                                         r"down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj\)"):
        apply_adapter(tiny(), AdapterConfig.from_dict({"method": "lora", "target_modules": ["query"]}))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A base causal LM (saved) and a LoRA run on it, through the real recipe path."""
    import hfkit
    from conftest import TINY_MODEL

    root = tmp_path_factory.mktemp("lora")
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={root / 'base'}", "max_steps=30"], quiet=True)
    metrics = hfkit.train("clm_pretrain", TINY_MODEL + [
        f"output_dir={root / 'lora'}", "max_steps=30", f"model.name_or_path={root / 'base'}", "adapter.method=lora",
        "adapter.r=4", "adapter.target_modules=[c_attn, c_fc]", "learning_rate=1e-2"], quiet=True)
    return root, metrics


def test_adapter_run_saves_only_the_adapter_and_reloads_identically(lora_run):
    from peft import AutoPeftModelForCausalLM

    from hfkit.models import load_model

    root, metrics = lora_run
    run = root / "lora"
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
    assert (run / "adapter_model.safetensors").stat().st_size < (root / "base" / "model.safetensors").stat().st_size / 3
    assert metrics["data"]["parameters"]["method"] == "lora"
    assert metrics["eval_after"]["eval_loss"] < metrics["eval_before"]["eval_loss"]
    x = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(0))
    a = AutoPeftModelForCausalLM.from_pretrained(run).eval()
    b = load_model(str(run)).eval()
    with torch.no_grad():
        la, lb = a(input_ids=x).logits, b(input_ids=x).logits
        base = AutoModelForCausalLM.from_pretrained(root / "base").eval()(input_ids=x).logits
    assert torch.equal(la, lb)
    assert not torch.allclose(la, base, atol=1e-4)  # the adapter does something


def test_merge_equals_adapter_outputs(lora_run, capsys):
    from hfkit.cli import main
    from hfkit.models import load_model

    root, _ = lora_run
    assert main(["merge", str(root / "lora"), "--output", str(root / "merged"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["adapter"] == "lora" and (root / "merged" / "model.safetensors").is_file()
    assert not (root / "merged" / "adapter_config.json").exists()
    x = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapter = load_model(str(root / "lora")).eval()(input_ids=x).logits
        merged = AutoModelForCausalLM.from_pretrained(root / "merged").eval()(input_ids=x).logits
    assert torch.allclose(adapter, merged, atol=1e-4)
    with pytest.raises(HfkitError, match="holds no adapter"):
        merge_adapter(str(root / "base"))


def test_adapter_on_a_mismatched_base_is_refused(lora_run, tmp_path):
    import hfkit
    from conftest import TINY_MODEL

    from hfkit.models import load_model

    root, _ = lora_run
    other = tmp_path / "other"
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={other}", "max_steps=1", "model.hidden_size=48"], quiet=True)
    import shutil

    shutil.copytree(root / "lora", tmp_path / "moved")
    cfg = json.loads((tmp_path / "moved" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(other)
    (tmp_path / "moved" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(HfkitError, match="does not fit its base model"):
        load_model(str(tmp_path / "moved"))


def test_adapter_methods_need_a_pretrained_base_and_known_names():
    from hfkit.recipe import load_recipe

    with pytest.raises(HfkitError, match="adapter.method=lora needs a pretrained base"):
        load_recipe("clm_pretrain", ["adapter.method=lora"])
    with pytest.raises(HfkitError, match=r"recipe key 'adapter.method': unknown method 'qlora' \(hfkit: full, "
                                         r"selective; peft: .*lora.*\)"):
        load_recipe("clm_pretrain", ["adapter.method=qlora"])
    with pytest.raises(HfkitError, match="padding-free packing cannot place"):
        load_recipe("sft", ["adapter.method=prompt_tuning", f"model.name_or_path={__file__.rsplit('/', 1)[0]}"])


def test_minilm_loads_by_hub_id_offline_and_embeds(tmp_path, monkeypatch):
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from hfkit.hub import MINILM_ID, seed_minilm

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(OSError):
        AutoModel.from_pretrained(MINILM_ID, cache_dir=tmp_path / "hub")  # not cached yet, offline
    seed_minilm(tmp_path / "hub")
    model = AutoModel.from_pretrained(MINILM_ID, cache_dir=tmp_path / "hub").eval()
    tok = AutoTokenizer.from_pretrained(MINILM_ID, cache_dir=tmp_path / "hub")
    assert model.config.model_type == "bert" and model.config.num_hidden_layers == 6

    def embed(texts):
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    e = embed(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."])
    assert (e[0] @ e[1]) > (e[0] @ e[2]) + 0.3


def test_ia3_merge_equals_adapter_outputs(tmp_path):
    model, _ = apply_adapter(tiny("llama"), AdapterConfig.from_dict({"method": "ia3"}))
    for n, p in model.named_parameters():
        if "ia3_l" in n:
            torch.nn.init.uniform_(p, 0.5, 1.5)
    x = torch.randint(0, 120, (2, 12), generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        merged = model.merge_and_unload()(input_ids=x).logits
    assert torch.allclose(adapted, merged, atol=1e-4)


def test_adapter_loads_by_hub_id_from_the_cache(lora_run, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from hfkit.hub import import_to_cache
    from hfkit.models import load_model

    root, _ = lora_run
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    import_to_cache(root / "lora", "acme/tiny-lora", tmp_path / "hub")
    from peft import AutoPeftModelForCausalLM

    x = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        by_id = AutoPeftModelForCausalLM.from_pretrained("acme/tiny-lora").eval()(input_ids=x).logits
        by_path = load_model(str(root / "lora")).eval()(input_ids=x).logits
    assert torch.equal(by_id, by_path)


def test_hub_id_missing_offline_says_how_to_fix():
    from hfkit.models import load_model

    with pytest.raises(HfkitError, match=r"not in the local Hub cache and HF_HUB_OFFLINE=1.*hfkit hub import"):
        load_model("nobody/no-such-model")


def test_prompt_tuning_recipe_initialises_from_its_text(tmp_path):
    """The shipped prompt_tuning recipe (virtual tokens initialised from `prompt_tuning_init_text`) on a
    tiny base: the virtual tokens start as the embeddings of that text's tokens."""
    import hfkit
    from conftest import TINY_MODEL
    from transformers import AutoTokenizer

    from hfkit.models import load_model

    base = tmp_path / "base"
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={base}", "max_steps=2", "model.max_position_embeddings=256"],
                quiet=True)
    text = "Answer the question about Python with the documentation's words:"
    out = tmp_path / "pt"
    hfkit.train("prompt_tuning", [f"model.name_or_path={base}", f"output_dir={out}", "max_steps=1", "eval_steps=100",
                                  "learning_rate=1e-12", "warmup_steps=0", "adapter.num_virtual_tokens=4"], quiet=True)
    model = load_model(str(out))
    virtual = model.prompt_encoder["default"].embedding.weight.detach()
    ids = AutoTokenizer.from_pretrained(base)(text, add_special_tokens=False)["input_ids"][:4]
    words = model.get_input_embeddings().weight.detach()[ids]
    assert torch.allclose(virtual, words, atol=1e-6)  # init from the text (a lr of 1e-12 leaves them there)
