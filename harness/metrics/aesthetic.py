"""Aesthetic score (AeS): the LAION improved aesthetic predictor.

score = MLP(e / ||e||), e the 768-d OpenAI CLIP ViT-L/14 image embedding. The MLP is
768 -> 1024 -> 128 -> 64 -> 16 -> 1 with dropout between the first layers and no activations
(upstream's ReLUs are commented out), so in eval mode it is one affine map of the unit
embedding. Its weights are `sac+logos+ava1-l14-linearMSE.pth` from
christophschuhmann/improved-aesthetic-predictor; CLIP is transformers'
`CLIPVisionModelWithProjection`, whose `image_embeds` is CLIP's `encode_image`. The preprocessing
is clip.load's, reproduced exactly (`openai_clip_pixels`): transformers' image processors crop one
pixel apart for some sizes, and resize differently where torchvision is installed. Both weights
are read from local files only; a missing one is a UserError naming it.

    scorer = AestheticScorer.load(head="weights/sac+logos+ava1-l14-linearMSE.pth",
                                  clip="openai/clip-vit-large-patch14", device="cuda")
    scores = scorer.score(images)   # uint8 (n, H, W, 3) -> float (n,)
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from methods.common.errors import UserError

HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
HEAD_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
CLIP_MODEL = "openai/clip-vit-large-patch14"
EMBEDDING_DIM = 768


class AestheticHead(nn.Module):
    """The predictor's MLP; its state dict keys are upstream's (`layers.{0,2,4,6,7}`)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(EMBEDDING_DIM, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """(n, 768) embeddings, normalised here (a zero vector stays zero) -> (n,) scores."""
        norm = embedding.norm(dim=-1, keepdim=True)
        unit = embedding / torch.where(norm > 0, norm, torch.ones_like(norm))
        return self.layers(unit).squeeze(-1)

    @classmethod
    def load(cls, path: str | Path) -> "AestheticHead":
        path = Path(path)
        if path.is_dir():
            path = path / HEAD_FILE
        if not path.is_file():
            raise UserError(f"aesthetic head {path} not found: download {HEAD_FILE} from the repository "
                            "christophschuhmann/improved-aesthetic-predictor and pass its path")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != HEAD_SHA256:
            raise UserError(f"{path} has sha256 {digest[:12]}..., not the LAION head's {HEAD_SHA256[:12]}...")
        head = cls()
        head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return head.eval()


def openai_clip_pixels(images: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float32 (n, 3, size, size), exactly as `clip.load`'s preprocess (the
    predictor's `simple_inference.py`): PIL bicubic resize of the short side to `size` (the long side
    to int(size * long / short), torchvision's rule), centre crop at int(round(excess / 2)) (torchvision's
    CenterCrop; transformers' image processors crop at excess // 2, one pixel off for some sizes),
    to [0, 1], OpenAI CLIP normalisation."""
    from PIL import Image

    from .hps import OPENAI_MEAN, OPENAI_STD

    out = []
    for image in images:
        pil = Image.fromarray(image)
        width, height = pil.size
        short, long = (width, height) if width <= height else (height, width)
        resized_long = int(size * long / short)
        new = (size, resized_long) if width <= height else (resized_long, size)
        if new != (width, height):
            pil = pil.resize(new, resample=Image.BICUBIC)
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
        out.append(np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32) / 255)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return (x - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)


PREPROCESSING = {"from": "openai/CLIP clip.load's _transform (the predictor's simple_inference.py)",
                 "resize": "PIL bicubic, short side to the tower's image size, long side int(size * long / short)",
                 "crop": "centre, offset int(round(excess / 2)) as torchvision's CenterCrop",
                 "to_float": "uint8 / 255", "normalize": "OpenAI CLIP mean and std", "where": "cpu"}


class AestheticScorer:
    def __init__(self, head: AestheticHead, vision, device: str = "cpu", head_path: str | None = None,
                 clip_name: str = CLIP_MODEL):
        self.device = torch.device(device)
        self.head_path, self.clip_name = head_path, clip_name
        self.head = head.to(self.device).eval()
        self.vision = vision.to(self.device).eval()
        if vision.config.projection_dim != EMBEDDING_DIM:
            raise UserError(f"the aesthetic head reads {EMBEDDING_DIM}-d CLIP ViT-L/14 embeddings; this CLIP "
                            f"projects to {vision.config.projection_dim}")

    @classmethod
    def load(cls, head: str | Path, clip: str | Path = CLIP_MODEL, device: str = "cpu") -> "AestheticScorer":
        from transformers import CLIPVisionModelWithProjection

        head_module = AestheticHead.load(head)
        try:
            vision = CLIPVisionModelWithProjection.from_pretrained(str(clip), local_files_only=True)
        except OSError:
            raise UserError(f"CLIP {clip} is neither a local folder nor in the Hugging Face cache; download "
                            f"{CLIP_MODEL} on a connected machine and pass its folder") from None
        return cls(head_module, vision, device, head_path=str(head), clip_name=str(clip))

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> (n, 768) CLIP image embeddings (unnormalised), in float32."""
        pixels = openai_clip_pixels(images, self.vision.config.image_size).to(self.device)
        return self.vision(pixel_values=pixels).image_embeds.float()

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str] | None = None, batch_size: int = 32) -> np.ndarray:
        """uint8 (n, H, W, 3) -> (n,) scores; the prompts are not read (the registry passes them to every scorer)."""
        out = [self.head(self.embed(images[i:i + batch_size])).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out).double().numpy()

    def describe(self) -> dict:
        return {"metric": "aes", "scale": "LAION improved aesthetic predictor (MLP on unit CLIP embeddings)",
                "head": str(self.head_path) if self.head_path else None, "head_sha256": HEAD_SHA256,
                "clip": self.clip_name, "preprocessing": PREPROCESSING,
                "precision": "float32", "device": str(self.device)}


def load(weights_root: Path | None, device: str = "cpu", head: str | None = None,
         clip: str | None = None) -> AestheticScorer:
    """The registry's loader: the head and CLIP from explicit paths, else from `weights_root` or the HF cache."""
    from baselines.weights import locate

    head = head or locate("christophschuhmann/improved-aesthetic-predictor", HEAD_FILE, weights_root)
    if head is None:
        raise UserError(f"no {HEAD_FILE} under {weights_root or 'the weights root'}/christophschuhmann/"
                        "improved-aesthetic-predictor: copy it there from that GitHub repository (or pass head=PATH)")
    return AestheticScorer.load(head, clip or clip_folder(weights_root), device)


def clip_folder(weights_root: Path | None, repo: str = CLIP_MODEL) -> str:
    """A CLIP model's local folder (under `weights_root` or in the HF cache); the repo id when neither has it,
    so that from_pretrained's own error (turned into a UserError by the scorers) names it."""
    from baselines.weights import locate

    config = locate(repo, "config.json", weights_root)
    return str(config.parent) if config is not None else repo


def _plain(value):
    """transformers' SizeDict (a dataclass) as a dict of its set fields; anything else as it is."""
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return value


def describe_processor(processor) -> dict:
    """How a transformers CLIP image processor prepares pixels, as recorded with every score. Its class
    is part of it: transformers 5 resizes with torchvision where it is installed and with PIL where not
    (CLIPImageProcessorPil), and the two differ slightly."""
    keys = ("size", "crop_size", "resample", "do_center_crop", "do_resize", "image_mean", "image_std")
    out = {k: getattr(processor, k, None) for k in keys}
    out = {k: _plain(v) for k, v in out.items()}
    out["resample"] = str(out["resample"])
    return {"library": "transformers " + type(processor).__name__, **out}
