"""HPSv2.1 (Human Preference Score v2.1): 100 x cos(image, prompt) under the HPS v2.1 weights.

The model is open_clip's ViT-H-14 fine-tuned by the HPSv2 authors; `HPS_v2.1_compressed.pt` from
the Hugging Face repository xswu/HPSv2 holds its open_clip state dict under 'state_dict'. It is
run here as a transformers `CLIPModel` (the keys mapped below), so neither open_clip nor
torchvision is needed. The protocol follows hpsv2's `evaluation.py`:

- images: hpsv2's `preprocess_val` (`image_transform(224, is_train=False, resize_longest_max=True)`):
  to float in [0, 1]; tensor bicubic resize of the LONGER side to 224 (torchvision's tensor resize is
  `interpolate(bicubic, align_corners=False)`, antialiased by default since torchvision 0.17, not
  clamped); zero padding to 224 x 224, centred, the odd pixel right/bottom (`ResizeMaxSize`); then
  OpenAI-CLIP normalisation, so the padding reads (0 - mean) / std;
- prompts: open_clip's tokenisation (its text cleaning; SOT + BPE + EOT in 77 ids, truncated keeping
  EOT), done by transformers' CLIPTokenizer on OpenAI CLIP's vocabulary, which is open_clip's;
- score: 100 x cos(unit image features, unit text features), one per image-prompt pair, under
  CUDA AMP (`torch.cuda.amp.autocast()`, i.e. float16) with float32 weights; float32 on CPU
  (precision "amp", the default). hpsv2 also takes the cosine inside autocast, so its score is a
  float16 number (steps of 1/64 between 16 and 32); the cosine here is float32 after the towers;
- faster, not hpsv2's: precision "fp16" or "bf16" converts the weights to that dtype once and runs
  without autocast (see `HpsScorer`); "fp32" is float32 everywhere. Attention is transformers' SDPA
  (`attn_implementation="sdpa"`, set where the model is built and recorded by `describe()`);
- benchmark: 4 styles x 800 prompts, one image each; per style the mean and std of the means of
  ten consecutive 80-image chunks; "Average" is the mean over all images (`benchmark_summary`).

    scorer = load(weights_root, "cuda")            # or registry.get_metric("hps-v2.1").load(...)
    scores = scorer.score(images, prompts)         # uint8 (n, H, W, 3), n prompts -> (n,)
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from methods.common.errors import UserError
from methods.common.provenance import file_sha256

METRIC, VERSION = "hps-v2.1", "v2.1"
HPS_REPO, HPS_FILE = "xswu/HPSv2", "HPS_v2.1_compressed.pt"
# OpenAI CLIP's tokenizer files hold open_clip ViT-H-14's vocabulary (the same 49408 BPE tokens).
TOKENIZER_REPO = "openai/clip-vit-large-patch14"
CONTEXT_LENGTH = 77
IMAGE_SIZE = 224
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ANTIALIAS = True  # torchvision >= 0.17's tensor default; hpsv2 under older torchvision resized without it

STYLES = ("anime", "concept-art", "paintings", "photo")
PROMPTS_PER_STYLE = 800
CHUNK = 80  # hpsv2 averages consecutive slices of 80 scores: ten per style of 800

# precision -> the weights' dtype. "amp" is hpsv2's: float32 weights, float16 autocast on CUDA (float32 elsewhere).
PRECISIONS = {"amp": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
ATTENTION = "sdpa"  # transformers' attn_implementation: torch.nn.functional.scaled_dot_product_attention


# --- the model: transformers' CLIPConfig of open_clip ViT-H-14, and the state-dict mapping ---------

def vit_h14_config(vision: dict | None = None, text: dict | None = None, **overrides):
    """open_clip ViT-H-14 (model_configs/ViT-H-14.json) as a transformers `CLIPConfig`; `vision`,
    `text` and keyword overrides replace entries (tests build a tiny one this way)."""
    from transformers import CLIPConfig

    vision_config = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,  # head width 80
                         intermediate_size=5120, patch_size=14, image_size=IMAGE_SIZE,
                         hidden_act="gelu", layer_norm_eps=1e-5)  # exact GELU: ViT-H-14 is not quick_gelu
    text_config = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       vocab_size=49408, max_position_embeddings=CONTEXT_LENGTH, hidden_act="gelu",
                       layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407)
    vision_config.update(vision or {})
    text_config.update(text or {})
    return CLIPConfig(text_config=text_config, vision_config=vision_config,
                      **{"projection_dim": 1024, **overrides})


def with_sdpa(config):
    """A copy of a CLIPConfig whose towers use transformers' SDPA attention (transformers 5's default where
    torch has it; set explicitly so that no environment falls back to eager attention unnoticed)."""
    import copy

    config = copy.deepcopy(config)
    config._attn_implementation = ATTENTION  # the setter sets the text and vision sub-configs too
    return config


# open_clip name -> transformers name, outside the residual blocks.
_OUTER = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",  # sic: transformers' spelling
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "visual.proj": "visual_projection.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "text_projection": "text_projection.weight",
    "logit_scale": "logit_scale",
}
# open_clip multiplies `x @ proj` (width, dim); nn.Linear stores (dim, width).
_TRANSPOSED = {"visual.proj", "text_projection"}
_TOWERS = {"visual.transformer.resblocks.": "vision_model.encoder.layers.",
           "transformer.resblocks.": "text_model.encoder.layers."}
# Inside block i; attn.in_proj_{weight,bias} is q, k and v stacked along dim 0 (nn.MultiheadAttention).
_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
          "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_QKV = ("q_proj", "k_proj", "v_proj")
_BLOCK_KEY = re.compile(r"(\d+)\.(.+)\.(weight|bias)$")
_IN_PROJ_KEY = re.compile(r"(\d+)\.attn\.in_proj_(weight|bias)$")
_OUTER_INV = {v: k for k, v in _OUTER.items()}
_TOWERS_INV = {v: k for k, v in _TOWERS.items()}
_BLOCK_INV = {v: k for k, v in _BLOCK.items()}


def _tower(key: str, towers: dict[str, str]) -> tuple[str, str] | None:
    """(target prefix, rest of the key) for a key inside a residual block, else None."""
    for prefix, target in towers.items():
        if key.startswith(prefix):
            return target, key[len(prefix):]
    return None


def openclip_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip CLIP state dict -> transformers `CLIPModel` keys. A key not of the open_clip CLIP
    layout is a UserError naming it; completeness is checked against the model in `load_weights`."""
    out = {}
    for key, value in state.items():
        if key in _OUTER:
            out[_OUTER[key]] = value.t().contiguous() if key in _TRANSPOSED else value
            continue
        found = _tower(key, _TOWERS)
        in_proj = _IN_PROJ_KEY.match(found[1]) if found else None
        match = _BLOCK_KEY.match(found[1]) if found else None
        if in_proj:
            layer, kind = in_proj.groups()
            for name, piece in zip(_QKV, value.chunk(3, dim=0)):
                out[f"{found[0]}{layer}.self_attn.{name}.{kind}"] = piece
        elif match and match[2] in _BLOCK:
            layer, part, kind = match.groups()
            out[f"{found[0]}{layer}.{_BLOCK[part]}.{kind}"] = value
        else:
            raise UserError(f"unexpected key {key!r} in the HPS state dict: not an open_clip ViT-H-14 key")
    return out


def transformers_to_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse: transformers `CLIPModel` keys -> open_clip's (q, k, v stacked again)."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):  # a buffer some transformers versions save
            continue
        if key in _OUTER_INV:
            name = _OUTER_INV[key]
            out[name] = value.t().contiguous() if name in _TRANSPOSED else value
            continue
        found = _tower(key, _TOWERS_INV)
        match = _BLOCK_KEY.match(found[1]) if found else None
        if match is None:
            raise KeyError(f"{key!r} is not a CLIPModel key this mapping knows")
        layer, part, kind = match.groups()
        base = f"{found[0]}{layer}."
        if part.endswith(_QKV):
            if part.endswith("q_proj"):  # k and v are stacked with their q
                attn = key[:-len(f"q_proj.{kind}")]
                out[f"{base}attn.in_proj_{kind}"] = torch.cat([state[f"{attn}{n}.{kind}"] for n in _QKV])
            continue
        out[f"{base}{_BLOCK_INV[part]}.{kind}"] = value
    return out


def _openclip_name(key: str) -> str:
    """The open_clip key that provides a transformers key (for error messages)."""
    if key in _OUTER_INV:
        return _OUTER_INV[key]
    found = _tower(key, _TOWERS_INV)
    match = _BLOCK_KEY.match(found[1]) if found else None
    if match is None:
        return key
    layer, part, kind = match.groups()
    base = f"{found[0]}{layer}."
    return f"{base}attn.in_proj_{kind}" if part.endswith(_QKV) else f"{base}{_BLOCK_INV.get(part, part)}.{kind}"


def load_weights(model, state: dict[str, torch.Tensor], source: str = "the HPS state dict"):
    """Load an open_clip state dict into `model` (a CLIPModel, possibly on the meta device), strictly:
    a missing, unexpected or misshapen key is a UserError naming it (by its open_clip name)."""
    mapped = openclip_to_transformers(state)
    expected = model.state_dict()
    missing = sorted({_openclip_name(k) for k in expected if k not in mapped})
    if missing:
        raise UserError(f"{source} lacks {len(missing)} key(s) of open_clip ViT-H-14: {', '.join(missing[:5])}"
                        + (" ..." if len(missing) > 5 else ""))
    unexpected = sorted({_openclip_name(k) for k in mapped if k not in expected})
    if unexpected:
        raise UserError(f"{source} has key(s) this model does not: {', '.join(unexpected[:5])}"
                        + (" ..." if len(unexpected) > 5 else ""))
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise UserError(f"{source}: {_openclip_name(key)} gives {key} of shape {tuple(value.shape)}; "
                            f"the model expects {tuple(expected[key].shape)}")
    # assign=True: the checkpoint's tensors become the parameters (no second copy; meta params allowed)
    model.load_state_dict(mapped, strict=True, assign=True)
    return model.float()


# --- images -----------------------------------------------------------------------------------------

def resized_shape(height: int, width: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """ResizeMaxSize's target: the longer side to `size`, each side rounded with Python's round()."""
    scale = size / float(max(height, width))
    return round(height * scale), round(width * scale)


def preprocess(images: np.ndarray | torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float32 (n, 3, size, size), as hpsv2's preprocess_val does it, on the
    images' device: a uint8 tensor on a GPU is preprocessed there (the fast path of `score`).

    One deviation: an image whose longer side is already `size` but which is not square is padded
    here; ResizeMaxSize skips both the resize and the padding when the scale is 1, which leaves such
    an image non-square and unusable by the ViT (hpsv2 would fail on it)."""
    _check_images(images)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.permute(0, 3, 1, 2).float().div(255)  # ToTensor
    height, width = x.shape[-2:]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=ANTIALIAS)
    pad_h, pad_w = size - new_h, size - new_w
    # torchvision pads [left, top, right, bottom] = [w//2, h//2, w - w//2, h - h//2]; torch's order is
    # (left, right, top, bottom). The fill 0 is applied before normalisation, as in hpsv2.
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_images(images) -> None:
    arrays = (np.ndarray, torch.Tensor)
    uint8 = isinstance(images, arrays) and images.dtype in (np.uint8, torch.uint8)
    if not uint8 or images.ndim != 4 or images.shape[-1] != 3:
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, arrays) else type(images).__name__
        raise UserError(f"HPS scores uint8 RGB images of shape (n, H, W, 3); got {what}")


PREPROCESSING = {
    "from": "hpsv2 preprocess_val: image_transform(224, is_train=False, resize_longest_max=True)",
    "to_float": "uint8 / 255, float32",
    "resize": f"longer side to {IMAGE_SIZE}, sides rounded with round(); torch bicubic, align_corners=False, "
              "not clamped (torchvision's tensor resize)",
    "antialias": ANTIALIAS,
    "padding": f"to {IMAGE_SIZE}x{IMAGE_SIZE} with 0 before normalisation, centred, odd pixel right/bottom "
               "(ResizeMaxSize); also when the longer side is already 224",
    "normalize": {"mean": OPENAI_MEAN, "std": OPENAI_STD},
    "where": "on the images' device: the CPU for arrays (as hpsv2), the GPU for a uint8 tensor there",
}


# --- prompts ----------------------------------------------------------------------------------------

def _fix_text():
    """ftfy.fix_text where installed (open_clip's tokeniser always applies it), else None."""
    try:
        import ftfy
    except ImportError:
        return None
    return ftfy.fix_text


def clean_prompt(text: str, fix_text=None) -> str:
    """open_clip's text cleaning before BPE: ftfy (if given), HTML unescaped twice, whitespace
    collapsed and stripped. Lower-casing is done by the tokeniser's normaliser."""
    if fix_text is not None:
        text = fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split())


# --- the scorer -------------------------------------------------------------------------------------

class HpsScorer:
    """`model`: a CLIPModel holding the HPS weights; `tokenizer`: a CLIP tokenizer of its vocabulary.

    `precision`:
    - "amp" (the default, hpsv2's): float32 weights, the towers under float16 autocast on CUDA
      (`torch.autocast("cuda", torch.float16)`, what `torch.cuda.amp.autocast()` is); float32 elsewhere;
    - "fp16" / "bf16": every weight converted to that dtype once, here (LayerNorm's too: what transformers'
      `.to(dtype)` or `from_pretrained(dtype=...)` gives), pixels cast to it, no autocast. PyTorch's
      LayerNorm kernels keep the mean and variance in float32 for half inputs (CUDA and CPU), attention
      is SDPA in that dtype (float32 softmax accumulation inside the kernel), matmuls accumulate in
      float32 on tensor cores; every activation between kernels is stored in the dtype. The unit
      features and the cosine are float32, as with "amp". Not hpsv2's numbers: `hps_bench` records
      how far the scores move from "amp";
    - "fp32": float32 everywhere.
    The model is converted in place (nn.Module.to): pass a copy to keep a float32 one."""

    def __init__(self, model, tokenizer, device: str = "cpu", precision: str = "amp",
                 checkpoint: Path | None = None, tokenizer_source: str = ""):
        if precision not in PRECISIONS:
            raise UserError(f"HPS precision {precision!r}: use 'amp' (hpsv2's), 'fp16', 'bf16' or 'fp32'")
        self.device = torch.device(device)
        self.precision_key = precision
        self.dtype = PRECISIONS[precision]
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.amp = precision == "amp" and self.device.type == "cuda"
        self.checkpoint = checkpoint
        self.tokenizer_source = tokenizer_source
        self.fix_text = _fix_text()
        self._sha256 = None
        self._check_pooling()

    def _check_pooling(self) -> None:
        # open_clip pools the text tower at ids.argmax(-1): the end-of-text token, the highest id
        # (49407), with 0 as padding. transformers' CLIPTextTransformer pools at the FIRST position
        # holding config.eos_token_id (any id but the legacy 2). So the two pool at the same position
        # when the tokenizer's EOT is the config's eos_token_id and the vocabulary's highest id; the
        # tokenizer pads with EOT, which is harmless: under the causal mask the pooled state never
        # sees positions after it. Checked here once rather than trusted.
        eos = self.tokenizer.eos_token_id
        config = self.model.config.text_config
        highest = max(self.tokenizer.get_vocab().values())
        if eos != config.eos_token_id or eos != highest or eos == 2 or len(self.tokenizer) != config.vocab_size:
            raise UserError(f"the CLIP tokenizer ({self.tokenizer_source or 'given'}) does not fit the HPS text "
                            f"tower: end-of-text id {eos}, highest id {highest}, {len(self.tokenizer)} tokens; "
                            f"the model's eos_token_id is {config.eos_token_id} with {config.vocab_size} tokens")

    @property
    def precision(self) -> str:
        if self.amp:
            return "float16 autocast (CUDA AMP, as hpsv2), float32 weights"
        if self.dtype == torch.float32:
            return "float32"
        name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}[self.dtype]
        return (f"{name} weights and activations (converted once, no autocast; LayerNorm statistics in float32 "
                f"inside its kernel), unit features and cosine in float32")

    @property
    def attention(self) -> dict:
        """The attention implementation each tower runs (transformers' attn_implementation)."""
        return {"vision": self.model.vision_model.config._attn_implementation,
                "text": self.model.text_model.config._attn_implementation}

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """(n, 77) ids: SOT, the first 75 BPE tokens, EOT, then padding, as open_clip truncates."""
        texts = [clean_prompt(p, self.fix_text) for p in prompts]
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=CONTEXT_LENGTH,
                              return_tensors="pt")["input_ids"]

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)

    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed (n, 3, 224, 224) -> unit (n, 1024) float32 features."""
        with self._autocast():
            out = self.model.get_image_features(pixel_values=pixels.to(device=self.device, dtype=self.dtype))
        return _unit(out)

    @torch.no_grad()
    def text_features(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, 77) ids -> unit (n, 1024) float32 features; no attention mask, as open_clip (causal only)."""
        with self._autocast():
            out = self.model.get_text_features(input_ids=ids.to(self.device))
        return _unit(out)

    def score(self, images: np.ndarray | torch.Tensor, prompts: list[str], batch_size: int = 32) -> np.ndarray:
        """uint8 (n, H, W, 3) images and their n prompts -> (n,) float64, 100 x cosine. A uint8 tensor
        already on the model's GPU is preprocessed there (batched resize, no copy to the host)."""
        _check_images(images)
        if len(images) != len(prompts):
            raise UserError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for i in range(0, len(prompts), batch_size):
            img = self.image_features(preprocess(images[i:i + batch_size], self.image_size))
            txt = self.text_features(self.tokenize(list(prompts[i:i + batch_size])))  # CPU work while the GPU runs
            out.append(100 * (img * txt).sum(-1))  # the cosine in float32, after AMP
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)  # one copy to the host, at the end

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    def checkpoint_sha256(self) -> str | None:
        if self._sha256 is None and self.checkpoint is not None:
            self._sha256 = file_sha256(self.checkpoint)
        return self._sha256

    def describe(self) -> dict:
        import transformers

        try:
            import ftfy
            ftfy_version = ftfy.__version__
        except ImportError:
            ftfy_version = None
        return {
            "metric": METRIC, "version": VERSION, "scale": "100 x cosine",
            "model": "open_clip ViT-H-14 with the HPS v2.1 weights, run as transformers CLIPModel",
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256(),
            "tokenizer": self.tokenizer_source,
            "text": {"context_length": CONTEXT_LENGTH,
                     "truncation": "SOT + first 75 tokens + EOT (open_clip's); pooled at EOT",
                     "cleaning": ("ftfy.fix_text, " if self.fix_text else "no ftfy (not installed), ")
                     + "html.unescape twice, whitespace collapsed, lower-cased"},
            "preprocessing": {**PREPROCESSING, "torch": torch.__version__},
            "precision": self.precision, "precision_option": self.precision_key,
            "weights_dtype": str(self.dtype).removeprefix("torch."), "attention": self.attention,
            "device": str(self.device),
            "packages": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "numpy": np.__version__, "ftfy": ftfy_version},
        }


def _unit(output) -> torch.Tensor:
    """transformers 5 returns an output whose pooler_output is the projection; 4 returns the tensor."""
    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    return F.normalize(features.float(), dim=-1)


# --- loading ----------------------------------------------------------------------------------------

def _checkpoint_path(weights_root: Path | None, checkpoint: str | Path | None) -> Path:
    from baselines.weights import locate

    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / HPS_FILE if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"HPS checkpoint {path} not found: download {HPS_FILE} from the Hugging Face "
                            f"repository {HPS_REPO} and pass its path")
        return path
    found = locate(HPS_REPO, HPS_FILE, weights_root)
    if found is None:
        where = f"under {weights_root / HPS_REPO} or " if weights_root else ""
        raise UserError(f"no {HPS_FILE} {where}in the Hugging Face cache: download it from the Hugging Face "
                        f"repository {HPS_REPO} (huggingface-cli download {HPS_REPO} {HPS_FILE} --local-dir "
                        f"<weights folder>/{HPS_REPO}) and pass --weights-root, or pass its path")
    return Path(found)


def _tokenizer_folder(weights_root: Path | None, tokenizer: str | Path | None) -> Path:
    from baselines.weights import locate

    name = str(tokenizer or TOKENIZER_REPO)
    if Path(name).is_dir():
        return Path(name)
    found = locate(name, None, weights_root)
    if found is None or not Path(found).is_dir():
        raise UserError(f"CLIP tokenizer {name} is neither a folder nor {'under ' + str(weights_root) + ' or ' if weights_root else ''}"
                        f"in the Hugging Face cache: download {TOKENIZER_REPO} (its tokenizer files suffice) "
                        "and pass --weights-root or the folder")
    return Path(found)


def load(weights_root: Path | None, device: str = "cpu", checkpoint: str | None = None,
         tokenizer: str | None = None, precision: str = "amp", config=None) -> HpsScorer:
    """The HPS v2.1 scorer from `<weights_root>/xswu/HPSv2/HPS_v2.1_compressed.pt` (or the Hugging Face
    cache, or `checkpoint`) and a CLIP tokenizer folder (`tokenizer`, default openai/clip-vit-large-patch14
    under `weights_root` or in the cache). `config`: the CLIPConfig, ViT-H-14's unless a test passes one
    (a copy is built with SDPA attention). `precision`: see `HpsScorer` ("amp", hpsv2's, by default)."""
    from accelerate import init_empty_weights
    from transformers import CLIPModel, CLIPTokenizer

    path = _checkpoint_path(weights_root, checkpoint)
    folder = _tokenizer_folder(weights_root, tokenizer)
    try:
        clip_tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise UserError(f"no CLIP tokenizer files in {folder} ({type(error).__name__}): it needs vocab.json and "
                        f"merges.txt or tokenizer.json, as in {TOKENIZER_REPO}") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated download or another format; the message names it
        raise UserError(f"{path} could not be read as a torch checkpoint ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise UserError(f"{path} has no 'state_dict': not an HPS checkpoint")
    with init_empty_weights():  # parameters on the meta device: the checkpoint's tensors are assigned
        model = CLIPModel(with_sdpa(config if config is not None else vit_h14_config()))
    load_weights(model, saved["state_dict"], source=str(path))
    return HpsScorer(model, clip_tokenizer, device, precision, checkpoint=path, tokenizer_source=str(folder))


# --- the benchmark ----------------------------------------------------------------------------------

def benchmark_summary(scores: dict[str, np.ndarray]) -> dict:
    """Per-style and overall HPS of the HPD v2 benchmark, as hpsv2's `evaluate_benchmark` prints them.

    `scores[style]` are the per-image scores in prompt order (image `{idx:05d}.jpg` of the style's
    prompt file). Per style: `mean` and `std` of the means of consecutive 80-image chunks (ten for 800
    images; np.std, i.e. population std; a shorter last chunk in a partial run, as hpsv2 slices).
    `average`: the mean over ALL images pooled across styles, as hpsv2's printed "Average" (which equals
    the mean of the four style means only when each style has 800 images). `partial` is True when a style
    is missing or has other than 800 images: such a run is not the benchmark."""
    unknown = [s for s in scores if s not in STYLES]
    if unknown:
        raise UserError(f"unknown HPS benchmark style(s) {', '.join(unknown)}; the styles are {', '.join(STYLES)}")
    styles, pooled = {}, []
    for style in STYLES:
        values = np.asarray(scores.get(style, []), dtype=np.float64).ravel()
        if values.size == 0:
            continue
        chunk_means = np.array([values[i:i + CHUNK].mean() for i in range(0, values.size, CHUNK)])
        styles[style] = {"mean": float(chunk_means.mean()), "std": float(chunk_means.std()),
                         "n": int(values.size), "chunks": int(chunk_means.size)}
        pooled.append(values)
    missing = [s for s in STYLES if s not in styles]
    partial = bool(missing) or any(v["n"] != PROMPTS_PER_STYLE for v in styles.values())
    all_scores = np.concatenate(pooled) if pooled else np.zeros(0)
    return {
        "metric": METRIC, "scale": "100 x cosine",
        "styles": styles,
        "average": float(all_scores.mean()) if all_scores.size else None,
        "n": int(all_scores.size),
        "missing_styles": missing,
        "partial": partial,
        "protocol": f"{len(STYLES)} styles x {PROMPTS_PER_STYLE} prompts, one image each; style mean/std over "
                    f"chunks of {CHUNK} consecutive images; average over all images (hpsv2 evaluation.py)",
    }
