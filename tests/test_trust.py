"""Users' files and credentials: hfkit writes only into what is new, empty or its own, never over its
inputs, never leaves a secret on disk, resumes only from whole checkpoints of its own model, and
leaves an earlier run as it was when a run fails."""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL
from hfkit.cli import main

BASE = [o for o in TINY_MODEL if not o.startswith("save_strategy=")]
RUN = BASE + ["save_strategy=steps", "save_steps=5", "save_total_limit=5", "max_steps=10"]


def _train(out, *extra, quiet=True):
    import hfkit

    return hfkit.train("clm_pretrain", RUN + [f"output_dir={out}", *extra], quiet=quiet)


def _snapshot(folder: Path) -> dict:
    """Every file's bytes (but the lock's, which says who holds the folder now)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".hfkit.lock"}


def _cli(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (checkpoints at 5 and 10)."""
    out = tmp_path_factory.mktemp("trust") / "run"
    _train(out)
    return out


# --- ownership of output folders ---------------------------------------------------------------------

def test_a_finished_run_is_neither_overwritten_nor_mixed_with_another(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = _snapshot(run)
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={run}"], capsys)
    assert rc == 2 and "already holds a finished hfkit train output" in err and "overwrite_output_dir=true" in err
    assert _snapshot(run) == before and err.count("\n") == 1


def test_a_folder_hfkit_did_not_write_is_never_used(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for extra in ([], ["overwrite_output_dir=true"], ["resume_from_checkpoint=auto"]):
        rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={mine}", *extra], capsys)
        assert rc == 2 and "is not empty and was not written by hfkit (thesis.tex)" in err, err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine, and a failure leaves it empty again
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={empty}", "data.sources.0.kind=text",
                       f"data.sources.0.path={mine / 'thesis.tex'}", "data.min_chars=1000"], capsys)
    assert rc == 2 and empty.is_dir() and not list(empty.iterdir())


def test_overwrite_replaces_a_run_only_when_the_new_one_finishes(finished, tmp_path, capsys, monkeypatch):
    from hfkit.training.trainer import HfkitTrainer

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = _snapshot(run)

    def crash(self, *a, **k):
        raise RuntimeError("the machine fell over")

    monkeypatch.setattr(HfkitTrainer, "_save_checkpoint", crash)
    with pytest.raises(RuntimeError):
        _train(run, "overwrite_output_dir=true", "learning_rate=1e-2")
    assert _snapshot(run) == before  # the earlier run, byte for byte
    assert not (tmp_path / ".run.hfkit-new").exists()  # and no debris (no checkpoint was made)
    monkeypatch.undo()
    _train(run, "overwrite_output_dir=true", "learning_rate=1e-2", "max_steps=12")
    from hfkit.schema import yaml_load

    assert yaml_load((run / "recipe.yaml").read_text())["training"]["learning_rate"] == 0.01  # the new run
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-12", "checkpoint-5"]
    state = json.loads((run / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12 and not list(tmp_path.glob(".run.hfkit-*"))
    (run / "notes.txt").write_text("mine")  # a file hfkit did not write stops a replacement
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={run}", "overwrite_output_dir=true"], capsys)
    assert rc == 2 and "also holds files hfkit did not write (notes.txt)" in err


def test_an_adapter_run_never_writes_into_its_base_model(finished, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(finished, base)
    before = _snapshot(base)
    for extra in ([], ["overwrite_output_dir=true"], ["resume_from_checkpoint=auto"]):
        rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"model.name_or_path={base}", "adapter.method=lora",
                           f"output_dir={base}", *extra], capsys)
        assert rc == 2 and f"is the base model '{base}': hfkit never writes over its own inputs" in err, err
    assert _snapshot(base) == before


def test_tokenizer_and_merge_outputs_are_hfkit_folders_replaced_only_when_asked(tmp_path, capsys):
    tok = tmp_path / "tok"
    args = ["tokenizer", "train", "--vocab-size", "300", "--output", tok]
    assert _cli(args, capsys)[0] == 0 and json.loads((tok / ".hfkit.json").read_text())["kind"] == "tokenizer"
    rc, _, err = _cli(args, capsys)
    assert rc == 2 and "already holds a finished hfkit tokenizer output" in err and "--overwrite" in err
    first = (tok / "tokenizer.json").read_bytes()
    assert _cli(args[:3] + ["400"] + args[4:] + ["--overwrite"], capsys)[0] == 0
    assert (tok / "tokenizer.json").read_bytes() != first and not list(tmp_path.glob(".tok.hfkit-*"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x")
    rc, _, err = _cli(["tokenizer", "train", "--output", other, "--overwrite"], capsys)
    assert rc == 2 and "was not written by hfkit" in err and [p.name for p in other.iterdir()] == ["data.csv"]


def test_merge_never_writes_into_the_adapter_or_its_base(finished, tmp_path, capsys):
    lora = tmp_path / "lora"
    _train(lora, f"model.name_or_path={finished}", "adapter.method=lora", "max_steps=2", "save_strategy=no")
    for out in (lora, finished):
        before = _snapshot(out)
        rc, _, err = _cli(["merge", lora, "--output", out, "--overwrite"], capsys)
        assert rc == 2 and "hfkit never writes over its own inputs" in err and _snapshot(out) == before, err
    assert _cli(["merge", lora], capsys)[0] == 0 and (lora / "merged" / "model.safetensors").is_file()
    rc, _, err = _cli(["merge", lora], capsys)
    assert rc == 2 and "already holds a finished hfkit merge output" in err
    assert _cli(["merge", lora, "--overwrite"], capsys)[0] == 0


def test_file_outputs_never_replace_inputs_or_files_hfkit_did_not_write(tmp_path, capsys):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("the cat sat\n")
    ref.write_text("the cat sat down\n")
    rc, _, err = _cli(["eval", "bleu", "--predictions", hyp, "--references", ref, "--output", ref], capsys)
    assert rc == 2 and "is the references" in err and ref.read_text() == "the cat sat down\n"
    rc, _, err = _cli(["eval", "bleu", "--predictions", hyp, "--references", ref, "--output", ref, "--overwrite"], capsys)
    assert rc == 2 and ref.read_text() == "the cat sat down\n"  # not even when asked
    mine = tmp_path / "report.json"
    mine.write_text('{"my": "numbers"}')
    rc, _, err = _cli(["eval", "bleu", "--predictions", hyp, "--references", ref, "--output", mine], capsys)
    assert rc == 2 and "exists and was not written by hfkit" in err and json.loads(mine.read_text()) == {"my": "numbers"}
    out = tmp_path / "bleu.json"
    assert _cli(["eval", "bleu", "--predictions", hyp, "--references", ref, "--output", out], capsys)[0] == 0
    assert _cli(["eval", "bleu", "--predictions", hyp, "--references", ref, "--output", out], capsys)[0] == 0  # its own
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"source": "mine"}\n')
    rc, _, err = _cli(["data", "gettext", "--lang", "de", "--output", pairs], capsys)
    assert rc == 2 and "exists and was not written by hfkit" in err and pairs.read_text() == '{"source": "mine"}\n'


def test_a_second_run_into_a_running_runs_folder_is_refused_and_the_first_finishes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hfkit", "train", "clm_pretrain", *BASE, "max_steps=2500", "save_strategy=no",
           f"output_dir={out}"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text()):
        time.sleep(0.2)
    for extra in ([], ["resume_from_checkpoint=auto"], ["overwrite_output_dir=true"]):
        t0 = time.time()
        second = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is in use by another hfkit run (pid" in second.stderr, second.stderr
        assert second.stderr.count("\n") == 1 and time.time() - t0 < 30  # refused before any data work
    assert first.poll() is None  # still training
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["train_loss"] > 0 and (out / "model.safetensors").is_file()
    assert json.loads((out / ".hfkit.json").read_text())["state"] == "finished"


def test_a_killed_run_leaves_no_stuck_lock(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hfkit", "train", "clm_pretrain", *BASE, "max_steps=100000", "save_strategy=steps",
           "save_steps=3", f"output_dir={out}"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("checkpoint-*")):
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    again = subprocess.run([*cmd[:-2], "max_steps=4", f"output_dir={out}", "resume_from_checkpoint=auto"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]


# --- checkpoints ------------------------------------------------------------------------------------

def test_auto_skips_a_newest_checkpoint_with_a_truncated_optimizer_and_stays_bit_exact(finished, tmp_path, capsys):
    part = tmp_path / "part"
    part.mkdir()
    for f in ("recipe.yaml", ".hfkit.json"):
        shutil.copy(finished / f, part / f)
    marker = json.loads((part / ".hfkit.json").read_text())
    (part / ".hfkit.json").write_text(json.dumps({**marker, "state": "running"}))  # as a killed run leaves it
    for ck in ("checkpoint-5", "checkpoint-10"):
        shutil.copytree(finished / ck, part / ck)
    opt = part / "checkpoint-10" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])  # the disk filled up mid-write
    _train(part, "resume_from_checkpoint=auto")
    err = capsys.readouterr().err
    assert "not resuming from checkpoint-10: optimizer.pt is" in err and "cut short" in err
    a, b = load_file(finished / "model.safetensors"), load_file(part / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)  # resumed from checkpoint-5: the same model


def test_a_checkpoint_of_another_model_or_a_broken_explicit_path_is_refused_up_front(finished, tmp_path, capsys):
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={tmp_path / 'x'}",
                       f"resume_from_checkpoint={tmp_path / 'nowhere'}"], capsys)
    assert rc == 2 and "cannot be resumed: no such folder" in err and not (tmp_path / "x").exists()
    broken = tmp_path / "broken"
    shutil.copytree(finished / "checkpoint-10", broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:1000])
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={tmp_path / 'x'}",
                       f"resume_from_checkpoint={broken}"], capsys)
    assert rc == 2 and "model.safetensors is 1,000 bytes" in err and not (tmp_path / "x").exists()
    other = tmp_path / "other"
    shutil.copytree(finished, other)
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={other}", "resume_from_checkpoint=auto",
                       "model.hidden_size=48", "max_steps=40"], capsys)  # more steps than it finished
    assert rc == 2 and "no checkpoint in" in err and "belongs to a different model" in err


# --- secrets and permissions ------------------------------------------------------------------------

def test_a_token_given_as_an_override_is_written_nowhere(tmp_path, capsys, monkeypatch):
    token = "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12345"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "run"
    _train(out, f"hub_token={token}", "report_to=[tensorboard]", "logging_steps=1")
    err = capsys.readouterr().err
    assert err.count("training.hub_token is kept in memory") == 1 and token not in err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("tfevents" in p.name for p in files)
    assert not [p for p in files if token.encode() in p.read_bytes()]
    assert os.environ["HF_TOKEN"] == token  # used from memory
    rc, _, err = _cli(["train", "clm_pretrain", *RUN, f"output_dir={tmp_path / 'y'}", f"model.extra.x={token}"],
                      capsys)
    assert rc == 2 and "looks like a Hugging Face token" in err and token not in err


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "run"
        _train(out, "max_steps=2", "save_strategy=no")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["recipe.yaml"] == modes["metrics.json"] == modes["model.safetensors"] == 0o640, modes


# --- smaller defects --------------------------------------------------------------------------------

def test_saved_run_keeps_use_cache_and_the_models_length(finished):
    cfg = json.loads((finished / "config.json").read_text())
    tok = json.loads((finished / "tokenizer_config.json").read_text())
    assert cfg["use_cache"] is True and tok["model_max_length"] == cfg["n_positions"] == 64


def test_eval_perplexity_on_a_run_uses_the_block_size_it_trained_with(finished, capsys):
    rc, out, _ = _cli(["eval", "perplexity", "--model", finished, "--data", "default", "--split", "validation",
                       "--json", "--output", finished.parent / "a.json"], capsys)
    default = json.loads(out)
    rc2, out, _ = _cli(["eval", "perplexity", "--model", finished, "--data", "default", "--split", "validation",
                        "--block-size", "32", "--json", "--output", finished.parent / "b.json"], capsys)
    explicit = json.loads(out)
    rc3, out, _ = _cli(["eval", "perplexity", "--model", finished, "--data", "default", "--split", "validation",
                        "--block-size", "64", "--json", "--output", finished.parent / "c.json"], capsys)
    longest = json.loads(out)
    assert rc == rc2 == rc3 == 0 and default["settings"]["block_size"] == 32  # data.block_size of TINY_MODEL
    assert default["metrics"]["perplexity"] == explicit["metrics"]["perplexity"] != longest["metrics"]["perplexity"]


def test_hub_import_notices_changed_content(tmp_path, finished, monkeypatch):
    from transformers import AutoConfig

    from hfkit.hub import import_to_cache

    folder = tmp_path / "model"
    shutil.copytree(finished, folder, ignore=shutil.ignore_patterns("checkpoint-*", "runs"))
    first = import_to_cache(folder, "me/tiny", tmp_path / "hub")
    changed = (folder / "config.json").read_text().replace('"n_head": 2', '"n_head": 4')  # same size, new content
    assert len(changed) == len((folder / "config.json").read_text())
    (folder / "config.json").write_text(changed)
    second = import_to_cache(folder, "me/tiny", tmp_path / "hub")
    assert second != first
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert AutoConfig.from_pretrained("me/tiny", cache_dir=tmp_path / "hub").n_head == 4


def test_a_missing_local_path_is_reported_as_a_missing_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for runs_exists in (False, True):
        if runs_exists:
            (tmp_path / "runs").mkdir()
        rc, _, err = _cli(["eval", "perplexity", "--model", "runs/clm_pretrain", "--data", "default"], capsys)
        assert rc == 2 and "no such folder" in err and "train it first" in err and "network" not in err.lower(), err
        rc, _, err = _cli(["train", "lora_sft", "output_dir=out"], capsys)
        assert rc == 2 and "recipe key 'model.name_or_path': no such folder" in err, err


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_a_broken_pipe_ends_quietly(finished, as_json):
    p = subprocess.Popen([sys.executable, "-m", "hfkit", "eval", "perplexity", "--model", str(finished), "--data",
                          "default", "--output", str(finished.parent / "pipe.json"), "--overwrite",
                          *(["--json"] if as_json else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is printed (`| head` that has read enough)
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 1 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_ranks_other_than_0_leave_the_folder_checks_to_rank_0(finished, tmp_path):
    """In a launched run rank 0 claims and locks the folder; the other ranks must not read that as
    'in use' (they run the same recipe a moment later)."""
    from hfkit.errors import HfkitError
    from hfkit.outputs import FolderLock
    from hfkit.recipe import load_recipe
    from hfkit.job import output_plan

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    recipe = load_recipe("clm_pretrain", RUN + [f"output_dir={run}", "overwrite_output_dir=true"])
    lock = FolderLock(run, "output_dir")  # rank 0, running
    try:
        with pytest.raises(HfkitError, match="is in use by another hfkit run"):
            output_plan(recipe)
        plan = output_plan(recipe, check=False)
        assert plan.mode == "replace" and plan.workdir == tmp_path / ".run.hfkit-new"  # where rank 0 writes too
    finally:
        lock.release()
