"""Table4Config: every option of a Table 4 run at real size, with its default."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from methods.common.errors import UserError, did_you_mean

from .protocol import CELLS, FLICKER_SAMPLES, SAMPLES


ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "runs" / "table4-real"
DEFAULT_ENV = ROOT / ".vbench-env"  # where scripts/vbench_env.sh puts it
DEFAULT_STUDENT = ROOT / "runs" / "cogvideox-2b"  # the cogvideox-2b preset's output_dir
TRAIN_COMMAND = "python -m methods.tdm.train --preset cogvideox-2b prompts=<prompt file> [teacher=<folder>]"


@dataclass(frozen=True)
class Table4Config:
    out: Path = DEFAULT_OUT               # videos, manifests, VBench's raw results
    results_dir: Path | None = None       # where <cell>.json goes; None: `out`
    weights_root: Path | None = None      # laid out <root>/<owner>/<name>/<file>; None: the Hugging Face cache
    vbench_root: Path | None = None       # a checkout of Vchitect/VBench (the augmented prompts are only there)
    vbench_env: Path = DEFAULT_ENV        # VBench's own environment (scripts/vbench_env.sh)
    student: Path = DEFAULT_STUDENT       # the cogvideox-2b run folder, or its student-K4 export
    cells: tuple[str, ...] = tuple(CELLS)
    prompts: str = "augmented"            # "augmented" (the CogVideoX entries') | "original"
    samples: int = SAMPLES                # videos per prompt, i = 0 .. samples - 1
    flicker_samples: int = FLICKER_SAMPLES  # videos per temporal-flickering prompt (static filter keeps 5)
    seed: int = 0
    dtype: str = "float16"                # on a GPU; a CPU samples in float32
    dimensions: str = "all"               # VBench dimensions to score
    limit: int | None = None              # only the first N prompt names (a smoke run: never the benchmark)
    clip: tuple[int, int, int] | None = None  # (frames, height, width) instead of 49x480x720: tests and smoke runs
    hub_weights: bool = False             # let VBench fetch CLIP and DINO from their hubs

    def __post_init__(self):
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown or not self.cells:
            hint = did_you_mean(unknown[0], CELLS) if unknown else ""
            raise UserError(f"--cells must name some of {', '.join(CELLS)}; got {','.join(self.cells) or 'none'}{hint}")
        if self.prompts not in ("augmented", "original"):
            raise UserError(f"--prompts must be augmented or original, got {self.prompts!r}")
        if not 1 <= self.samples <= self.flicker_samples <= 100:
            raise UserError(f"need 1 <= --samples ({self.samples}) <= --flicker-samples "
                            f"({self.flicker_samples}) <= 100")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if self.seed < 0 or self.seed > 2000:
            raise UserError(f"--video-seed must be in [0, 2000], got {self.seed}")
        if self.dtype not in ("float16", "bfloat16", "float32"):
            raise UserError(f"--dtype must be float16, bfloat16 or float32, got {self.dtype!r}")

    @property
    def protocol(self) -> bool:
        """Whether the videos follow VBench's protocol (every prompt, 5 per prompt, 49x480x720)."""
        return self.limit is None and self.samples == SAMPLES and self.clip is None
