"""The command lines that start a TDM training run on one process or several, as a user types them.

    one process:  python -m methods.tdm.train --preset ... [key=value ...]
    N processes:  accelerate launch --multi_gpu --num_processes N -m methods.tdm.train --preset ...
    N with FSDP:  accelerate launch --config_file methods/tdm/accelerate_configs/fsdp.yaml --num_processes N -m ...

`--multi_gpu` picks accelerate's torchrun launcher: one process per GPU over NCCL, or, with
`--device cpu` on a machine without GPUs, N CPU processes over gloo (accelerate's `--cpu`
flag instead expects MPI for more than one process).
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

FSDP_CONFIG = Path(__file__).with_name("accelerate_configs") / "fsdp.yaml"


def free_port() -> int:
    """A TCP port nobody listens on, for the processes' rendezvous (several launches may run at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(processes: int, args: list[str], fsdp: bool = False, mixed_precision: str = "no",
                  launcher: bool | None = None) -> list[str]:
    """argv for `methods.tdm.train` with `args` (preset, key=value, flags) on this many processes.

    By default one process without FSDP is the plain python command, anything else goes
    through `accelerate launch` (launcher=True forces a launcher; one DDP process goes through
    torchrun, which accelerate's own launcher calls and which accepts one process). `mixed_precision`
    is accelerate's launch flag; the trainer sets its own from the config either way.
    """
    if launcher is None:
        launcher = processes > 1 or fsdp
    if not launcher:
        return [sys.executable, "-m", "methods.tdm.train", *args]
    if processes == 1 and not fsdp:  # accelerate's --multi_gpu wants 2 or more; its launcher is torchrun
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                "-m", "methods.tdm.train", *args]
    mode = ["--config_file", str(FSDP_CONFIG)] if fsdp else ["--multi_gpu"]
    return [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m", "methods.tdm.train", *args]
