"""Exact resume, `resume_from_checkpoint=auto`, and clean interruption by a signal."""
import json
import shutil
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from conftest import TINY_MODEL

BASE = [o for o in TINY_MODEL if not o.startswith("save_strategy=")]
RUN = BASE + ["save_strategy=steps", "save_steps=15", "save_total_limit=5"]


def test_resume_auto_is_bit_exact_and_skips_incomplete_checkpoints(tmp_path):
    import hfkit
    from hfkit.training.checkpoints import latest_complete_checkpoint

    full = tmp_path / "full"
    hfkit.train("clm_pretrain", RUN + [f"output_dir={full}", "max_steps=30"], quiet=True)
    # a run killed after step 15: its folder holds what the run wrote at the start (the recipe and the
    # marker of an hfkit run), checkpoint-15, and a half-written checkpoint-20
    part = tmp_path / "part"
    part.mkdir()
    for f in ("recipe.yaml", ".hfkit.json"):
        shutil.copy(full / f, part / f)
    marker = json.loads((part / ".hfkit.json").read_text())
    (part / ".hfkit.json").write_text(json.dumps({**marker, "state": "running"}))  # as a killed run leaves it
    shutil.copytree(full / "checkpoint-15", part / "checkpoint-15")
    (part / "checkpoint-20").mkdir()
    shutil.copy(full / "checkpoint-15" / "model.safetensors", part / "checkpoint-20" / "model.safetensors")
    assert latest_complete_checkpoint(part).name == "checkpoint-15"
    m = hfkit.train("clm_pretrain", RUN + [f"output_dir={part}", "max_steps=30", "resume_from_checkpoint=auto"],
                    quiet=True)
    steps = [r["step"] for r in map(json.loads, (part / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps and min(steps) > 15  # it resumed: steps 1-15 were not trained again
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit-exact
    assert m["train"]["train_loss"] > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert latest_complete_checkpoint(empty) is None  # auto then starts fresh


def test_sigterm_saves_a_loadable_checkpoint_and_exits(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hfkit", "train", "clm_pretrain", *TINY_MODEL, "max_steps=100000", f"output_dir={out}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "interrupted by SIGTERM at step" in stderr and "resume_from_checkpoint=auto" in stderr
    from hfkit.training.checkpoints import latest_complete_checkpoint

    ck = latest_complete_checkpoint(out)
    assert ck is not None
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["global_step"] == int(ck.name.split("-")[1]) > 0
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(ck)  # loadable


def test_a_checkpoint_killed_while_saving_is_never_visible(tmp_path, monkeypatch):
    """Checkpoints are staged in output_dir/.incomplete and renamed when complete: a crash in the middle
    of writing checkpoint-10 leaves checkpoint-5 as the newest for hfkit's `auto` and for transformers'
    own get_last_checkpoint, and the resumed run finishes bit-exact."""
    import pytest
    from transformers.trainer_utils import get_last_checkpoint

    import hfkit
    from hfkit.training.trainer import HfkitTrainer
    from hfkit.training.checkpoints import latest_complete_checkpoint

    run = BASE + ["save_strategy=steps", "save_steps=5", "save_total_limit=5", "max_steps=10"]
    full = tmp_path / "full"
    hfkit.train("clm_pretrain", run + [f"output_dir={full}"], quiet=True)

    real = HfkitTrainer._save_rng_state

    def crash_at_step_10(self, output_dir):
        if self.state.global_step == 10:
            raise KeyboardInterrupt  # the process dies between the optimizer state and the RNG state
        return real(self, output_dir)

    monkeypatch.setattr(HfkitTrainer, "_save_rng_state", crash_at_step_10)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        hfkit.train("clm_pretrain", run + [f"output_dir={out}"], quiet=True)
    assert (out / ".incomplete" / "checkpoint-10" / "optimizer.pt").is_file()  # half-written, staged
    assert not (out / "checkpoint-10").exists()
    assert latest_complete_checkpoint(out).name == "checkpoint-5"
    assert get_last_checkpoint(str(out)).endswith("checkpoint-5")
    monkeypatch.setattr(HfkitTrainer, "_save_rng_state", real)
    hfkit.train("clm_pretrain", run + [f"output_dir={out}", "resume_from_checkpoint=auto"], quiet=True)
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert not (out / ".incomplete").exists()  # the staged debris was replaced and renamed


def test_save_total_limit_and_best_checkpoint_with_staged_saves(tmp_path):
    import hfkit

    out = tmp_path / "run"
    hfkit.train("clm_pretrain", BASE + [f"output_dir={out}", "max_steps=20", "save_strategy=steps", "save_steps=5",
                                        "eval_steps=5", "save_total_limit=2", "load_best_model_at_end=true",
                                        "metric_for_best_model=eval_loss"], quiet=True)
    kept = sorted(int(d.name.split("-")[1]) for d in out.glob("checkpoint-*"))
    state = json.loads((out / "checkpoint-20" / "trainer_state.json").read_text())
    best = state["best_model_checkpoint"]
    assert ".incomplete" not in best and (out / best.rsplit("/", 1)[1]).is_dir()  # points at a real folder
    # at most 2 kept, plus the best one if it is older than the last two
    assert kept[-1] == 20 and len(kept) <= 3 and int(best.rsplit("-", 1)[1]) in kept
    assert not (out / ".incomplete").exists()
