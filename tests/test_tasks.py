"""The task registry and the shape around it: every task runs through the one run path, no module
outside hfkit/tasks names a task, nothing imports recipe.py back."""
import ast
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL
from hfkit.tasks import TASKS

HFKIT = Path(__file__).resolve().parent.parent / "hfkit"

# the heads' recipes start from MiniLM; their smoke runs build a tiny BERT instead
TINY_HEAD = TINY_MODEL + ["model.name_or_path=null", "model.architecture=bert", "tokenizer.kind=wordpiece"]
TINY_PREF = TINY_MODEL + ["model.name_or_path=null", "model.architecture=gpt2", "data.sources.0.max_records=60",
                          "data.validation_fraction=0.2", "bf16=false"]
# a tiny recipe per registered task (a new task must add one: see the first test)
SMOKE = {
    "clm": ("clm_pretrain", TINY_MODEL),
    "mlm": ("clm_pretrain", TINY_MODEL + ["task=mlm", "model.architecture=bert"]),
    "sft": ("sft", [o for o in TINY_MODEL if not o.startswith(("data.block_size", "model.max_position"))]
            + ["model.max_position_embeddings=512", "sft.max_length=512"]),
    "t5_span": ("clm_pretrain", TINY_MODEL + ["task=t5_span", "model.architecture=t5"]),
    "bart_denoise": ("clm_pretrain", TINY_MODEL + ["task=bart_denoise", "model.architecture=bart"]),
    "classification": ("classify_language", TINY_HEAD + ["data.sources.0.max_records=60"]),
    "token_classification": ("code_tokens", TINY_HEAD + ["data.sources.0.max_records=2",
                                                         "token_classification.max_length=64"]),
    "extractive_qa": ("pydoc_qa_extractive", TINY_HEAD + ["extractive_qa.max_length=64", "extractive_qa.doc_stride=24",
                                                          "extractive_qa.max_answer_length=30"]),
    # TRL's tasks: tiny decoders built here, on 60 gettext preference records
    "reward": ("reward_model", TINY_PREF + ["reward.max_length=64"]),
    "dpo": ("dpo_translate", TINY_PREF + ["dpo.max_length=64", "eval.metrics=[]"]),
    "grpo": ("grpo_translate", TINY_PREF + ["grpo.max_completion_length=8", "eval.metrics=[]",
                                            "per_device_train_batch_size=8"]),
}


def test_every_registered_task_has_a_smoke_recipe():
    assert set(TASKS) == set(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_every_task_builds_prepares_two_batches_and_takes_a_step(name, tmp_path):
    from torch.utils.data import DataLoader

    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    recipe, overrides = SMOKE[name]
    job = assemble(load_recipe(recipe, overrides + [f"output_dir={tmp_path / 'run'}"]))
    import transformers

    auto = getattr(transformers, job.task.model_class(job.recipe))  # the model is what the task's Auto class builds
    assert job.task.name == name and auto._model_mapping[type(job.model.config)] is type(job.model)
    if job.prepared.collator is None:  # TRL's tasks: TRL tokenizes and collates; two steps of its trainer
        _two_trainer_steps(job)
        return
    torch.manual_seed(0)
    loader = DataLoader(job.prepared.train, batch_size=4, collate_fn=job.prepared.collator, shuffle=False)
    batches = [b for _, b in zip(range(2), loader)]
    targets = [b["labels"] if "labels" in b else b["start_positions"] for b in batches]  # QA: start/end positions
    assert len(batches) == 2 and all((t != -100).any() for t in targets)
    model = job.model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for b in batches:
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    with torch.no_grad():
        again = model(**batches[1]).loss.item()
    assert again < losses[1]  # the step lowered the loss on the batch (noise drawn once, at collation) it trained on
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert job.recipe.to_dict()["task"] == name and (job.task.section is None or job.task.section in job.recipe.to_dict())


def _two_trainer_steps(job):
    from transformers.trainer_utils import IntervalStrategy

    model, args = job.model, job.args
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args.max_steps, args.eval_strategy, args.eval_on_start = 2, IntervalStrategy.NO, False
    trainer = job.task.make_trainer(model, args, job.prepared, job.tokenizer, [])
    out = trainer.train()
    assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert type(trainer).__mro__[2].__module__.startswith("trl.")  # hfkit's checkpoints around TRL's trainer


def _modules():
    for path in sorted(HFKIT.rglob("*.py")):
        yield path.relative_to(HFKIT).as_posix(), ast.parse(path.read_text())


def test_no_module_outside_tasks_names_a_task():
    names = set(TASKS) | {t.section for t in TASKS.values() if t.section}
    found = []
    for rel, tree in _modules():
        if rel.startswith("tasks/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Compare) and any(isinstance(n, ast.Attribute) and n.attr == "task"
                                                     for n in [node.left, *node.comparators]):
                found.append(f"{rel}:{node.lineno} compares .task")
    assert not found, found


def test_no_library_module_imports_recipe_py():
    """recipe.py composes the sections their owners define; the owners never import it back (only the
    run and its job, the sweep of runs, a conversation with a run, publishing one, the web UI and the command
    line, which start from a recipe, do; pyproject.toml's import-linter contracts say the same of every layer)."""
    allowed = {"recipe.py", "job.py", "run.py", "sweep.py", "conversation.py", "publish.py", "ui.py"}
    found = []
    for rel, tree in _modules():
        if rel in allowed or rel.startswith("cli/"):
            continue
        type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                         and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in type_checking:
                mod = node.module or ""
                if mod.endswith("recipe") or (mod.split(".")[-1] == "" and any(a.name == "recipe" for a in node.names)):
                    found.append(f"{rel}:{node.lineno}")
    assert not found, found


def test_a_task_section_belongs_to_its_task_and_old_keys_point_to_new_names():
    from hfkit.errors import HfkitError
    from hfkit.recipe import load_recipe

    for overrides, message in [
        (["sft.max_length=5"], "recipe key 'sft' is the section of task sft; this recipe's task is clm"),
        (["task=seq2seq"], "unknown task 'seq2seq' (tasks: bart_denoise, classification, clm, dpo, extractive_qa, grpo, mlm, reward, sft, t5_span, "
                            "token_classification)"),
        (["data.mlm_probability=0.2"], "recipe key 'data.mlm_probability' was renamed: did you mean 'mlm.mlm_probability'?"),
        (["model.hiden_size=3"], "did you mean 'model.hidden_size'?"),
    ]:
        with pytest.raises(HfkitError) as e:
            load_recipe("clm_pretrain", overrides)
        assert message in str(e.value), str(e.value)
    for overrides, message in [
        (["sft.packing=padded"], "'sft.packing' was renamed: did you mean 'sft.padding_free'?"),
        (["adapter.method=lora", "adapter.alpha=16", "model.name_or_path=a/b"],
         "'adapter.alpha' was renamed: did you mean 'adapter.lora_alpha'?"),
        (["adapter.method=lora", "adapter.dropout=0.1", "model.name_or_path=a/b"], "did you mean 'adapter.lora_dropout'?"),
        (["adapter.method=prompt_tuning", "adapter.init_text=hi", "model.name_or_path=a/b", "sft.padding_free=false"],
         "did you mean 'adapter.prompt_tuning_init_text'?"),
        (["eval.icl=[{task: x.jsonl}]"], "'eval.icl.0.task' was renamed: did you mean 'eval.icl.0.path'?"),
        (["adapter.method=lora", "adapter.lora_alfa=3", "model.name_or_path=a/b"],
         "unknown recipe key 'adapter.lora_alfa' — did you mean 'adapter.lora_alpha'?"),
        (["adapter.method=lora", "adapter.r=big", "model.name_or_path=a/b"], "recipe key 'adapter.r' expects int"),
        (["adapter.method=full", "adapter.r=8"], "unknown recipe key 'adapter.r' (a field of peft methods"),
    ]:
        with pytest.raises(HfkitError) as e:
            load_recipe("sft", overrides)
        assert message in str(e.value), str(e.value)


def test_yaml_1_2_scalars():
    from hfkit.schema import yaml_load

    assert yaml_load("a: 0755\nb: 1:30\nc: 0o17\nd: 0x1f\ne: 3e-4\nf: no\ng: 42\nh: -7\ni: 1.5") == {
        "a": 755, "b": "1:30", "c": 15, "d": 31, "e": 3e-4, "f": "no", "g": 42, "h": -7, "i": 1.5}


def test_recipe_base_overrides_only_what_differs_and_cp_copies_without_overwriting(tmp_path, capsys):
    from hfkit.cli import main
    from hfkit.errors import HfkitError
    from hfkit.recipe import load_recipe

    child = tmp_path / "mine.yaml"
    child.write_text("base: clm_pretrain\nmodel:\n  num_layers: 2\ntraining:\n  max_steps: 7\n  output_dir: out\n")
    r, ref = load_recipe(child), load_recipe("clm_pretrain")
    assert r.model.num_layers == 2 and r.model.hidden_size == ref.model.hidden_size == 192  # merged key by key
    assert r.training["max_steps"] == 7 and r.training["learning_rate"] == ref.training["learning_rate"]
    assert r.data == ref.data and r.generate.prompts == ref.generate.prompts
    (tmp_path / "grand.yaml").write_text("base: mine.yaml\nmodel: {hidden_size: 96}\n")  # relative to the file
    g = load_recipe(tmp_path / "grand.yaml")
    assert (g.model.hidden_size, g.model.num_layers, g.training["max_steps"]) == (96, 2, 7)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(HfkitError, match="makes a cycle"):
        load_recipe(tmp_path / "loop.yaml")

    assert main(["recipes", "cp", "sft", str(tmp_path / "my_sft.yaml")]) == 0
    assert (tmp_path / "my_sft.yaml").read_text() == (HFKIT.parent / "recipes" / "sft.yaml").read_text()
    assert main(["recipes", "cp", "sft", str(tmp_path / "my_sft.yaml")]) == 2  # never over an existing file
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("method, options", [
    ("adalora", {"target_r": 2, "init_r": 4}), ("loha", {"r": 4}), ("lokr", {"r": 4}), ("vera", {"r": 8}),
    ("oft", {}), ("p_tuning", {"num_virtual_tokens": 4}), ("boft", {}), ("ln_tuning", {}),
])
def test_any_peft_method_by_name_trains_only_its_parameters(method, options):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from hfkit.adapters import AdapterConfig, apply_adapter

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    cfg = AdapterConfig.from_dict({"method": method, **options})
    model, counts = apply_adapter(base, cfg, max_steps=10)
    assert model.peft_config["default"].peft_type.value.lower() == method
    assert 0 < counts["trainable"] < counts["total"] / 4
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    x = torch.randint(0, 120, (2, 12), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    assert all(torch.equal(p.detach(), frozen[n]) for n, p in model.named_parameters() if n in frozen)
