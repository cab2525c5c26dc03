"""Randomness drawn per global batch, so results do not depend on how many processes share it.

Every random number of an iteration comes from one CPU generator seeded by (seed, step): the
draws are made for the whole global batch and each process keeps its own rows. One process
or N then see the same numbers for the same sample, and a resumed run sees the same numbers
for the same step as an uninterrupted one, with no generator state to save.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of iteration `step` of a run with this seed."""
    return torch.Generator("cpu").manual_seed((seed * 1_000_003 + step) % (2 ** 63))


class BatchRandom:
    """Draws for a global batch of `global_size` rows, of which this process owns `rows`."""

    def __init__(self, generator: torch.Generator, global_size: int, rows: slice | None = None,
                 device: torch.device | str = "cpu"):
        self.generator, self.global_size = generator, global_size
        self.rows = rows if rows is not None else slice(0, global_size)
        self.device = torch.device(device)

    @classmethod
    def for_process(cls, generator, global_size: int, process_index: int, num_processes: int, device="cpu"):
        if global_size % num_processes:
            raise ValueError(f"batch_size {global_size} is not divisible by {num_processes} processes")
        local = global_size // num_processes
        return cls(generator, global_size, slice(process_index * local, (process_index + 1) * local), device)

    @property
    def local_size(self) -> int:
        return self.rows.stop - self.rows.start

    def randn(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """Standard normal rows (local, *shape)."""
        full = torch.randn((self.global_size, *shape), generator=self.generator, dtype=dtype)
        return full[self.rows].to(self.device)

    def rand(self, dtype=torch.float32) -> torch.Tensor:
        """U[0, 1) per local row."""
        return torch.rand((self.global_size,), generator=self.generator, dtype=dtype)[self.rows].to(self.device)

    def randint(self, high: int) -> torch.Tensor:
        """Uniform integers in [0, high) per local row."""
        return self.local(self.randint_global(high))

    def randint_global(self, high: int) -> torch.Tensor:
        """Uniform integers in [0, high) for every row of the global batch (on CPU, the same on every process)."""
        return torch.randint(0, high, (self.global_size,), generator=self.generator)

    def local(self, full: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global-batch tensor, on its device."""
        return full[self.rows].to(self.device)

    def choice(self, options) -> object:
        """One option for the whole batch (the same on every process), e.g. K for TDM-unify."""
        return options[int(torch.randint(0, len(options), (1,), generator=self.generator))]


@dataclass
class IterationDraws:
    """Every random number a TDM iteration needs after its batch, drawn in Algorithm 1's order:
    each row's segment m (line 4), then tau and the diffusion noise of each fake-score update
    (lines 5-6), then those of the generator update, led by its own segment when it draws one
    (`generator_segment="fresh"`, the official script's choice; otherwise `m_generator` is None).

    `m_host` stays on the CPU so that the roll-out can plan its work without reading the GPU;
    `depth` is the global batch's smallest segment (of either update): every process rolls out
    that far (FSDP needs the same number of student calls everywhere).
    """
    m: torch.Tensor                                   # (local,) long, on the training device
    m_host: torch.Tensor                              # the same rows, on the CPU
    depth: int
    fake: list[tuple[torch.Tensor, torch.Tensor]]     # per fake-score update: (u for tau (local,), noise)
    generator: tuple[torch.Tensor, torch.Tensor]      # (u for tau (local,), noise)
    m_generator: torch.Tensor | None = None           # the generator update's own segments, or None: it trains m
    m_generator_host: torch.Tensor | None = None

    def _map(self, move) -> "IterationDraws":
        maybe = lambda t: None if t is None else move(t)  # noqa: E731
        return IterationDraws(move(self.m), self.m_host, self.depth, [(move(u), move(e)) for u, e in self.fake],
                              (move(self.generator[0]), move(self.generator[1])), maybe(self.m_generator),
                              self.m_generator_host)

    def to(self, device, non_blocking: bool = False) -> "IterationDraws":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "IterationDraws":
        """Page-locked copies (a data loader calls this), so that `to(cuda, non_blocking=True)` overlaps."""
        return self._map(lambda t: t.pin_memory())

    def rows(self, part: slice) -> "IterationDraws":
        """The draws of some of this process's rows (a micro-batch); `depth` stays global."""
        host = None if self.m_generator_host is None else self.m_generator_host[part]
        return IterationDraws(self.m[part], self.m_host[part], self.depth, [(u[part], e[part]) for u, e in self.fake],
                              (self.generator[0][part], self.generator[1][part]),
                              None if self.m_generator is None else self.m_generator[part], host)

    @property
    def graph_key(self) -> tuple:
        """What fixes the iteration's shapes beside K: every process rolls out `depth` segments."""
        return (self.depth,)

    def tensors(self) -> list[torch.Tensor]:
        """The device tensors, in a fixed order (for copying into a captured graph's inputs)."""
        extra = [] if self.m_generator is None else [self.m_generator]
        return [self.m, *[t for pair in self.fake for t in pair], *extra, *self.generator]


def draw_segments(rng: BatchRandom, K: int, stratified: bool = False) -> torch.Tensor:
    """Each global row's segment m in 0..K-1, uniform per row: independent draws, or (`stratified`)
    a random order of the K segments in every K consecutive rows, so that each segment holds
    1/K of the batch, and of every process's rows when those are a multiple of K."""
    if not stratified:
        return rng.randint_global(K)
    if rng.global_size % K:
        raise ValueError(f"stratified segments need a batch that is a multiple of K = {K}, got {rng.global_size}")
    keys = torch.rand((rng.global_size // K, K), generator=rng.generator)
    return keys.argsort(dim=1).flatten()


def draw_iteration(rng: BatchRandom, K: int, fake_updates: int, shape: tuple[int, ...],
                   dtype=torch.float32, fresh_generator_segment: bool = False,
                   stratified: bool = False) -> IterationDraws:
    """The iteration's draws for this process's rows, on `rng`'s device (see IterationDraws);
    segments as `draw_segments` makes them."""
    m_global = draw_segments(rng, K, stratified)
    fake = [(rng.rand(), rng.randn(*shape, dtype=dtype)) for _ in range(fake_updates)]
    depth = int(m_global.min())
    m_gen = m_gen_host = None
    if fresh_generator_segment:
        m_gen_global = draw_segments(rng, K, stratified)
        depth = min(depth, int(m_gen_global.min()))
        m_gen_host = m_gen_global[rng.rows]
        m_gen = m_gen_host.to(rng.device)
    generator = (rng.rand(), rng.randn(*shape, dtype=dtype))
    m_host = m_global[rng.rows]
    return IterationDraws(m_host.to(rng.device), m_host, depth, fake, generator, m_gen, m_gen_host)
