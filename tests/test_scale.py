"""Several processes (accelerate/torch elastic, gloo on CPU), the shipped accelerate configs, mixed precision."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL

CONFIGS = sorted((Path(__file__).parent.parent / "hfkit" / "configs" / "accelerate").glob("*.yaml"))
RUN = [o for o in TINY_MODEL if not o.startswith("per_device_train_batch_size")] + ["max_steps=20"]


def test_two_processes_train_one_model_equal_to_one_process(tmp_path):
    """2 ranks x 8 blocks per step == 1 rank x 16 blocks per step: same samples per step (accelerate
    shards the one seeded order), gradients all-reduced, so the same model up to float rounding (fp32:
    bf16 autocast's rounding would hide a small error in the sharding)."""
    import hfkit

    RUN = [*globals()["RUN"], "bf16=false"]

    single = hfkit.train("clm_pretrain", RUN + ["per_device_train_batch_size=16", f"output_dir={tmp_path / 'one'}"],
                         quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *RUN, "per_device_train_batch_size=8",
                        f"output_dir={tmp_path / 'two'}", "--num-processes", "2", "--json"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    two = json.loads(p.stdout)  # printed once (rank 0), not once per process
    assert two["world_size"] == 2 == json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"]
    ranks = two["rank_weights_sha256"]
    assert len(ranks) == 2 and ranks[0] == ranks[1]  # the ranks hold one model
    assert single["world_size"] == 1
    assert abs(two["train"]["train_loss"] - single["train"]["train_loss"]) < 1e-4
    assert abs(two["eval_after"]["eval_loss"] - single["eval_after"]["eval_loss"]) < 1e-2  # eval is sharded
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    steps = [r for r in map(json.loads, (tmp_path / "two" / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in steps] == [5, 10, 15, 20]  # logged once, by the main process


def test_sigterm_to_a_two_process_run_saves_one_checkpoint_from_both_ranks(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *RUN, "max_steps=100000",
                          "per_device_train_batch_size=8", f"output_dir={out}", "--num-processes", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 180
    while time.time() < deadline and not ((out / "log.jsonl").exists() and
                                          (out / "log.jsonl").read_text().count("\n") >= 3):
        time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=180)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert stderr.count("interrupted by SIGTERM at step") == 1  # said once (rank 0), not once per rank
    assert "Traceback" not in stderr
    from transformers import AutoModelForCausalLM

    from hfkit.training.checkpoints import latest_complete_checkpoint

    ck = latest_complete_checkpoint(out)
    assert ck is not None and (ck / "rng_state_0.pth").is_file() and (ck / "rng_state_1.pth").is_file()
    AutoModelForCausalLM.from_pretrained(ck)


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_accelerate_configs_load_with_accelerates_parser(path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import constants
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    # the single-machine configs leave num_processes to hfkit (one per GPU); pass it as hfkit's launcher does
    n = [] if path.stem == "multinode" else ["--num_processes", "2"]
    args = launch_command_parser().parse_args(["--config_file", str(path), *n, "-m", "hfkit", "train", "sft"])
    args, defaults, _ = _validate_launch_command(args)
    assert defaults.mixed_precision == "no"  # the recipe's training.bf16/fp16 decides
    if path.stem in ("ddp", "multinode"):
        assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
        env = prepare_multi_gpu_env(args)
        if path.stem == "multinode":
            assert args.num_machines == 2 and args.main_process_ip and args.main_process_port
    elif path.stem == "fsdp":
        assert args.use_fsdp
        env = prepare_multi_gpu_env(args)
        assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD" in constants.FSDP_SHARDING_STRATEGY
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" in constants.FSDP_AUTO_WRAP_POLICY
        assert env["FSDP_STATE_DICT_TYPE"] in constants.FSDP_STATE_DICT_TYPE
        assert env["FSDP_BACKWARD_PREFETCH"] in constants.FSDP_BACKWARD_PREFETCH
        # auto wrap by transformer block needs the block class names our architectures declare
        from transformers import GPT2LMHeadModel, LlamaForCausalLM

        assert GPT2LMHeadModel._no_split_modules and LlamaForCausalLM._no_split_modules
    else:
        from unittest import mock

        from accelerate.utils import DeepSpeedPlugin

        assert args.use_deepspeed
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as accelerate launch does
        _, env = prepare_deepspeed_cmd_env(args)
        with mock.patch.dict(os.environ, env):
            plugin = DeepSpeedPlugin()
        stage = int(path.stem[-1])
        assert plugin.zero_stage == stage == plugin.deepspeed_config["zero_optimization"]["stage"]
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"  # taken from the recipe


def test_launch_command_and_bad_launch_input(capsys, tmp_path):
    from hfkit.cli import build_parser, main
    from hfkit.training.launch import launch_command

    args = build_parser().parse_args(["train", "sft", "max_steps=5", "--num-processes", "4", "--json"])
    cmd = launch_command(args)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-5:] == ["hfkit", "train", "sft", "max_steps=5", "--json"]
    args = build_parser().parse_args(["train", "sft", "--accelerate-config", "fsdp", "--num-processes", "2"])
    cmd = launch_command(args)
    assert cmd[cmd.index("--config_file") + 1].endswith("configs/accelerate/fsdp.yaml") and "--multi_gpu" not in cmd
    for argv, message in [(["--accelerate-config", "nope"], "no such file or shipped config: nope"),
                          (["--num-processes", "0"], "--num-processes: must be >= 1, got 0"),
                          (["--num-processes", "2", "model.nope=1"], "unknown recipe key 'model.nope'")]:
        assert main(["train", "clm_pretrain", f"output_dir={tmp_path / 'run'}", *argv]) == 2  # runs/ may hold a demo
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_mixed_precision_is_switched_from_the_recipe(tmp_path):
    """training.bf16=true reaches accelerate: the MLP of a block computes in bfloat16 under autocast
    (CPU autocast here), and float32 without it."""
    from hfkit.recipe import load_recipe
    from hfkit.job import assemble
    from hfkit.training.trainer import HfkitTrainer

    for bf16, want in (("false", "float32"), ("true", "bfloat16")):
        r = load_recipe("clm_pretrain", RUN + ["max_steps=2", f"bf16={bf16}", f"output_dir={tmp_path / bf16}",
                                               "eval_strategy=no", "eval_on_start=false"])
        job = assemble(r)
        seen = set()
        job.model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.add(str(o.dtype)))
        trainer = HfkitTrainer(model=job.model, args=job.args, train_dataset=job.prepared.train,
                               data_collator=job.prepared.collator)
        trainer.train()
        assert seen == {f"torch.{want}"} and trainer.accelerator.mixed_precision == ("bf16" if bf16 == "true" else "no")


def test_a_data_error_in_a_two_process_run_is_one_line_once(tmp_path):
    """Every rank meets the bad record; the user sees one error line (rank 0's), not one per rank and
    not the elastic agent's report of the failed ranks."""
    import re

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a fine document about things"}\n{"text": "x" "y"}\n')
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *RUN, "--num-processes", "2",
                        f"output_dir={tmp_path / 'out'}", "data.sources.0.kind=json", f"data.sources.0.path={bad}"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2
    assert [ln for ln in p.stderr.splitlines() if "error" in ln.lower()] == [
        f"hfkit: error: {bad} line 2: invalid JSON (Expecting ',' delimiter)"], p.stderr[-2000:]
    assert not re.search(r"^[WE]\d{4} ", p.stderr, re.M) and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()
