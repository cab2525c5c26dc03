"""Whole TDM iterations as CUDA graphs: one launch per iteration instead of thousands.

A small denoiser (the tiny-sd15 world's 3 M-parameter UNet) spends its time in Python and
kernel launches, not in arithmetic: one eager iteration issues some ten thousand kernels.
An iteration, fixed by (K, roll-out depth), always runs the same kernels on tensors of the
same shapes, and `trainer.train_step` reads nothing back from the GPU, so it can be captured
once and replayed: the roll-out, both losses, both backward passes, gradient clipping and
both fused AdamW steps (`capturable=True`, so their step counts live on the GPU).

The first `warmup` iterations of each key run eagerly on a side stream (they are real
iterations, computing the same thing); the next is captured and replayed, and later ones
replay it after copying their inputs into the captured buffers. Graphs share one memory pool;
their outputs (the losses) are valid until the next iteration runs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch


def _tensors(tree) -> list[torch.Tensor]:
    """The tensors of a nested dict/list/tuple/dataclass of inputs, in a fixed order."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if dataclasses.is_dataclass(tree):
        return [t for f in dataclasses.fields(tree) for t in _tensors(getattr(tree, f.name))]
    if isinstance(tree, dict):
        return [t for key in sorted(tree) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


def _clone(tree):
    """The same structure with every tensor copied into a fresh buffer (the graph's inputs)."""
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if dataclasses.is_dataclass(tree):
        return dataclasses.replace(tree, **{f.name: _clone(getattr(tree, f.name)) for f in dataclasses.fields(tree)})
    if isinstance(tree, dict):
        return {key: _clone(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone(item) for item in tree)
    return tree


class CapturedIterations:
    """Calls `step(key, inputs)` for an iteration keyed by `key`, replaying a captured graph when it can.

    `inputs` is a nested dict/list/tuple/dataclass whose tensors are everything that changes between
    iterations of the same key; `step` must not read anything else that changes (its
    networks' and optimisers' tensors are updated in place, which a graph replays correctly).
    """

    def __init__(self, step: Callable, warmup: int = 1):
        self.step, self.warmup = step, warmup
        self.graphs: dict = {}
        self.eager_runs: dict = {}
        self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, key, inputs):
        if key in self.graphs:
            graph, static_inputs, outputs = self.graphs[key]
            for buffer, value in zip(_tensors(static_inputs), _tensors(inputs)):
                buffer.copy_(value, non_blocking=True)
            graph.replay()
            return outputs
        if self.eager_runs.get(key, 0) < self.warmup:
            self.eager_runs[key] = self.eager_runs.get(key, 0) + 1
            return self._on_side_stream(key, inputs)
        return self._capture(key, inputs)

    def _on_side_stream(self, key, inputs):
        """An eager iteration on a side stream, as capture wants its warm-up (lazy library set-up)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self.step(key, inputs)
        torch.cuda.current_stream().wait_stream(side)
        return outputs

    def _capture(self, key, inputs):
        static_inputs = _clone(inputs)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the data loader's pinning thread may allocate host memory meanwhile.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            outputs = self.step(key, static_inputs)
        graph.replay()  # capturing ran nothing: this is the iteration itself
        self.graphs[key] = (graph, static_inputs, outputs)
        return outputs
