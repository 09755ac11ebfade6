"""Loading a base as transformers does (`model.dtype`, `device_map`, `quantization`: BitsAndBytesConfig
fields) and QLoRA: LoRA on a 4-bit NF4 base through bitsandbytes and peft's k-bit preparation. Every
trainable LoRA weight must get a gradient and change (a 4-bit layer that cut the backward pass would
leave them untouched and the loss flat, silently); the adapter merges into the full-precision base."""
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("bitsandbytes")

from conftest import TINY_MODEL  # noqa: E402

QLORA = ["adapter.method=lora", "adapter.r=4", "adapter.target_modules=[q_proj, k_proj, v_proj, o_proj, gate_proj, "
         "up_proj, down_proj]", "model.quantization={load_in_4bit: true, bnb_4bit_quant_type: nf4, "
         "bnb_4bit_use_double_quant: true, bnb_4bit_compute_dtype: float32}"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import hfkit

    out = tmp_path_factory.mktemp("qlora") / "base"
    hfkit.train("clm_pretrain", TINY_MODEL + ["model.architecture=llama", "model.hidden_size=64",
                                              f"output_dir={out}", "max_steps=30"], quiet=True)
    return out


def job_model(base, extra=()):
    """The model a run trains, built by hfkit's own job steps (load, k-bit preparation, adapter)."""
    from hfkit import job
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.recipe import load_recipe
    from hfkit.tasks import get_task

    recipe = load_recipe("clm_pretrain", TINY_MODEL + [f"model.name_or_path={base}", "output_dir=/tmp/unused",
                                                       *extra])
    task = get_task(recipe.task)
    tokenizer = load_tokenizer(str(base))
    torch.manual_seed(0)
    model = job.recipe_model(recipe, task, tokenizer)
    model, _ = job.adapt(recipe, task, model, tokenizer)
    if recipe.training.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    return model.train()


def steps(model, n=3):
    """n AdamW steps on one batch: the trainable parameters before and after, the names that got a
    non-zero gradient, and the losses."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    before = {k: p.detach().clone() for k, p in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-2, weight_decay=0.0)
    x = torch.randint(5, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    got, losses = set(), []
    for _ in range(n):
        opt.zero_grad()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        got |= {k for k, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
        losses.append(loss.item())
    return params, before, got, losses


EIGHT_BIT = QLORA[:3] + ["model.quantization={load_in_8bit: true}"]


@pytest.mark.parametrize("recipe", [QLORA, QLORA + ["gradient_checkpointing=true"], EIGHT_BIT],
                         ids=["qlora", "qlora+checkpointing", "8-bit"])
def test_every_lora_weight_of_a_quantized_base_gets_a_gradient_and_changes(base, recipe):
    import bitsandbytes as bnb

    model = job_model(base, recipe)
    if recipe is EIGHT_BIT:
        assert len([m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]) == 2 * 7
    else:
        quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert len(quantized) == 2 * 7  # every projection of both layers is 4-bit
        assert all(m.weight.quant_type == "nf4" and m.weight.quant_state.nested for m in quantized)  # double quant
    params, before, got, losses = steps(model)
    assert params and all("lora_" in k for k in params)
    assert got == set(params), sorted(set(params) - got)[:4]
    assert all(not torch.equal(before[k], params[k].detach()) for k in params)
    assert losses[-1] < losses[0]


def test_lora_with_gradient_checkpointing_trains_every_lora_weight(base):
    model = job_model(base, QLORA[:3] + ["gradient_checkpointing=true"])
    params, before, got, losses = steps(model)
    assert got == set(params) and all(not torch.equal(before[k], params[k].detach()) for k in params)
    assert losses[-1] < losses[0]


def test_a_qlora_run_saves_its_adapter_and_merges_into_the_full_precision_base(base, tmp_path, capsys):
    import hfkit
    from hfkit.cli import main
    from hfkit.models import load_model
    from transformers import AutoModelForCausalLM

    run = tmp_path / "qlora"
    metrics = hfkit.train("clm_pretrain", TINY_MODEL + [f"model.name_or_path={base}", f"output_dir={run}",
                                                        "max_steps=20", "eval_steps=20", *QLORA], quiet=True)
    assert metrics["eval_after"]["eval_loss"] < metrics["eval_before"]["eval_loss"]
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
    saved = json.loads((run / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(base.resolve())
    assert main(["merge", str(run), "--output", str(tmp_path / "merged"), "--json"]) == 0
    capsys.readouterr()
    x = torch.randint(5, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        adapter = load_model(str(run)).eval()(input_ids=x).logits  # the full-precision base + the adapter
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(input_ids=x).logits
        four_bit = job_model(base, QLORA)
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(four_bit, load_file(run / "adapter_model.safetensors"))
        quantized = four_bit.eval()(input_ids=x).logits
        plain = AutoModelForCausalLM.from_pretrained(base).eval()(input_ids=x).logits
    assert torch.allclose(adapter, merged, atol=1e-4)
    # the adapter was trained on the NF4 base: on the full-precision base it moves the logits the same way
    assert (quantized - merged).abs().mean() < 0.5 * (plain - merged).abs().mean()


@pytest.mark.parametrize("extra, message", [
    (["model.quantization={load_in_4bit: true}"], "whose weights cannot be trained: train an adapter on it"),
    (["adapter.method=lora", "model.quantization={load_in_4bits: true}"],
     "'model.quantization.load_in_4bits' is not a BitsAndBytesConfig field (did you mean 'load_in_4bit'?)"),
    (["adapter.method=lora", "model.quantization={load_in_4bit: true, bnb_4bit_quant_type: nf5}"],
     "'model.quantization.bnb_4bit_quant_type'='nf5': one of nf4"),
    (["adapter.method=lora", "model.dtype=float64"], "'model.dtype'='float64': one of auto, float32, bfloat16"),
])
def test_bad_loading_keys_exit_2_in_one_line(base, extra, message, tmp_path):
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", f"model.name_or_path={base}",
                        f"output_dir={tmp_path / 'out'}", *extra], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists()


def test_dtype_and_device_map_load_as_transformers_does(base):
    model = job_model(base, ["model.dtype=bfloat16", "model.device_map=cpu"])
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    plain = job_model(base)
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
