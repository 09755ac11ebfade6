"""Hostile input, one test per class of defect found from outside (issue 24): each runs the command as a
user would, and checks its exit status, its one line, and the files before and after."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfkit.cli import main


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str, *fragments: str) -> None:
    """Exactly one `hfkit: error:` line (no traceback) that names every fragment."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("hfkit: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in errors[0], (f, errors[0])


def files(folder: Path) -> dict:
    """Every file under `folder` with its content hash: what "the files before and after" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------- 1. templates run in Jinja's sandbox

EVIL_TEMPLATES = [
    "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}{{ question }}",
    "{{ question.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{% set x = question.append(1) %}{{ question }}",
]


@pytest.mark.parametrize("template", EVIL_TEMPLATES)
def test_a_template_cannot_reach_python_objects_or_run_commands(template, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text(json.dumps({"name": "evil", "description": "x", "template": template}))
    before = files(tmp_path)
    rc, out, err = cli(capsys, "prompts", "render", "evil.yaml", "--record", json.dumps({"question": ["q"]}))
    assert rc == 2
    one_line(err, "template", "may only read the record's fields")
    assert files(tmp_path) == before and not (tmp_path / "PWNED").exists()


def test_an_sft_template_in_a_recipe_is_sandboxed_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i}"}) + "\n" for i in range(20)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""base: sft
data: {{sources: [{{kind: json, path: {data}}}]}}
sft:
  templates:
    - {{prompt: "{{{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}}}{{{{ instruction }}}}", answer: "{{{{ output }}}}"}}
training: {{output_dir: {tmp_path / 'run'}}}
""")
    rc, _, err = cli(capsys, "data", "report", recipe)
    assert rc == 2
    one_line(err, "may only read the record's fields")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 3. resuming a finished run

def _marker(run: Path) -> dict:
    return json.loads((run / ".hfkit.json").read_text())


def _last_step(run: Path) -> int:
    return max(json.loads(ln)["step"] for ln in (run / "log.jsonl").read_text().splitlines() if '"step"' in ln)


def test_resuming_a_finished_run_is_a_no_op_unless_more_steps_are_asked(tmp_path, capsys):
    from conftest import TINY_MODEL

    run = tmp_path / "run"
    base = ["train", "clm_pretrain", *TINY_MODEL, f"output_dir={run}", "save_strategy=steps", "save_steps=2"]
    assert cli(capsys, *base, "max_steps=4")[0] == 0
    assert _marker(run)["state"] == "finished" and _marker(run)["global_step"] == 4
    before = files(run)
    for _ in range(2):  # asked again and again: never a step past max_steps
        rc, out, err = cli(capsys, *base, "max_steps=4", "resume_from_checkpoint=auto")
        assert rc == 0 and "is a finished run (4 steps, max_steps=4 asked): nothing to resume" in err, err
        assert files(run) == before
    # another model size: its checkpoints are not this model's; refused, the run (and its marker) as it was
    rc, _, err = cli(capsys, *base, "max_steps=6", "resume_from_checkpoint=auto", "model.hidden_size=48")
    assert rc == 2
    one_line(err, "no checkpoint", "can be resumed", "different model")
    assert files(run) == before and _marker(run)["state"] == "finished"
    # more steps asked: continued from checkpoint-4 up to 6, then finished (and a no-op again)
    assert cli(capsys, *base, "max_steps=6", "resume_from_checkpoint=auto")[0] == 0
    assert _last_step(run) == 6 and _marker(run)["state"] == "finished" and _marker(run)["global_step"] == 6
    rc, _, err = cli(capsys, *base, "max_steps=6", "resume_from_checkpoint=auto")
    assert rc == 0 and "nothing to resume" in err and _last_step(run) == 6


def test_resuming_a_finished_run_without_checkpoints_never_replaces_it(tmp_path, capsys):
    from conftest import TINY_MODEL

    run = tmp_path / "run"
    base = ["train", "clm_pretrain", *TINY_MODEL, f"output_dir={run}", "max_steps=3"]  # save_strategy=no
    assert cli(capsys, *base)[0] == 0
    before = files(run)
    rc, _, err = cli(capsys, *base, "resume_from_checkpoint=auto", "model.hidden_size=48")
    assert rc == 0 and "nothing to resume" in err and files(run) == before
    rc, _, err = cli(capsys, *base[:-1], "max_steps=5", "resume_from_checkpoint=auto", "model.hidden_size=48")
    assert rc == 2
    one_line(err, "is a finished run (3 steps, max_steps=5 asked) with no checkpoint to continue from",
             "overwrite_output_dir=true")
    assert files(run) == before and _marker(run)["state"] == "finished"


@pytest.mark.parametrize("checkpoints", [True, False])
def test_a_signal_after_training_says_so_and_leaves_a_true_state(checkpoints, tmp_path, capsys, monkeypatch):
    import signal

    import hfkit.job
    from conftest import TINY_MODEL

    def killed(job):  # SIGTERM arrives while the trained model writes its samples, after training
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not stopped")

    monkeypatch.setattr(hfkit.job.Job, "samples", killed)
    run = tmp_path / "run"
    saving = ["save_strategy=steps", "save_steps=2"] if checkpoints else []
    rc, _, err = cli(capsys, "train", "clm_pretrain", *TINY_MODEL, *saving, f"output_dir={run}", "max_steps=2",
                     "generate.prompts=[The]")
    assert rc == 143 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("hfkit: interrupted by SIGTERM")]
    assert len(line) == 1, err
    if checkpoints:  # kept to resume from, and marked for what it is
        assert "is kept, marked interrupted; continue it with resume_from_checkpoint=auto" in line[0]
        assert _marker(run)["state"] == "interrupted" and (run / "checkpoint-2").is_dir()
    else:  # nothing to resume from: nothing left behind
        assert "nothing of it was kept" in line[0] and not run.exists()


# ----------------------------------------------------------------------------- 4. YAML alias bombs

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([None, *"abcdefgh"], "abcdefghi"))


@pytest.mark.parametrize("where", ["recipe", "base", "override", "prompt template", "accelerate config", "recursive"])
def test_nested_aliases_are_refused_in_every_yaml_hfkit_reads(where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bomb.yaml").write_text("task: clm\n" + BOMB)
    argv = {"recipe": ["train", "bomb.yaml"],
            "base": ["train", "child.yaml"],
            "override": ["train", "clm_pretrain", "output_dir=out", "description=&a [1, *a]"],
            "prompt template": ["prompts", "render", "bomb.yaml", "--record", '{"question": "q"}'],
            "accelerate config": ["train", "clm_pretrain", "output_dir=out", "--accelerate-config", "bomb.yaml"],
            "recursive": ["train", "rec.yaml"]}[where]
    (tmp_path / "child.yaml").write_text("base: bomb.yaml\ndescription: child\n")
    (tmp_path / "rec.yaml").write_text("task: clm\ndescription: &x [1, *x]\n")
    before = files(tmp_path)
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    one_line(err, "recursive" if where in ("recursive", "override") else "nested anchors")
    assert files(tmp_path) == before


def test_a_document_with_many_plain_aliases_still_loads():
    from hfkit.schema import yaml_load

    text = "base: &b {lr: 1}\n" + "".join(f"run{i}: *b\n" for i in range(1000))
    assert yaml_load(text)["run999"] == {"lr": 1}


# ----------------------------------------------------------------------------- 5. non-finite and out-of-range numbers

HEAD = ["model.name_or_path=null", "model.architecture=bert", "tokenizer.kind=wordpiece", "tokenizer.min_frequency=1",
        "data.validation_fraction=0", "classification.group_field=null", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "max_steps=2"]


@pytest.mark.parametrize("argv, message", [
    (["train", "clm_pretrain", "output_dir=out", "learning_rate=.inf"], "'training.learning_rate' must be a finite number"),
    (["train", "clm_pretrain", "output_dir=out", "learning_rate=nan"], "'training.learning_rate' must be a finite number"),
    (["train", "clm_pretrain", "output_dir=out", "model.dropout=.nan"], "'model.dropout' must be a finite number"),
    (["train", "clm_pretrain", "output_dir=out", "data.sources.0.weight=.inf"], "'data.sources.0.weight' must be a finite"),
    (["train", "clm_pretrain", "output_dir=out", "generate.temperature=.inf"], "'generate.temperature' must be a finite"),
    (["train", "clm_pretrain", "output_dir=out", "generate.max_new_tokens=-1"], "'generate.max_new_tokens' must be >= 1"),
    (["train", "classify_language", *HEAD, "output_dir=out", "data.sources.0.kind=json", "data.sources.0.path=nan.jsonl",
      "classification.problem_type=regression"], "record 1: label nan is not a finite number"),
    (["scaling", "plan", "--flops", "inf"], "--flops: must be a finite number"),
    (["scaling", "plan", "--flops=-1e20"], "--flops: must be > 0"),
    (["generate", "--model", "nowhere", "--prompt", "hi", "--max-new-tokens=-1"], "--max-new-tokens: must be >= 1"),
    (["generate", "--model", "nowhere", "--prompt", "hi", "--do-sample", "--temperature", "nan"],
     "--temperature: must be a finite number"),
    (["generate", "--model", "nowhere", "--prompts-file", "numbers.jsonl"], "line 2: expected a JSON object with a text 'prompt'"),
    (["eval", "perplexity", "--model", "nowhere", "--data", "default", "--stride", "0"], "--stride: must be >= 1"),
    (["rag", "query", "idx", "q", "--chunks=-3"], "--chunks: must be >= 1"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]))
def test_non_finite_and_negative_numbers_are_refused_up_front(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nan.jsonl").write_text('{"text": "a", "label": 1.5}\n{"text": "b", "label": NaN}\n')
    (tmp_path / "numbers.jsonl").write_text('{"prompt": "fine"}\n{"prompt": 5}\n')
    before = files(tmp_path)
    rc, out, err = cli(capsys, *argv)
    assert rc == 2 and out == ""
    one_line(err, message)
    assert files(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_prompt_that_is_not_text_is_refused_by_the_library_too(tiny_model):
    import hfkit
    from hfkit.errors import HfkitError

    model, tok = tiny_model
    with pytest.raises(HfkitError, match="prompt 1 is int 5, not text"):
        hfkit.generate(model, tok, ["fine", 5])
    with pytest.raises(HfkitError, match="must be a positive, finite number"):
        from hfkit.scaling import Law, plan

        plan(float("nan"), Law(1.0, 400.0, 400.0, 0.34, 0.28))


# ----------------------------------------------------------------------------- 6. a pipeline needs the task's head

@pytest.mark.parametrize("task, given", [
    ("question-answering", '{"question": "what?", "context": "the answer is here"}'),
    ("text-classification", "some text"),
    ("token-classification", "some text"),
])
def test_a_pipeline_refuses_a_run_without_that_tasks_head(task, given, tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run  # a causal LM: no QA, classification or tagging head
    before = files(run_dir)
    rc, out, err = cli(capsys, "pipeline", task, "--model", run_dir, "--input", given, "--out", tmp_path / "o.jsonl")
    assert rc == 2 and out == ""
    one_line(err, f"has no trained {task} head")
    assert files(run_dir) == before and not (tmp_path / "o.jsonl").exists()


def test_a_pipeline_with_the_head_it_needs_still_runs(tiny_run, capsys):
    run_dir, _ = tiny_run
    rc, out, err = cli(capsys, "pipeline", "text-generation", "--model", run_dir, "--input", "The", "--max-new-tokens", 3)
    assert rc == 0 and len(out.strip().splitlines()) == 1
    rc, out, err = cli(capsys, "pipeline", "feature-extraction", "--model", run_dir, "--input", "The")
    assert rc == 0


# ----------------------------------------------------------------------------- 7. outputs, the Hub offline, too little data

def test_tokenizer_train_into_the_working_directory(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world this is some text to learn from\n" * 50)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    rc, out, err = cli(capsys, "tokenizer", "train", "--data", corpus, "--vocab-size", 100, "--output", ".", "--json")
    assert rc == 0 and json.loads(out)["vocab_size"] > 0  # stdout is the JSON alone
    assert {"tokenizer.json", ".hfkit.json"} <= set(os.listdir(here)) and Path.cwd() == here
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left
    before = files(here)
    rc, out, err = cli(capsys, "tokenizer", "train", "--data", corpus, "--output", ".", "--overwrite")
    assert rc == 2
    one_line(err, "is the folder you are working in")
    assert files(here) == before
    (here / "notes.txt").write_text("mine")
    rc, out, err = cli(capsys, "tokenizer", "train", "--data", corpus, "--output", ".")
    assert rc == 2 and (here / "notes.txt").read_text() == "mine"


def test_push_to_hub_offline_or_without_a_token_is_refused_before_any_data_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "train", "clm_pretrain", "output_dir=out", "push_to_hub=true")
    assert rc == 2
    one_line(err, "'training.push_to_hub'=true needs the Hub, but HF_HUB_OFFLINE=1", "hfkit push")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    rc, _, err = cli(capsys, "train", "clm_pretrain", "output_dir=out", "push_to_hub=true")
    assert rc == 2
    one_line(err, "needs a Hugging Face token")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("task, records", [("clm_pretrain", 1), ("sft", 1), ("classify_language", 1),
                                           ("clm_pretrain", 2)])
def test_data_too_small_for_the_validation_asked_for_is_refused(task, records, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"text": "one short record", "instruction": "say hi", "output": "hi", "label": "de"}] * records
    if records == 2:  # two documents, but the held-out one is shorter than a block
        rows = [{"text": "word " * 400}, {"text": "tiny"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = ["classification.group_field=null"] if task == "classify_language" else []
    rc, _, err = cli(capsys, "train", task, "output_dir=out", "data.sources=[{kind: json, path: d.jsonl}]",
                     "data.validation_fraction=0.5", "data.min_chars=1", *extra)
    assert rc == 2
    one_line(err, "set data.validation_fraction=0 to train without validation")
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl"]


# ----------------------------------------------------------------------------- 8. push --dry-run of a LoRA run

@pytest.fixture(scope="module")
def lora_run(tiny_run, tmp_path_factory):
    import hfkit
    from conftest import TINY_MODEL

    base, _ = tiny_run
    out = tmp_path_factory.mktemp("lora") / "lora"
    hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={out}", "max_steps=3", f"model.name_or_path={base}",
                                              "adapter.method=lora", "adapter.r=4"], quiet=True)
    return out


def test_push_dry_run_of_a_lora_run_writes_the_card(lora_run, capsys):
    assert not (lora_run / "README.md").exists()  # peft's stub (naming the local base folder) is not left behind
    rc, out, err = cli(capsys, "push", lora_run, "--repo-id", "me/tiny-lora", "--base-model", "me/tiny", "--dry-run",
                       "--json")
    assert rc == 0, err
    card = (lora_run / "README.md").read_text()
    assert "base_model: me/tiny" in card and "AutoPeftModelForCausalLM" in card and str(lora_run.parent) not in card
    # an older run still holding peft's stub: replaced too; a README the user wrote: never
    from huggingface_hub import ModelCard, ModelCardData

    (lora_run / "README.md").write_text(ModelCard.from_template(ModelCardData(library_name="peft")).content)
    assert cli(capsys, "push", lora_run, "--repo-id", "me/tiny-lora", "--dry-run")[0] == 0
    (lora_run / "README.md").write_text("# my notes\n")
    rc, out, err = cli(capsys, "push", lora_run, "--repo-id", "me/tiny-lora", "--dry-run")
    assert rc == 2 and (lora_run / "README.md").read_text() == "# my notes\n"
    one_line(err, "was not written by hfkit")
    (lora_run / "README.md").unlink()


# ----------------------------------------------------------------------------- 9. switching adapter.method

def test_switching_the_adapter_method_maps_or_drops_the_recipes_fields(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base, _ = tiny_run
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps({"prompt": f"add {i} and 1:",
                                                           "completion": f" {i + 1}"}) + "\n" for i in range(30)))
    small = [f"model.name_or_path={base}", "max_steps=2", "sft.max_length=64", "data.validation_fraction=0",
             "data.sources=[{kind: json, path: qa.jsonl}]", "sft.format=prompt_completion",
             "eval_strategy=no", "generate.prompts=[]", "save_strategy=no"]
    rc, out, err = cli(capsys, "train", "lora_sft", "adapter.method=vera", "output_dir=vera", *small)
    assert rc == 0, err
    assert "adapter.method=vera (was lora): mapped lora_dropout -> vera_dropout; dropped lora_alpha, use_dora" in err
    cfg = json.loads((tmp_path / "vera" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "VERA" and cfg["vera_dropout"] == 0.05 and cfg["r"] == 16  # the recipe's values
    # a child recipe switching its base's method gets the same treatment; fields given with it are kept
    (tmp_path / "child.yaml").write_text("base: lora_sft\nadapter: {method: loha, r: 8}\n")
    rc, out, err = cli(capsys, "data", "report", "child.yaml", *small[:6])
    assert rc == 0, err
    assert "adapter.method=loha (was lora): mapped lora_alpha -> alpha; dropped lora_dropout, use_dora" in err
    # a field of the old method given with the new one is an error, with the new method's names
    rc, out, err = cli(capsys, "train", "lora_sft", "adapter.method=loha", "adapter.lora_dropout=0.1", "output_dir=x",
                       *small)
    assert rc == 2
    one_line(err, "unknown recipe key 'adapter.lora_dropout' — did you mean 'adapter.rank_dropout'?", "LoHaConfig")
    assert sorted(os.listdir(tmp_path)) == ["child.yaml", "qa.jsonl", "vera"]


# ----------------------------------------------------------------------------- 10. accelerate launch as the README shows it

def test_the_readmes_accelerate_launch_line_runs(tmp_path):
    """The README's `accelerate launch --config_file ... -m hfkit train` line, as written (the DDP config
    standing in for DeepSpeed, which needs CUDA): two real processes, one run."""
    root = Path(__file__).resolve().parent.parent
    line = next(ln for ln in (root / "README.md").read_text().splitlines() if ln.startswith("accelerate launch"))
    argv = line.split("#")[0].split()
    assert "--num_processes" in argv  # accelerate refuses a config without a process count otherwise
    argv[argv.index("--config_file") + 1] = str(root / "hfkit/configs/accelerate/ddp.yaml")
    argv[argv.index("--num_processes") + 1] = "2"
    recipe = argv.index("RECIPE")
    argv[recipe:recipe + 1] = ["clm_pretrain", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
                               "tokenizer.vocab_size=300", "max_steps=3", f"output_dir={tmp_path / 'run'}", "--json"]
    accelerate = Path(sys.executable).parent / "accelerate"
    p = subprocess.run([str(accelerate), *argv[1:]], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["world_size"] == 2


# ----------------------------------------------------------------------------- 11. import hfkit registers the classic LMs

@pytest.mark.parametrize("architecture", ["ngram", "lstm"])
def test_a_saved_classic_lm_loads_with_auto_classes_after_import_hfkit(architecture, tmp_path):
    import hfkit

    extra = ["model.extra.order=2"] if architecture == "ngram" else ["model.hidden_size=16", "max_steps=2"]
    hfkit.train("clm_pretrain", [f"model.architecture={architecture}", "tokenizer.kind=char", *extra,
                                 f"output_dir={tmp_path / 'run'}", "max_steps=2", "data.block_size=32",
                                 "save_strategy=no", "load_best_model_at_end=false", "generate.prompts=[]"], quiet=True)
    code = ("import torch, hfkit\nfrom transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'run')!r})\n"
            "print(type(m).__name__, m(torch.tensor([[1, 2, 3]])).logits.shape[-1])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)  # a fresh process
    assert p.returncode == 0, p.stderr[-2000:]
    name, vocab = p.stdout.split()
    assert name == {"ngram": "NGramLM", "lstm": "RecurrentLM"}[architecture] and int(vocab) > 3


# ----------------------------------------------------------------------------- 14. messages with a fix; no work twice; Ctrl-C

@pytest.mark.parametrize("override, message", [
    ("save_strategy=no", "'training.save_strategy'=no: the recipe keeps the best checkpoint"),
    ("save_steps=150", "'training.save_steps'=150 is not a multiple of eval_steps=100"),
    ("evaluation_strategy=steps", "'training.evaluation_strategy' was renamed: did you mean 'training.eval_strategy'?"),
    ("training.per_gpu_train_batch_size=4", "did you mean 'training.per_device_train_batch_size'?"),
])
def test_training_settings_that_transformers_would_refuse_name_the_fix(override, message, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "train", "clm_pretrain", "output_dir=out", override)
    assert rc == 2
    one_line(err, message)
    if "load_best" in message or "save_strategy" in override:
        assert "load_best_model_at_end=false" in err
    assert os.listdir(tmp_path) == []


def test_the_final_evaluation_runs_once(tmp_path):
    import hfkit
    from conftest import TINY_MODEL

    m = hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={tmp_path}", "max_steps=3", "eval_steps=1000"],
                    quiet=True)
    evals = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines() if "eval_loss" in ln]
    assert [e["step"] for e in evals] == [0, 3]  # before training, and Trainer's own at the last step: not again
    assert m["eval_after"]["eval_loss"] == evals[-1]["eval_loss"]
    assert m["eval_after"]["eval_perplexity"] == pytest.approx(math.exp(evals[-1]["eval_loss"]))


def test_scaling_fit_shows_progress_and_stops_on_ctrl_c(tmp_path):
    import signal
    import threading
    import time

    law = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
    runs = [{"run": f"r{i}", "non_embedding_parameters": n, "train_tokens": d,
             "validation_loss": law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]}
            for i, (n, d) in enumerate((n * (1 + k / 1000), d) for k in range(100)
                                        for n in (1e5, 4e5, 1.6e6) for d in (1e6, 4e6, 1.6e7))]
    (tmp_path / "comparison.json").write_text(json.dumps({"runs": runs}))
    p = subprocess.Popen([sys.executable, "-m", "hfkit", "scaling", "fit", str(tmp_path)], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    seen = bytearray()
    reader = threading.Thread(target=lambda: [seen.extend(c) for c in iter(lambda: p.stderr.read(1), b"")], daemon=True)
    reader.start()
    while b"fit L(N, D)" not in seen and p.poll() is None:  # the progress bar is up: the fit is running
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=120)
    reader.join(timeout=10)
    assert rc == 130 and b"hfkit: interrupted" in seen
    assert b"243/243" not in seen and not (tmp_path / "scaling_fit.json").exists()


def test_every_flag_a_help_text_names_exists_in_that_command():
    import argparse
    import re

    from hfkit.cli import build_parser

    def walk(parser, path):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])

    wrong = []
    for path, parser in walk(build_parser(), ["hfkit"]):
        flags = {s for a in parser._actions for s in a.option_strings}
        for a in parser._actions:
            for named in re.findall(r"(?<![\w-])--[a-z][a-z-]+", a.help or ""):
                if named not in flags:
                    wrong.append(f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}: names {named}")
    assert wrong == []


# ----------------------------------------------------------------------------- 12. chat uses the run's own format, or refuses

def _chat(run, *lines):
    p = subprocess.run([sys.executable, "-m", "hfkit", "chat", str(run), "--max-new-tokens", "20"],
                       input="".join(f"{ln}\n" for ln in lines) + "\n", capture_output=True, text=True, timeout=300)
    return p.returncode, [ln.split("model> ", 1)[1].strip() for ln in p.stdout.splitlines() if "model> " in ln], p


@pytest.mark.parametrize("fmt", ["instruction", "chat_templates"])
def test_chat_answers_in_the_prompt_format_the_run_was_tuned_on(fmt, tmp_path):
    import hfkit
    from test_sft import MEMO, _sft_overrides

    data = tmp_path / "memo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MEMO))
    extra = ["sft.format=chat", "sft.templates=[{prompt: '{{ instruction }}', answer: '{{ output }}'}]"] \
        if fmt == "chat_templates" else []
    hfkit.train("sft", _sft_overrides(data, tmp_path / "run", ["max_steps=150", *extra]), quiet=True)
    vocab = json.loads((tmp_path / "run" / "tokenizer.json").read_text())["model"]["vocab"]
    assert ("<|im_start|>" in json.dumps(vocab) or "<|im_start|>" in (tmp_path / "run" / "tokenizer.json").read_text()) \
        == (fmt == "chat_templates")  # an instruction run gets no untrained ChatML tokens
    before = files(tmp_path / "run")
    rc, replies, p = _chat(tmp_path / "run", MEMO[2]["instruction"], "/reset", MEMO[4]["instruction"])
    assert rc == 0, p.stderr
    assert replies == ["cold stone", "empty glass"]
    assert ("its chat template" if fmt == "chat_templates" else "its own prompt format") in p.stdout
    assert files(tmp_path / "run") == before


def test_chat_refuses_a_model_tuned_for_neither(tiny_run):
    run_dir, _ = tiny_run
    before = files(run_dir)
    rc, replies, p = _chat(run_dir, "hello")
    assert rc == 2 and replies == []
    one_line(p.stderr, "no chat template and no instruction prompt format")
    assert files(run_dir) == before


# ----------------------------------------------------------------------------- 13. tables in a pipe; --json everywhere

def test_tables_in_a_pipe_never_cut_a_name(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hfkit", "recipes"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "…" not in p.stdout
    from hfkit.recipe import list_recipes

    for name, r in list_recipes().items():
        assert f" {name} " in p.stdout and r["path"] in p.stdout  # whole, on one line
    # eval compare: run names as long as a user gives them
    for name, acc in (("a_rather_long_experiment_name_for_the_baseline_run", 50.0),
                      ("a_rather_long_experiment_name_for_the_candidate_run", 75.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"hfkit": "x", "kind": "match", "name": name,
                                                           "metrics": {"accuracy": acc, "n": 4}}))
    p = subprocess.run([sys.executable, "-m", "hfkit", "eval", "compare", *sorted(map(str, tmp_path.glob("*.json")))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout and "a_rather_long_experiment_name_for_the_candidate_run" in p.stdout


@pytest.mark.parametrize("argv", [["recipes"], ["prompts"], ["prompts", "show", "few_shot"], ["doctor"],
                                  ["scaling", "plan", "--flops", "1e20"]])
def test_every_listing_has_json(argv, capsys):
    rc, out, err = cli(capsys, *argv, "--json")
    assert rc == 0 and json.loads(out)


# ----------------------------------------------------------------------------- 16. independent references

def test_matching_scores_follow_squad_v2_for_empty_references():
    """By hand, with SQuAD v2.0's rule (empty references dropped unless all are empty):
    1: gold ['Paris'], pred '' -> 0/0; 2: gold [''], pred '' -> 1/1; 3: gold ['London'] -> 1/1;
    4: gold ['the cat sat'], pred 'cat' -> EM 0, F1 2*(1/1)*(1/2)/(1+1/2) = 2/3."""
    from hfkit.evaluation.text_metrics import matching_scores

    preds = ["", "", "London", "cat"]
    refs = [["Paris", "", "London", "the cat sat"], ["", "", "London", ""]]  # two reference streams
    s = matching_scores(preds, refs)
    assert round(s["exact_match"] * 4 / 100) == 2  # counts, not floats
    assert s["token_f1"] == pytest.approx(100 * (0 + 1 + 1 + 2 / 3) / 4)
    assert round(s["accuracy"] * 4 / 100) == 2


def test_bart_noise_never_grows_past_the_block_so_nothing_is_cut():
    import torch

    from hfkit.data.pydoc import default_corpus_documents
    from hfkit.data.tokenizer import train_tokenizer

    tok = train_tokenizer(default_corpus_documents()[:200], "bpe", 500)
    from hfkit.data.noising import bart_noise
    from hfkit.tasks.seq2seq_pretrain import BartDenoiseConfig, DenoisingCollator, sentence_end_table

    is_end = sentence_end_table(tok)
    collator = DenoisingCollator(tok, BartDenoiseConfig(), max_length=8)
    torch.manual_seed(0)
    for i in range(3000):
        block = [(7 * i + k) % 200 + 10 for k in range(6)]  # 8 positions: 6 tokens + <s> + </s>
        noised, record = bart_noise(block, tok.mask_token_id, is_end, 0.3, 3.0, True, 0.0)
        assert len(noised) <= len(block) and record.undo(noised) == block
        inputs, labels = collator.noise(block)
        assert len(inputs) <= 8 and labels[1:-1] == block


def test_a_classifiers_padding_side_is_saved_with_its_tokenizer(tmp_path):
    import hfkit
    from transformers import AutoTokenizer

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"word{i % 7} text {i}", "label": "ab"[i % 2]}) + "\n"
                            for i in range(40)))
    hfkit.train("classify_language", [*HEAD, "data.sources=[{kind: json, path: " + str(data) + "}]",
                                      "classification.padding_side=left", f"output_dir={tmp_path / 'run'}",
                                      "save_strategy=no", "load_best_model_at_end=false"], quiet=True)
    assert AutoTokenizer.from_pretrained(tmp_path / "run").padding_side == "left"


# ----------------------------------------------------------------------------- 2. rag index reads the corpus as training does

@pytest.mark.parametrize("case, message", [
    ("symlink", "a symlink out of the folder"),
    ("binary", "a binary file, not text"),
    ("latin1", "not UTF-8 text"),
    ("number", "field 'text' of record 1 is not text"),
])
def test_rag_index_and_train_refuse_the_same_corpus_files(case, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("A perfectly ordinary document about Python generators and yield. " * 5)
    secret = tmp_path / "secret.txt"
    secret.write_text("my private notes, outside the corpus folder")
    if case == "symlink":
        (corpus / "link.txt").symlink_to(secret)
    elif case == "binary":
        (corpus / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    elif case == "latin1":
        (corpus / "old.txt").write_bytes("caf\xe9 cr\xe8me, an old encoding ".encode("latin-1") * 5)
    else:
        corpus = tmp_path / "records.jsonl"
        corpus.write_text(json.dumps({"text": "a fine document about things"}) + "\n" + json.dumps({"text": 42}) + "\n")
    before = files(tmp_path)
    rc, _, err = cli(capsys, "rag", "index", corpus, "--out", tmp_path / "idx")
    assert rc == 2
    one_line(err, message)
    kind = "json" if case == "number" else "text"
    rc, _, err2 = cli(capsys, "train", "clm_pretrain", "output_dir=run", "data.validation_fraction=0",
                      f"data.sources=[{{kind: {kind}, path: {corpus}}}]", "data.min_chars=1")
    assert rc == 2
    one_line(err2, message)
    assert files(tmp_path) == before and not (tmp_path / "idx").exists() and not (tmp_path / "run").exists()
