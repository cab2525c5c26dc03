"""openai/clip-vit-large-patch14 rebuilt offline: its tokenizer from OpenAI CLIP's BPE file (open_clip_torch's
copy), its config, and a folder laid out as the repository with seeded random or mapped open_clip weights; used
by the HPS, aesthetic and CLIP score comparisons."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

import torch

from methods.common.errors import UserError

# OpenAI CLIP's BPE merges; open_clip_torch ships it, hpsv2 1.2.0's wheel lacks it (tgxs002/HPSv2#30),
# hpsv2x 1.2.0's sdist ships this same file (sha256 checked against both).
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# openai/clip-vit-large-patch14's preprocessor_config.json, verbatim (the form users download).
OPENAI_L14_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "size": 224,
}


def _bpe_path() -> Path:
    """open_clip_torch's copy of OpenAI CLIP's BPE file, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is not installed: its BPE file builds the CLIP tokenizer")
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BPE_SHA256:
        raise UserError(f"{path} has sha256 {digest[:12]}..., not OpenAI CLIP's BPE file {BPE_SHA256[:12]}...")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's byte -> printable character table (the BPE's base symbols, in vocabulary order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(folder: Path) -> Path:
    """openai/clip-vit-large-patch14's tokenizer (vocab.json, merges.txt, 77 tokens) rebuilt offline from
    the BPE file, in OpenAI's SimpleTokenizer order: 256 byte symbols, the same with '</w>', 48894 merges,
    then <|startoftext|> 49406 and <|endoftext|> 49407."""
    from transformers import CLIPTokenizer

    merges = gzip.open(_bpe_path()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != 49408:
        raise UserError(f"the rebuilt CLIP vocabulary has {len(vocab)} tokens, not 49408")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer.from_pretrained(str(folder), model_max_length=77).save_pretrained(str(folder))
    return folder


def clip_l14_config():
    """openai/clip-vit-large-patch14's config.json as a transformers CLIPConfig (quick_gelu; the text
    tower's legacy eos_token_id=2, with which transformers pools at argmax(ids), i.e. at <|endoftext|>)."""
    from transformers import CLIPConfig

    text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=768)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                  projection_dim=768)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768, logit_scale_init_value=2.6592)


def write_clip_l14_folder(folder: Path, openclip_state: dict | None = None, seed: int = 0) -> Path:
    """A local folder laid out as openai/clip-vit-large-patch14: config.json + model.safetensors of a
    CLIPModel of its real config, its preprocessor_config.json verbatim, and its tokenizer. The weights
    are `openclip_state` (an open_clip ViT-L-14-quickgelu state dict, mapped with hps's open_clip ->
    transformers mapping) or, without one, seeded random values (`random_state`)."""
    from accelerate import init_empty_weights
    from transformers import CLIPModel

    from harness.metrics import hps

    with init_empty_weights():  # parameters on the meta device; buffers (position ids) real
        model = CLIPModel(clip_l14_config())
    if openclip_state is None:
        model.load_state_dict(random_state(model, seed), strict=True, assign=True)
    else:
        hps.load_weights(model, openclip_state, source="open_clip ViT-L-14-quickgelu")
    model.save_pretrained(str(folder))
    del model
    write_clip_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(OPENAI_L14_PREPROCESSOR, indent=2) + "\n")
    return folder


def random_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random values for every entry of `model`'s state dict (its parameters may be on the meta
    device), drawn much faster than transformers' own init of a ViT-L (18 s on 2 cores): matrices and
    convolutions N(0, 1 / fan_in); token, position and class embeddings N(0, 0.02^2); layer-norm weights
    1 + 0.1 N(0, 1); biases 0.1 N(0, 1) (layer norms and biases away from 1 / 0, so that a swapped one shows);
    logit_scale log(1 / 0.07)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        if name.endswith("logit_scale"):
            state[name] = torch.full(value.shape, 2.6592)
        elif "embedding" in name and "patch" not in name:  # tables and the class token
            state[name] = 0.02 * noise
        elif value.ndim >= 2:  # linear layers, projections, the patch convolution
            state[name] = noise / (value[0].numel() ** 0.5)
        elif name.endswith("weight"):  # layer norms: the only 1-d weights
            state[name] = 1 + 0.1 * noise
        else:
            state[name] = 0.1 * noise
    return state
