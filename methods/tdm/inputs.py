"""Each iteration's inputs, made on the CPU while the GPU trains.

Everything random about iteration `step` is a pure function of (seed, step) (randomness.py):
K, the prompts and their tokens, the noise, and the draws of Algorithm 1. So the iterations'
inputs can be made ahead, in a data loader's worker processes, and a resumed run makes the
same inputs for the same step. On a GPU the host work (a 256-row batch of tiny-sd15 prompts
takes tens of milliseconds to generate and tokenise) then overlaps the GPU's instead of
adding to it. With `workers=0` everything is made in the training process, in step order:
the numbers are the same either way.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .config import TrainConfig
from .randomness import BatchRandom, step_generator


class StepInputs(torch.utils.data.Dataset):
    """inputs[step] -> {"step", "K", "batch": backbone.host_batch(...), "draws": the method's draws (TDM:
    IterationDraws)}, all on the CPU."""

    def __init__(self, backbone, config: TrainConfig, algorithm, process_index: int = 0, num_processes: int = 1):
        self.backbone, self.config, self.algorithm = backbone, config, algorithm
        self.process_index, self.num_processes = process_index, num_processes

    def __len__(self) -> int:
        return self.config.iterations

    def __getitem__(self, step: int) -> dict:
        method = self.config.method
        rng = BatchRandom.for_process(step_generator(self.config.seed, step), method.batch_size,
                                      self.process_index, self.num_processes)
        K = rng.choice(method.steps)  # TDM-unify: one K per iteration, the same on every process
        batch = self.backbone.host_batch(rng, step)
        draws = self.algorithm.draw(self.config, rng, step, K, tuple(self.backbone.latent_shape))
        return {"step": step, "K": K, "batch": batch, "draws": draws}


def data_workers(config: TrainConfig, device: torch.device) -> int:
    """How many worker processes make inputs: `data_workers`, or 4 on CUDA and 0 on a CPU (where
    they would take cores from the training itself); 0 where processes cannot be forked."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    if config.data_workers >= 0:
        return config.data_workers
    return 4 if device.type == "cuda" else 0


def step_inputs(backbone, config: TrainConfig, algorithm, start: int, process_index: int, num_processes: int,
                workers: int, pin_memory: bool) -> Iterator[dict]:
    """The inputs of iterations start .. config.iterations - 1, in order (see `data_workers`)."""
    dataset = StepInputs(backbone, config, algorithm, process_index, num_processes)
    steps = range(start, config.iterations)
    if workers == 0:
        return (dataset[step] for step in steps)
    # Workers are forked: they inherit the backbone (its tokenizer and prompt source) instead of
    # unpickling it, and never touch its GPU networks.
    return iter(torch.utils.data.DataLoader(dataset, sampler=steps, batch_size=None, num_workers=workers,
                                            pin_memory=pin_memory, prefetch_factor=4,
                                            multiprocessing_context="fork"))
