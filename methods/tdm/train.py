"""Train a student: TDM, or another method of the registry (methods/common/method.py: DMD2, LCM),
which a preset picks. This loop is every method's; the method brings its draws and its iteration.

    python -m methods.tdm.train --preset tiny-sd15-4step [key=value ...] [--dry-run]
    python -m methods.tdm.train --preset tiny-sd15-dmd2-4step                     (DMD2)
    python -m methods.tdm.train --preset tiny-sd15-lcm-4step                      (LCM)
    accelerate launch --multi_gpu --num_processes 2 -m methods.tdm.train --preset ...   (DDP)
    accelerate launch --config_file methods/tdm/accelerate_configs/fsdp.yaml --num_processes 2 -m ...  (FSDP2)
    python -m methods.tdm.train --list

The resolved config is printed and written to <output_dir>/config.json. Checkpoints go to
<output_dir>/checkpoints/step-NNNNNN; running the same command again resumes from the
latest one. At the end the student is exported, one diffusers pipeline folder per step
count, to <output_dir>/student-K<K>, with a timing summary in <output_dir>/summary.json.

On N processes `batch_size` stays the global batch and each process trains its rows of it
(randomness.py); only the main process writes logs, config, summary and exports.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from methods.common.cli import OneLineParser, check_device, is_main_launch_process, quiet_libraries, settable_fields
from methods.common.errors import UserError
from methods.common.method import get_method

from .backbones import load_backbone, step_condition
from .config import TrainConfig
from .inputs import data_workers, step_inputs
from .presets import PRESETS, resolve
from .trainer import StepOptions

CHECKPOINTS = "checkpoints"
FLOPS = "flops.json"  # FLOPs of iteration 0, kept for the summary of resumed runs


def precision(config: TrainConfig, device: torch.device) -> tuple[str, torch.dtype]:
    """accelerate's mixed_precision and the frozen networks' dtype: bf16 on GPU, fp32 on CPU."""
    mode = config.mixed_precision
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "no"
    return mode, {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = sorted(p for p in (output_dir / CHECKPOINTS).glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def save_checkpoint(accelerator, output_dir: Path, step: int, keep: int) -> None:
    """accelerate's state (networks, optimisers, RNG) plus the step, written then renamed into place."""
    root = output_dir / CHECKPOINTS
    final, partial = root / f"step-{step:06d}", root / f".partial-step-{step:06d}"
    accelerator.save_state(str(partial))  # every process calls it: each writes its RNG state (FSDP: its shard)
    accelerator.wait_for_everyone()  # all files are in `partial` before it is renamed
    if accelerator.is_main_process:
        (partial / "state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in sorted(p for p in root.glob("step-*"))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _accelerator(config: TrainConfig, device: str | None):
    """accelerate's Accelerator for this run (one process or those of a launch), and the frozen networks' dtype."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    check_device(device)
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    mode, weight_dtype = precision(config, torch.device("cpu" if cpu else "cuda"))
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=cpu, mixed_precision=mode, log_with=None if config.tracker == "none" else config.tracker,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # No buffer broadcast at each forward: the networks' buffers are constants, and the
        # broadcast would be one more collective per student call.
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
    if config.method.batch_size % accelerator.num_processes:
        raise UserError(f"batch_size={config.method.batch_size} is the global batch and must divide evenly over "
                        f"{accelerator.num_processes} processes")
    return accelerator, weight_dtype


def _prepare(accelerator, backbone, config: TrainConfig, execution: str, algorithm) -> tuple[object, dict, object]:
    """AdamW per trained role (App. D), each network with its optimiser through accelerate.prepare (DDP
    or FSDP wrapping; FSDP2 takes one network per call). The roles then see the wrapped networks. A
    copy the method holds without training (LCM's EMA target, in the fake score's place) is
    checkpointed beside them. Also the student's learning-rate schedule (None when constant).

    On CUDA AdamW is fused (one kernel per step instead of a dozen per tensor), and under CUDA
    graphs also `capturable`, so that its step count lives on the GPU and the step can be replayed.
    The order fixes the checkpoint's file names: model.safetensors is the student, model_1 the fake score.
    """
    from accelerate.utils import DistributedType

    method = config.method
    fused = accelerator.device.type == "cuda" and accelerator.distributed_type != DistributedType.FSDP
    scheduled = method.lr_schedule != "constant" or method.lr_warmup > 0
    wrapped, optimisers = {}, {}
    for name in algorithm.trained:
        module = backbone.modules[name]
        lr = method.lr_student if name == "student" else method.lr_fake
        if name == "student" and scheduled and execution == "cuda_graph":
            lr = torch.tensor(lr, device=accelerator.device)  # a replayed step reads the scheduled rate from here
        optimiser = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                                      betas=method.adam_betas, weight_decay=method.weight_decay, fused=fused or None,
                                      capturable=execution == "cuda_graph")
        wrapped[name], optimisers[name] = accelerator.prepare(module, optimiser)
    for name, module in backbone.modules.items():
        if name not in wrapped:
            accelerator.register_for_checkpointing(module.requires_grad_(False))
    backbone.roles.student.model = wrapped["student"]
    if "fake_score" in wrapped:
        backbone.roles.fake_score.model = wrapped["fake_score"]
    return wrapped["student"], optimisers, _lr_schedule(config, accelerator, optimisers["student"]) if scheduled else None


def _lr_schedule(config: TrainConfig, accelerator, optimiser):
    """The student's schedule (diffusers' get_scheduler, stepped once per iteration, as the official
    script's), saved and restored with the checkpoints. Its warm-up starts from 0 at iteration 0."""
    from diffusers.optimization import get_scheduler

    method = config.method
    name = "constant_with_warmup" if method.lr_schedule == "constant" else method.lr_schedule
    schedule = get_scheduler(name, getattr(optimiser, "optimizer", optimiser), num_warmup_steps=method.lr_warmup,
                             num_training_steps=method.lr_horizon or config.iterations)
    accelerator.register_for_checkpointing(schedule)
    return schedule


def _execution(config: TrainConfig, accelerator, algorithm) -> str:
    """The execution this run gets: CUDA graphs only where they exist (one CUDA process), else eager."""
    if config.execution != "cuda_graph":
        return config.execution
    if accelerator.device.type != "cuda":
        return "eager"  # graphs are a CUDA feature; the same iterations run eagerly
    if not algorithm.cuda_graphs:
        raise UserError(f"execution=cuda_graph is not available for {algorithm.title} (its captured iterations "
                        "have not yet been checked against eager ones on a GPU): set execution=eager")
    if accelerator.num_processes > 1:
        raise UserError("execution=cuda_graph runs on one process; with several use execution=eager")
    if config.gradient_checkpointing:
        raise UserError("execution=cuda_graph cannot capture gradient checkpointing's recomputation; "
                        "set gradient_checkpointing=false or execution=eager")
    return "cuda_graph"


def _speed_options(config: TrainConfig, accelerator, backbone, execution: str, algorithm) -> StepOptions:
    """Memory layout, checkpointing and compilation of the networks; how train_step runs."""
    networks = [backbone.modules["student"], backbone.modules["fake_score"]]
    if config.gradient_checkpointing:
        if not all(hasattr(net, "enable_gradient_checkpointing") for net in networks):
            raise UserError(f"backbone={config.backbone} has no gradient checkpointing")
        for net in networks:
            net.enable_gradient_checkpointing()
    if accelerator.device.type == "cuda":  # process-wide: a choice per convolution shape, made on first use
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if config.channels_last and accelerator.device.type == "cuda":
        for role in (backbone.roles.student, backbone.roles.fake_score, backbone.roles.teacher):
            if hasattr(role, "core"):  # diffusers networks; gmm's exact teacher has no layout
                role.core.to(memory_format=torch.channels_last)
    if config.compile:
        _compile(backbone, config.compile_scope)
    return StepOptions(rollout=algorithm.rollout(config, accelerator, execution),
                       micro_batches=config.grad_accumulation, keep_grads=execution == "cuda_graph")


# The blocks that make up most of each backbone's compute, by class name (diffusers').
COMPILED_BLOCKS = ("ResnetBlock2D", "BasicTransformerBlock", "Transformer2DModel", "CogVideoXBlock")


def _compile(backbone, scope: str) -> None:
    """torch.compile the student, fake score and teacher, whole or block by block.

    Block by block ("regional compilation"), each block class's forward is compiled once per
    input shape and grad mode and shared by every instance in all three networks (parameters
    are graph inputs), so compiling takes a fraction of the time of three whole networks. Each
    network has a dozen or more block shapes: the recompilation limit is raised so that none
    falls back to eager.
    """
    roles = (backbone.roles.student, backbone.roles.fake_score, backbone.roles.teacher)
    if scope == "networks":
        for role in roles:
            role.model = torch.compile(role.model)
        return
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 1024)
    compiled = 0
    for role in roles:
        for module in role.core.modules():
            if type(module).__name__ in COMPILED_BLOCKS and not _inside_compiled(module, role.core):
                module.compile(dynamic=False)
                compiled += 1
    if not compiled:
        raise UserError(f"compile_scope=blocks found none of {', '.join(COMPILED_BLOCKS)} in the networks; "
                        "use compile_scope=networks")


def _inside_compiled(module, root) -> bool:
    """Whether an enclosing module of `module` (below `root`) is itself one of the compiled blocks."""
    for parent in root.modules():
        if parent is not module and type(parent).__name__ in COMPILED_BLOCKS and \
                any(child is module for child in parent.modules()):
            return True
    return False


def _resume(accelerator, config: TrainConfig, optimisers: dict) -> int:
    """Load the latest checkpoint, if any; the step to start from."""
    output_dir = Path(config.output_dir)
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is None:
        return 0
    accelerator.load_state(str(checkpoint))
    start = json.loads((checkpoint / "state.json").read_text())["step"]
    if start > config.iterations:  # exporting would pass a longer-trained student off as this budget's
        raise UserError(f"{output_dir} holds a checkpoint at step {start}, beyond iterations={config.iterations}; "
                        "use another output_dir or remove its checkpoints")
    for group in optimisers["student"].param_groups:  # a tensor rate (scheduled, under CUDA graphs) comes
        if isinstance(group["lr"], torch.Tensor):     # back from a checkpoint wherever it was loaded
            group["lr"] = group["lr"].to(accelerator.device)
    return start


def train(config: TrainConfig, device: str | None = None, show_progress: bool = True) -> dict:
    """`config.iterations` iterations of the config's method (Algorithm 1 for TDM), resuming from the
    latest checkpoint."""
    output_dir, method = Path(config.output_dir), config.method
    algorithm = get_method(config.algorithm)
    algorithm.check(config)
    accelerator, weight_dtype = _accelerator(config, device)
    execution = _execution(config, accelerator, algorithm)
    backbone = load_backbone(config, accelerator.device, weight_dtype)
    student, optimisers, lr_schedule = _prepare(accelerator, backbone, config, execution, algorithm)
    options = _speed_options(config, accelerator, backbone, execution, algorithm)
    start = _resume(accelerator, config, optimisers)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    if config.tracker != "none":
        accelerator.init_trackers(config.algorithm, config=_flat(config))

    losses_file = output_dir / "losses.jsonl"
    if accelerator.is_main_process:
        _truncate_log(losses_file, start)
    iterate = _iteration(config, accelerator, backbone, optimisers, options, execution, algorithm)
    workers = data_workers(config, accelerator.device)
    inputs = step_inputs(backbone, config, algorithm, start, accelerator.process_index, accelerator.num_processes,
                         workers, pin_memory=accelerator.device.type == "cuda")
    timed_from, timed_steps = None, 0
    wall_start = time.perf_counter()
    bar = tqdm(inputs, initial=start, total=config.iterations, desc=algorithm.title,
               disable=not (show_progress and accelerator.is_local_main_process), dynamic_ncols=True)
    for item in bar:
        step, K = item["step"], item["K"]
        noise, cond, uncond = backbone.device_batch(item["batch"])
        data = backbone.device_data(item["batch"]) if algorithm.needs_data else None
        draws = item["draws"].to(accelerator.device, non_blocking=True)
        # The run's first iteration also counts its FLOPs (matmuls and convolutions, forward and
        # backward, this process's rows). Only iteration 0: counting can change the float rounding
        # of an iteration, and a resumed run must repeat the uninterrupted one bit for bit.
        counter = FlopCounterMode(display=False) if step == 0 else None
        with _counting(counter):
            losses = iterate(K, noise, cond, uncond, draws, data)
        if counter is not None:
            _write_flops(accelerator, output_dir / FLOPS, counter.get_total_flops(), K)
        if lr_schedule is not None:
            lr_schedule.step()
        if step == start + 1:  # time from the third iteration: the first two are warm-up (the eager run
            _sync(accelerator)  # and the capture, under CUDA graphs)
            timed_from = time.perf_counter()
        timed_steps += step > start + 1
        if (step + 1) % config.log_every == 0 or step + 1 == config.iterations:
            _log_losses(accelerator, bar, losses_file, step + 1, K, losses)
        if config.checkpoint_every and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.iterations):
            save_checkpoint(accelerator, output_dir, step + 1, config.keep_checkpoints)
    _sync(accelerator)
    seconds = time.perf_counter() - timed_from if timed_from is not None and timed_steps else None
    accelerator.end_training()
    if accelerator.num_processes > 1:
        _UNTIL_EXIT.append(backbone)  # its roles hold the DDP wrappers (accelerate keeps only the modules); see exit_launched

    summary = {
        "iterations": config.iterations, "resumed_from": start, "timed_iterations": timed_steps,
        "seconds_per_iteration": seconds / timed_steps if seconds else None,
        "samples_per_second": method.batch_size * timed_steps / seconds if seconds else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if accelerator.device.type == "cuda" else None,
        "wall_seconds": time.perf_counter() - wall_start, **_flops(output_dir), "batch_size": method.batch_size,
        "mixed_precision": accelerator.mixed_precision, "num_processes": accelerator.num_processes,
        "distributed": accelerator.distributed_type.value, "device": str(accelerator.device),
        "execution": execution, "data_workers": workers,
        "rollout": options.rollout,
    }
    trained = _plain_student(accelerator, backbone, student) if config.export else None
    if accelerator.is_main_process:
        summary["exported"] = [str(backbone.export(trained, output_dir / f"student-K{K}", K))
                               for K in method.steps] if config.export else []
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# Launched runs keep their backbone (whose roles hold the DDP wrappers, their reducers and the
# gloo process group those hold) until `exit_launched` ends the process. Freeing a DDP reducer destroys the gloo
# group, whose destructor joins its worker threads while holding the GIL; a worker still
# releasing an all-reduce's tensors waits for the GIL, and the process hangs (seen on 2-core CI
# machines after the run had written everything).
_UNTIL_EXIT: list = []


def exit_launched(code: int) -> None:
    """End a launched process now, without tearing down its process group (see _UNTIL_EXIT)."""
    if _UNTIL_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _iteration(config: TrainConfig, accelerator, backbone, optimisers, options: StepOptions, execution: str,
               algorithm):
    """iterate(K, noise, cond, uncond, draws, data) -> losses: one call of the method's train_step, eager or
    replayed from a CUDA graph captured per (K, draws.graph_key) (graphs.py; TDM: the roll-out depth)."""
    method, roles, step_conds = config.method, backbone.roles, {}

    def step_cond(K: int, n: int):  # made once per K: a fresh one would be a host-to-device copy each time
        if K not in step_conds:
            step_conds[K] = step_condition(config, K, n, accelerator.device)
        return step_conds[K]

    def run(K, tensors):
        with accelerator.autocast():
            return algorithm.train_step(method, roles, optimisers, tensors["noise"], tensors["cond"], tensors["uncond"],
                                        tensors["draws"], K, tensors["step_cond"], accelerator, options,
                                        data=tensors["data"])

    def tensors(K, noise, cond, uncond, draws, data):
        return dict(noise=noise, cond=cond, uncond=uncond, draws=draws, step_cond=step_cond(K, len(noise)), data=data)

    if execution != "cuda_graph":
        return lambda K, *batch: run(K, tensors(K, *batch))

    from .graphs import CapturedIterations

    # Compiled networks run eagerly on step 0 (while FLOPs are counted) and compile on their next
    # call: a second warm-up per key compiles them before capture, so that the graph records
    # the compiled kernels.
    graphs = CapturedIterations(lambda key, inputs: run(key[0], inputs), warmup=2 if config.compile else 1)
    return lambda K, noise, cond, uncond, draws, data: graphs((K, *draws.graph_key),
                                                             tensors(K, noise, cond, uncond, draws, data))


def _plain_student(accelerator, backbone, student):
    """The trained student as a plain module on the main process (None on the others).

    Under FSDP each process holds a shard of the weights: they are gathered into a fresh copy
    (every process must take part). Otherwise the unwrapped module is the student itself.
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return accelerator.unwrap_model(student) if accelerator.is_main_process else None
    state = accelerator.get_state_dict(student)  # full weights on the main process
    if not accelerator.is_main_process:
        return None
    model = backbone.trainable_copy("cpu")
    model.load_state_dict(state)
    return model


@contextlib.contextmanager
def _counting(counter: FlopCounterMode | None):
    """Count FLOPs (when `counter` is given) with compiled networks running eagerly: dynamo, asked
    to compile under the counter's dispatch mode, would skip their code for the rest of the run."""
    if counter is None:
        yield
        return
    with torch.compiler.set_stance("force_eager"), counter:
        yield


def _write_flops(accelerator, path: Path, flops: int, K: int) -> None:
    """FLOPs of iteration 0 over all processes (each counted its own rows)."""
    total = accelerator.reduce(torch.tensor(float(flops), dtype=torch.float64, device=accelerator.device), "sum")
    if accelerator.is_main_process:
        path.write_text(json.dumps({"flops_per_iteration": int(total.item()), "flops_counted_at_K": K}))


def _log_losses(accelerator, bar, losses_file: Path, step: int, K: int, losses: dict) -> None:
    """To the trackers, the progress bar and (main process only) losses.jsonl.

    Each loss is averaged over the processes: the mean over the global batch, as one process
    computes it, since every process holds the same number of rows.
    """
    means = accelerator.reduce(torch.stack(list(losses.values())).float(), "mean").tolist()
    losses = dict(zip(losses, means))
    record = {"step": step, "K": K, **{f"loss/{k}": v for k, v in losses.items()}}
    accelerator.log(record, step=step)
    bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
    if accelerator.is_main_process:
        with losses_file.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _flops(output_dir: Path) -> dict:
    path = output_dir / FLOPS
    return json.loads(path.read_text()) if path.is_file() else {"flops_per_iteration": None, "flops_counted_at_K": None}


def _sync(accelerator) -> None:
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize()


def _flat(config: TrainConfig) -> dict:
    """Scalars only, as TensorBoard's hparams want them."""
    out = {}
    for name, (owner, field) in settable_fields(config).items():
        value = getattr(owner, field.name)
        out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _truncate_log(path: Path, start: int) -> None:
    """Drop log lines past the checkpoint we resume from, so the log matches the weights."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start]
    path.write_text("".join(line + "\n" for line in keep))


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m methods.tdm.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", help="a name from --list")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings over the preset's")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    args = parser.parse_intermixed_args(argv)  # key=value may come before or after the flags
    if args.list:
        for name, overrides in PRESETS.items():
            print(f"{name:34s} {' '.join(f'{k}={v}' for k, v in overrides.items())}")
        return 0
    if not args.preset:
        parser.error("--preset is required (see --list)")
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"expected key=value, got {bad[0]!r}")
    main_process = is_main_launch_process()
    try:
        config = resolve(args.preset, args.overrides)
        if main_process:
            print(json.dumps(asdict(config), indent=2))
        if args.dry_run:
            return 0
        quiet_libraries()
        summary = train(config, args.device, show_progress=not args.no_progress)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if main_process:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    exit_launched(code)
    sys.exit(code)
