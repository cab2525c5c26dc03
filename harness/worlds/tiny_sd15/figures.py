"""PNG grids of samples, for the README and for looking at a sampler."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from baselines.base import SamplerSpec  # noqa: E402
from baselines.teacher import TeacherSampler  # noqa: E402
from methods.common.pipeline_io import load_sd_pipeline  # noqa: E402

# Objects listed in quadrant order (top left, top right, bottom left, bottom right), as in
# every training caption.
GRID_PROMPTS = (
    "a small red circle at the top left on a grey background",
    "a small yellow square at the top left and a large blue triangle at the bottom right on a white background",
    "a green diamond on a black background",
    "a large orange circle at the top right and a purple triangle at the bottom left on a brown background",
)
GRID_STEPS = (1, 2, 4, 25)


def save_grid(images: np.ndarray, out: str | Path, columns: int, row_labels=None, column_labels=None) -> None:
    """uint8 images (n, H, W, 3), row-major, as one labelled PNG."""
    rows = len(images) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns + (3.2 if row_labels else 0), 1.3 * rows),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.imshow(images[k], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if column_labels and k < columns:
            ax.set_title(column_labels[k], fontsize=8)
        if row_labels and k % columns == 0:
            ax.set_ylabel(_wrap(row_labels[k // columns]), fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _wrap(text: str, width: int = 40) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def teacher_grid(pipeline: str | Path, out: str | Path, device: str = "cpu", guidance: float = 3.5,
                 solver: str = "dpmpp", seed: int = 0) -> None:
    """One row per prompt, one column per step count; the same seed along each row."""
    pipe = load_sd_pipeline(pipeline, device)
    columns = []
    for steps in GRID_STEPS:
        spec = SamplerSpec(f"teacher-{solver}-{steps}", "tiny-sd15", str(pipeline), solver, steps, guidance)
        columns.append(TeacherSampler(spec, device, pipe=pipe).sample(list(GRID_PROMPTS), [seed] * len(GRID_PROMPTS)))
    images = np.stack(columns, axis=1).reshape(-1, *columns[0].shape[1:])
    save_grid(images, out, columns=len(GRID_STEPS), row_labels=list(GRID_PROMPTS),
              column_labels=[f"{solver} {s} step{'s' * (s > 1)}" for s in GRID_STEPS])
