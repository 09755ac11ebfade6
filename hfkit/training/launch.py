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
    if args.accelerate_config:
        cmd += ["--config_file", str(accelerate_config_path(args.accelerate_config))]
    if args.num_processes is not None:
        if args.num_processes < 1:
            raise HfkitError(f"--num-processes must be at least 1, got {args.num_processes}")
        cmd += ["--num_processes", str(args.num_processes)]
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
