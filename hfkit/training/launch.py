"""`hfkit train --num-processes N / --accelerate-config NAME`: hand a recipe to accelerate's launcher.

The shipped configs (`hfkit/configs/accelerate/*.yaml`) cover DDP, FSDP, DeepSpeed ZeRO-2/3 and
multi-node runs. The launcher runs in this process, so a SIGTERM/SIGINT sent to `hfkit` reaches
torch's elastic agent, which passes it on to every rank.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "accelerate"


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def accelerate_config_path(name: str) -> Path:
    """A shipped accelerate config by name (ddp, fsdp, ...), or a config file's path."""
    from ..errors import HfkitError

    path = Path(name)
    if not path.is_file() and (CONFIG_DIR / f"{name}.yaml").is_file():
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise HfkitError(f"--accelerate-config: no such file or shipped config: {name} "
                         f"(shipped: {', '.join(shipped_configs())})")
    return path


def launch_command(args) -> list[str]:
    """`accelerate launch ... -m hfkit train RECIPE OVERRIDES` for `hfkit train --num-processes N`."""
    import socket

    from ..errors import HfkitError

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    num = args.num_processes
    if num is not None and num < 1:
        raise HfkitError(f"--num-processes must be at least 1, got {num}")
    if args.accelerate_config:
        path = accelerate_config_path(args.accelerate_config)
        cmd += ["--config_file", str(path)]
        if num is None and _config(path).get("num_processes") in (None, -1):
            import torch

            num = torch.cuda.device_count() * int(_config(path).get("num_machines") or 1)  # one per GPU
    if num is not None:
        cmd += ["--num_processes", str(num)]
    if args.machine_rank is not None:
        cmd += ["--machine_rank", str(args.machine_rank)]
    if not args.accelerate_config:
        # accelerate's multi-GPU path is torch's elastic launcher: DDP on GPUs, gloo on CPU cores
        # (its --cpu path would start one process here: it wants mpirun for several)
        with socket.socket() as sock:  # a free port, so that runs side by side do not collide
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # mixed precision "no" here: the recipe's training.bf16/fp16 decides (TrainingArguments wins)
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(port)]
        if args.num_processes == 1:
            cmd.remove("--multi_gpu")
    cmd += ["-m", "hfkit", "train", args.recipe, *args.overrides] + (["--json"] if args.json else [])
    return cmd


_GPU_TYPES = ("MULTI_GPU", "FSDP", "DEEPSPEED")


def _config(path: Path) -> dict:
    import yaml

    from ..errors import HfkitError
    from ..schema import yaml_load

    try:
        data = yaml_load(path.read_text(encoding="utf-8"), yaml.SafeLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise HfkitError(f"--accelerate-config {path}: not a readable YAML file ({' '.join(str(e).split())[:120]})") \
            from None
    if not isinstance(data, dict):
        raise HfkitError(f"--accelerate-config {path}: not an accelerate config (a YAML mapping)")
    return data


def check_launch(args) -> None:
    """What the machine cannot give, in one line, before anything starts: GPUs a config asks for,
    more processes than GPUs (or CPU cores), DeepSpeed that is not installed."""
    import importlib.util

    import torch

    from ..errors import HfkitError

    gpus = torch.cuda.device_count()
    num = args.num_processes
    if args.accelerate_config:
        path = accelerate_config_path(args.accelerate_config)
        cfg = _config(path)
        kind = str(cfg.get("distributed_type", "NO")).upper()
        machines = int(cfg.get("num_machines") or 1)
        if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
            raise HfkitError(f"--accelerate-config {args.accelerate_config} uses DeepSpeed, which is not installed "
                             f"(pip install deepspeed, on a machine with CUDA)")
        if kind in _GPU_TYPES and gpus == 0:
            raise HfkitError(f"--accelerate-config {args.accelerate_config} runs {kind} on GPUs, and this machine "
                             f"has none (for processes on CPU cores use --num-processes N without a config)")
        if num is None and cfg.get("num_processes") not in (None, -1):
            num = int(cfg["num_processes"])
        per_machine = -(-num // machines) if num else gpus
        ids = str(cfg.get("gpu_ids", "all"))
        if kind in _GPU_TYPES and ids != "all":
            bad = [i for i in ids.split(",") if i.strip().isdigit() and int(i) >= gpus]
            if bad:
                raise HfkitError(f"--accelerate-config {args.accelerate_config}: gpu_ids {ids} names GPU {bad[0]}, "
                                 f"but this machine has {gpus}")
        if kind in _GPU_TYPES and per_machine > gpus:
            raise HfkitError(f"--accelerate-config {args.accelerate_config} asks for {per_machine} processes on this "
                             f"machine, which has {gpus} GPU{'s' if gpus != 1 else ''}: pass --num-processes {gpus}")
    elif num is not None:
        cores = os.cpu_count() or 1
        if gpus and num > gpus:
            raise HfkitError(f"--num-processes {num} is more than this machine's {gpus} GPUs")
        if not gpus and num > cores:
            raise HfkitError(f"--num-processes {num} is more than this machine's {cores} CPU cores (and it has no GPU)")


def launch(args) -> int:
    """Hand `hfkit train` over to accelerate's launcher (the caller has validated the recipe once, so
    that bad input is one clear error, not one per process)."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    cmd = launch_command(args)

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.num_processes or 1))))
    # accelerate's launcher runs in this process: a SIGTERM/SIGINT here reaches its elastic agent, which
    # passes it on to every rank (they save a checkpoint at the step boundary and stop together)
    import logging

    # a failing rank has printed its own one-line error; the agent's report of it would only repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        accelerate_launch(launch_command_parser().parse_args(cmd[3:]))
    except SignalException as e:
        print(f"hfkit: launcher stopped by {signal_name(e.sigval)}; the ranks saved a checkpoint if they reached a "
              f"step boundary: continue with resume_from_checkpoint=auto", file=sys.stderr)
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c and c > 0), 1)  # the rank printed its own error line
    return 0


def signal_name(sig) -> str:
    import signal

    try:
        return signal.Signals(int(sig)).name
    except ValueError:
        return f"signal {sig}"
