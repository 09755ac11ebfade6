"""The bad-input battery: every command against a table of bad inputs. Each must exit 2 with one
`hfkit: error:` line naming the problem, no traceback, and leave no partial output behind."""
import json
import shutil
import subprocess
import sys

import pytest

from hfkit.cli import main

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "max_steps=2"]
# the task heads' recipes with a tiny BERT built here instead of MiniLM, on the case's own records
HEAD = ["model.name_or_path=null", "model.architecture=bert", "tokenizer.kind=wordpiece", "tokenizer.min_frequency=1",
        "data.validation_fraction=0"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_run):
    d = tmp_path_factory.mktemp("bad")
    run_dir, _ = tiny_run
    shutil.copytree(run_dir, d / "model", ignore=shutil.ignore_patterns("checkpoint-*", "runs"))
    (d / "trunc").mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(run_dir / f, d / "trunc" / f)
    (d / "trunc" / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes()[:5000])
    (d / "no_weights").mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(run_dir / f, d / "no_weights" / f)
    (d / "not_a_model").mkdir()
    (d / "not_a_model" / "notes.txt").write_text("hello")
    (d / "broken.yaml").write_text("task: clm\nmodel:\n  hidden_size: 4\n   num_layers: [\n")
    (d / "latin1.yaml").write_bytes("task: clm\n# caf\xe9\n".encode("latin-1"))
    (d / "list.yaml").write_text("- task\n- clm\n")
    (d / "unknown_top.yaml").write_text("task: clm\ntrainer:\n  max_steps: 3\n")
    (d / "empty.txt").write_text("")
    (d / "empty.jsonl").write_text("")
    (d / "bad.jsonl").write_text('{"text": "a fine document about things"}\n{"text": "x" "y"}\n')
    (d / "no_field.jsonl").write_text('{"body": "a fine document about things"}\n')
    (d / "bad.csv").write_text('text,b\n"unterminated,1\n')
    (d / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e and other words of a long enough text".encode("latin-1"))
    (d / "latin1_prompts.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (d / "afile").write_text("a file where a folder is expected")
    (d / "preds.txt").write_text("a\nb\n")
    (d / "ds.json").write_text('{"zero_optimization": {"stage": 2}}')
    rows = [json.dumps({"text": f"document number {i} about things"}) for i in range(1499)] + ['{"text": 5}']
    (d / "late_int.jsonl").write_text("\n".join(rows) + "\n")  # the bad record is past the first 1000
    (d / "labels.csv").write_text("text,label\ngood film,pos\nbad film,neg\nsome film,neutral\nfine film,pos\n")
    (d / "nolabel.csv").write_text("text,stars\ngood film,5\nbad film,1\n")
    qa = [{"question": "Where is Paris?", "context": "Paris is in France.", "answers": {"text": ["France"], "answer_start": [12]}},
          {"question": "Where is Bonn?", "context": "Bonn is in Germany.", "answers": {"text": ["Germany"], "answer_start": [3]}}]
    (d / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in qa) + "\n")
    qa[1]["answers"] = {"text": [], "answer_start": []}
    (d / "qa_none.jsonl").write_text("\n".join(json.dumps(r) for r in qa) + "\n")
    tags = [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["c", "d", "e"], "tags": ["O", "B-X"]}]
    (d / "tags.jsonl").write_text("\n".join(json.dumps(r) for r in tags) + "\n")
    from transformers import ByT5Tokenizer

    ByT5Tokenizer().save_pretrained(d / "slow_tokenizer")  # no tokenizer.json: a Python (slow) tokenizer
    return d


# (argv, message, path that must not exist afterwards); {d} is the fixture folder
CASES = [
    # train: recipe files
    (["train", "{d}/broken.yaml"], "broken.yaml: invalid YAML at line 4", None),
    (["train", "{d}/latin1.yaml"], "latin1.yaml: recipe is not UTF-8 text", None),
    (["train", "{d}/list.yaml"], "list.yaml: a recipe must be a YAML mapping of sections, got list", None),
    (["train", "{d}/unknown_top.yaml"], "unknown recipe key 'trainer'", None),
    (["train", "{d}/missing.yaml"], "recipe file not found", None),
    # train: overrides (unknown keys, wrong types, malformed)
    (["train", "clm_pretrain", "model.hidden_sise=3"], "unknown recipe key 'model.hidden_sise'", "{d}/out"),
    (["train", "clm_pretrain", "max_steps=many"], "'training.max_steps' expects int, got str 'many'", "{d}/out"),
    (["train", "clm_pretrain", "learning_rate=fast"], "'training.learning_rate' expects float", "{d}/out"),
    (["train", "clm_pretrain", "model.architecture=gpt3"], "expects one of 'gpt2', 'llama', 'bert'", "{d}/out"),
    (["train", "clm_pretrain", "training=5"], "recipe key 'training' expects dict, got int 5", "{d}/out"),
    (["train", "clm_pretrain", "max_steps"], "is not of the form key=value", "{d}/out"),
    (["train", "clm_pretrain", "=5"], "has an empty key", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.7.kind=text"], "'7' is not a valid index", "{d}/out"),
    (["train", "clm_pretrain", "training.no_such_arg=1"], "unknown recipe key 'training.no_such_arg'", "{d}/out"),
    # train: data files missing, empty, corrupt, not UTF-8
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/missing.jsonl"],
     "no such file or folder: {d}/missing.jsonl", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/empty.jsonl"],
     "empty.jsonl: file is empty", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=text", "data.sources.0.path={d}/empty.txt"],
     "no documents left after filtering", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/bad.jsonl"],
     "bad.jsonl line 2: invalid JSON", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/no_field.jsonl"],
     "text field 'text' not found (columns: body)", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=csv", "data.sources.0.path={d}/bad.csv"],
     "bad.csv: cannot read as csv: Error tokenizing data", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=parquet", "data.sources.0.path={d}/bad.parquet"],
     "bad.parquet: cannot read as parquet", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=text", "data.sources.0.path={d}/latin1.txt"],
     "latin1.txt: not UTF-8", "{d}/out"),
    # train: models (truncated weights, wrong folders), output folders
    (["train", "clm_pretrain", "model.name_or_path={d}/trunc"], "incomplete metadata", "{d}/out"),
    (["train", "clm_pretrain", "model.name_or_path={d}/not_a_model"], "has no config.json: not a saved model", "{d}/out"),
    (["train", "clm_pretrain", "model.name_or_path={d}/no_weights"], "no file named model.safetensors", "{d}/out"),
    (["train", "clm_pretrain", "tokenizer.path={d}/nowhere"], "recipe key 'tokenizer.path': no such folder", "{d}/out"),
    (["train", "clm_pretrain", "output_dir={d}/afile/run"], "'{d}/afile' is a file, not a folder", "{d}/afile/run"),
    (["train", "clm_pretrain", "output_dir={d}/afile"], "'{d}/afile' is a file, not a folder", None),
    (["train", "clm_pretrain", "output_dir=/proc/hfkit-run"], "is not writable", "/proc/hfkit-run"),
    (["train", "clm_pretrain", "--num-processes", "2", "output_dir={d}/afile/x"], "is a file, not a folder", None),
    (["train", "clm_pretrain", "--accelerate-config", "{d}/none.yaml"], "no such file or shipped config", None),
    # train: every setting checked before work (TrainingArguments, optimizer, model config, environment)
    (["train", "clm_pretrain", "learning_rate=-1"], "(optimizer AdamW): Invalid learning rate: -1", "{d}/out"),
    (["train", "clm_pretrain", "per_device_train_batch_size=0"], "'training.per_device_train_batch_size' must be >= 1",
     "{d}/out"),
    (["train", "clm_pretrain", "max_steps=0"], "'training.max_steps' must be > 0", "{d}/out"),
    (["train", "clm_pretrain", "warmup_steps=-5"], "warmup_steps >= 0", "{d}/out"),
    (["train", "clm_pretrain", "model.num_heads=3"], "'model.hidden_size'=32 is not divisible by model.num_heads=3",
     "{d}/out"),
    (["train", "clm_pretrain", "model.architecture=llama", "model.num_kv_heads=3"], "must divide model.num_heads=2",
     "{d}/out"),
    (["train", "clm_pretrain", "report_to=[wandb]"], "'training.report_to': 'wandb' is not installed here", "{d}/out"),
    (["train", "clm_pretrain", "report_to=[nosuch]"], "unknown logger 'nosuch'", "{d}/out"),
    (["train", "clm_pretrain", "model.attn_implementation=flash_attention_2"], "FlashAttention2", "{d}/out"),
    (["train", "clm_pretrain", "training.deepspeed={d}/ds.json"], "needs the deepspeed package", "{d}/out"),
    (["train", "clm_pretrain", "generate.max_new_tokens=0"], "'generate.max_new_tokens' must be >= 1", "{d}/out"),
    (["train", "clm_pretrain", "generate.do_sample=true", "generate.temperature=0"], "'generate.temperature' must be > 0, got 0.0",
     "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl"],
     "field 'text' of record 1499 is not text", "{d}/out"),
    (["train", "clm_pretrain", "resume_from_checkpoint={d}/nowhere"], "cannot be resumed: no such folder", "{d}/out"),
    (["train", "clm_pretrain", "model.extra.x=hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "looks like a Hugging Face token",
     "{d}/out"),
    # train: output folders that are not the run's to write
    (["train", "clm_pretrain", "output_dir={d}/model"], "already holds a finished hfkit train output", None),
    (["train", "clm_pretrain", "output_dir={d}/not_a_model"], "is not empty and was not written by hfkit", None),
    (["train", "clm_pretrain", "output_dir={d}/model", "model.name_or_path={d}/model", "adapter.method=lora",
      "resume_from_checkpoint=auto"], "is the base model", None),
    (["train", "clm_pretrain", "--num-processes", "64"], "more than this machine's", None),
    (["train", "clm_pretrain", "--accelerate-config", "fsdp"], "runs FSDP on GPUs, and this machine has none", None),
    (["train", "clm_pretrain", "--accelerate-config", "deepspeed_zero3"], "uses DeepSpeed, which is not installed",
     None),
    # data report / gettext
    (["data", "report", "{d}/broken.yaml"], "invalid YAML", None),
    (["data", "report", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/bad.jsonl"],
     "bad.jsonl line 2", None),
    (["data", "gettext", "--lang", "xx", "--output", "{d}/pairs.jsonl"], "no gettext catalogs for language 'xx'",
     "{d}/pairs.jsonl"),
    (["data", "gettext", "--lang", "de", "--output", "{d}/afile/pairs.jsonl"], "is a file, not a folder", None),
    (["data", "gettext", "--lang", "de", "--output", "{d}/preds.txt"], "exists and was not written by hfkit", None),
    # tokenizer
    (["tokenizer", "train", "--data", "{d}/empty.txt", "--output", "{d}/tok"], "no text to train a tokenizer on",
     "{d}/tok"),
    (["tokenizer", "train", "--data", "{d}/bad.jsonl", "--output", "{d}/tok"], "line 2", "{d}/tok"),
    (["tokenizer", "train", "--data", "{d}/latin1.txt", "--output", "{d}/tok"], "not UTF-8", "{d}/tok"),
    (["tokenizer", "train", "--output", "{d}/afile/tok"], "is a file, not a folder", None),
    (["tokenizer", "train", "--kind", "sentencepiece", "--output", "{d}/tok"], "invalid choice", "{d}/tok"),
    (["tokenizer", "train", "--output", "{d}/not_a_model", "--overwrite"], "is not empty and was not written by hfkit",
     None),
    (["tokenizer", "train", "--output", "{d}/model", "--overwrite"], "holds an hfkit train folder", None),
    # eval / generate / chat: truncated weights, wrong folders, bad data, bad output paths
    (["eval", "perplexity", "--model", "{d}/trunc", "--data", "default"], "incomplete metadata", None),
    (["eval", "perplexity", "--model", "{d}/not_a_model", "--data", "default"], "has no config.json", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "{d}/empty.txt"], "no text to score", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "{d}/latin1.txt"], "not UTF-8", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "default", "--output", "{d}/afile/x.json"],
     "is a file, not a folder", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "default", "--block-size", "4096"],
     "exceeds the model's maximum positions", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "default", "--output", "{d}/preds.txt"],
     "exists and was not written by hfkit", None),
    (["eval", "perplexity", "--model", "{d}/model", "--data", "default", "--output", "{d}/model/config.json",
      "--overwrite"], "is a file in the model", None),
    (["eval", "bleu", "--predictions", "{d}/preds.txt", "--references", "{d}/preds.txt", "--output",
      "{d}/preds.txt", "--overwrite"], "is the predictions", None),
    (["eval", "perplexity", "--model", "runs/no_such_run", "--data", "default"], "no such folder", None),
    (["generate", "--model", "{d}/trunc", "--prompt", "hi"], "incomplete metadata", None),
    (["generate", "--model", "{d}/model", "--prompts-file", "{d}/latin1_prompts.txt"], "not UTF-8", None),
    (["generate", "--model", "{d}/model", "--prompts-file", "{d}/empty.txt"], "no prompts in the file", None),
    (["generate", "--model", "{d}/model", "--prompts-file", "{d}/none.txt"], "no such file", None),
    (["chat", "{d}/trunc"], "incomplete metadata", None),
    # task heads: labels, answers and tokenizers
    (["train", "classify_language", *HEAD, "classification.group_field=null", "data.sources.0.kind=csv",
      "data.sources.0.path={d}/labels.csv",
      "classification.labels=[pos,neg]"],
     "data source 'labels' record 2: label 'neutral' is not in classification.labels (pos, neg)", "{d}/out"),
    (["train", "classify_language", *HEAD, "classification.group_field=null", "data.sources.0.kind=csv",
      "data.sources.0.path={d}/labels.csv", "classification.problem_type=regression"],
     "data source 'labels' record 0: label 'pos' is not a finite number (problem_type regression)", "{d}/out"),
    (["train", "classify_language", *HEAD, "classification.group_field=null", "data.sources.0.kind=csv",
      "data.sources.0.path={d}/nolabel.csv"],
     "nolabel.csv: field 'label' not found (columns: text, stars)", "{d}/out"),
    (["train", "pydoc_qa_extractive", *HEAD, "extractive_qa.group_field=null", "data.sources.0.kind=json",
      "data.sources.0.path={d}/qa.jsonl"],
     "data source 'qa' record 1: answer 'Germany' does not match the context at answer_start=3", "{d}/out"),
    (["train", "pydoc_qa_extractive", *HEAD, "extractive_qa.group_field=null", "data.sources.0.kind=json",
      "data.sources.0.path={d}/qa_none.jsonl",
      "extractive_qa.version_2_with_negative=false"],
     "record 1: no answer; set extractive_qa.version_2_with_negative=true", "{d}/out"),
    (["train", "code_tokens", *HEAD, "token_classification.group_field=null", "data.sources.0.kind=json",
      "data.sources.0.path={d}/tags.jsonl"],
     "record 1: tokens (3) and tags (2) must be lists of the same length", "{d}/out"),
    (["train", "code_tokens", *HEAD, "tokenizer.path={d}/slow_tokenizer", "data.sources.0.max_records=1"],
     "task token_classification needs a fast tokenizer", "{d}/out"),
    # streaming sources
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl", "data.sources.0.streaming=true", "max_steps=-1"],
     "recipe key 'training.max_steps' is required with data.sources.0.streaming", "{d}/out"),
    (["train", "sft", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl", "data.sources.0.streaming=true"],
     "task 'sft' reads its data whole", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl", "data.sources.0.streaming=true", "data.sources.0.epochs=2"],
     "recipe key 'data.sources.0.epochs': a streaming mixture is drawn by weight", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/no_field.jsonl", "data.sources.0.streaming=true"],
     "text field 'text' not found", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/bad.jsonl", "data.sources.0.streaming=true"],
     "data.sources.0 ({d}/bad.jsonl): cannot stream: JSON parse error", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl",
      "data.sources.0.streaming=true"], "late_int.jsonl: field 'text' of a record is not text", "{d}/out"),
    (["train", "clm_pretrain", "data.sources.0.kind=json", "data.sources.0.path={d}/late_int.jsonl", "data.sources.0.streaming=true",
      "dataloader_num_workers=2"], "'training.dataloader_num_workers' must be 0 with data.sources.0.streaming", "{d}/out"),
    # sweeps (compare_lms): every run is checked before the first trains
    (["train", "compare_lms", "sweep.baseline.model=nope"],
     "recipe key 'sweep.baseline.model'='nope' is not a choice of sweep.grid", "{d}/out"),
    (["train", "compare_lms", "sweep.grid.model.rnn=5"], "recipe key 'sweep.grid.model.rnn' must be a mapping", "{d}/out"),
    (["train", "compare_lms", "sweep.grid.model.rnn.output_dir={d}/x"], "a run's folder is <training.output_dir>/char-rnn",
     "{d}/out"),
    (["train", "compare_lms", "sweep.grid.model.lstm.model.architecture=lstn"],
     "sweep run 'char-lstm': recipe key 'model.architecture'", "{d}/out"),
    (["train", "compare_lms", "sweep.grid.model.transformer.model.extra.bogus=1"],
     "sweep run 'char-transformer': recipe key 'model.extra.bogus' is not a field of GPT2Config", "{d}/out"),
    (["train", "compare_lms", "sweep.repeat=2"], "unknown recipe key 'sweep.repeat'", "{d}/out"),
    (["train", "compare_lms", "--num-processes", "2"], "is a sweep: its runs train one after another", "{d}/out"),
    (["data", "report", "compare_lms"], "this recipe is a sweep", None),
    (["train", "compare_lms", "sweep.grid.tokenizer.char-kn3.tokenizer.kind=char",
      "sweep.grid.model.kn3-unigram.model.architecture=ngram"], "two runs would both be named 'char-kn3-unigram'",
     "{d}/out"),
    (["train", "compare_lms", "data.sources.0.kind=text", "data.sources.0.path={d}/empty.txt"],
     "data: no documents left after filtering", "{d}/out"),  # the first run fails: no empty sweep folder left
    (["train", "sft", "sft.padding_free=false", "sft.packing_strategy=bfd"],
     "recipe key 'sft.packing_strategy'=bfd packs padding-free rows", "{d}/out"),
    # scaling laws
    (["scaling", "sweep", "clm_pretrain", "--sizes", "12", "--tokens", "1k"], "--sizes: '12' is not HIDDENxLAYERS", None),
    (["scaling", "sweep", "clm_pretrain", "--sizes", "32x1", "--tokens", "lots"], "--tokens: 'lots' is not a number",
     None),
    (["scaling", "sweep", "compare_lms", "--sizes", "32x1", "--tokens", "1k"], "is already a sweep", None),
    (["scaling", "plan", "--flops", "-5"], "--flops: must be > 0, got -5.0", None),
    (["scaling", "plan", "--flops", "1e20", "--fit", "{d}/preds.txt"], "not a scaling_fit.json", None),
    (["scaling", "fit", "{d}/not_a_model"], "not a sweep's comparison table", "{d}/not_a_model/scaling_fit.png"),
    # hub import / push / merge
    (["hub", "import", "{d}/nowhere", "--repo-id", "me/m"], "no such folder to import", None),
    (["hub", "import", "{d}/model", "--repo-id", "bad id!"], "must be owner/name", None),
    (["push", "{d}/not_a_model", "--repo-id", "me/m", "--dry-run"], "not a finished run folder", None),
    (["push", "{d}/trunc", "--repo-id", "me/m", "--dry-run"], "not a loadable safetensors file", None),
    (["push", "{d}/model", "--repo-id", "nope", "--dry-run"], "must be owner/name", None),
    (["merge", "{d}/model"], "holds no adapter", "{d}/model/merged"),
]


@pytest.mark.parametrize("argv, message, absent", CASES, ids=[f"{c[0][0]}-{c[1][:28]}" for c in CASES])
def test_bad_input_battery(argv, message, absent, bad, capsys):
    fmt = lambda s: s.format(d=bad)  # noqa: E731
    argv = [fmt(a) for a in argv]
    if argv[0] == "train":  # the case's own overrides come last, so they win
        argv = argv[:2] + TINY + [f"output_dir={bad}/out"] + argv[2:]
    before = _snapshot(bad)
    rc = main(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("hfkit")]
    assert rc == 2, err[-2000:]
    assert len(errors) == 1 and errors[0].startswith("hfkit: error: "), err[-2000:]
    assert fmt(message) in errors[0]
    assert "Traceback" not in err
    if absent:
        from pathlib import Path

        assert not Path(fmt(absent)).exists(), f"partial output left: {fmt(absent)}"
    assert _snapshot(bad) == before  # no file changed, none added (the inputs and every existing folder intact)


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".hfkit.lock"}


def test_battery_through_the_real_entry_point(bad):
    """The console entry point itself (a fresh process): exit 2 and exactly one stderr line."""
    for argv, message in [(["train", str(bad / "broken.yaml")], "invalid YAML"),
                          (["push", str(bad / "trunc"), "--repo-id", "me/m", "--dry-run"], "safetensors")]:
        p = subprocess.run([sys.executable, "-m", "hfkit", *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert json.dumps(p.stdout) == '""'
