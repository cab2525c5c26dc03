"""HPS v2.1 (harness.metrics.hps) against hpsv2 1.2.0's own evaluation code (`hps_parity`), and importing
hpsv2's vendored open_clip as installed (`import_hpsv2_open_clip`)."""
from __future__ import annotations

import contextlib
import gc
import gzip
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .clip_folder import BPE_FILE, BPE_SHA256, _bpe_path, write_clip_tokenizer
from .common import (_capture, _device_wrapped, _quiet, _result, _row, _versions, difference,
                     perturb_small_parameters, random_images)
from .tolerances import HPS_AMP_TOLERANCE, HPS_GPU_PREPROCESSING_TOLERANCE, HPS_TOLERANCE

HPS_SHAPES = ((224, 224), (300, 512), (517, 263), (640, 640))  # square at 224 (no resize), wide, tall+odd, square
HPS_PROMPTS = (
    "A cat with two horns on its head",
    "it\u2019s a \u201cquoted\u201d Painting &amp; more,   2 dogs!",  # ftfy, HTML entities, whitespace
    "a watercolor fox in the snow, highly detailed",
    " ".join(["an intricate oil painting of a lighthouse on a cliff at dusk, dramatic clouds"] * 8),  # > 77 tokens
)


def _hpsv2_autocast():
    """What hpsv2's evaluation wraps its forward and cosine in: torch.cuda.amp.autocast() (float16), a deprecated
    alias of torch.autocast("cuda", dtype=torch.float16) in newer torch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        legacy = getattr(torch.cuda.amp, "autocast", None)
        return legacy() if legacy is not None else torch.autocast("cuda", dtype=torch.float16)


@contextlib.contextmanager
def _stand_ins_for_unused_imports():
    """hpsv2 imports two modules that the comparison never uses and a bare environment may lack: `clint`
    (hpsv2/__init__ -> utils: `from clint.textui import progress`, the progress bar of its downloads; clint and
    its dependency `args` are sdists only) and `turtle` (`from turtle import forward` in its vendored
    open_clip/factory.py, a stray import; turtle needs tkinter). Where one is not importable, an empty stand-in
    is in sys.modules while hpsv2 is imported, and removed after; yields the names stood in for."""
    import types

    missing = {}
    try:
        import turtle  # noqa: F401  (imported to see whether it can be)
    except ImportError:
        missing["turtle"] = {"forward": None}
    try:
        from clint.textui import progress  # noqa: F401
    except ImportError:
        missing.update({"clint": {}, "clint.textui": {}, "clint.textui.progress": {"bar": None}})
    added = []
    for name, attributes in missing.items():
        if name not in sys.modules:
            module = types.ModuleType(name, "a stand-in for an import hpsv2 makes and the parity never uses")
            module.__dict__.update(attributes)
            sys.modules[name] = module
            added.append(name)
    for name in added:  # clint.textui.progress reachable as attributes, as `from clint.textui import progress` needs
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, sys.modules[name])
    try:
        yield [n for n in added if "." not in n]
    finally:
        for name in added:
            sys.modules.pop(name, None)


def import_hpsv2_open_clip():
    """hpsv2's vendored open_clip (`hpsv2.src.open_clip`) and a note on how it was imported.

    hpsv2 1.2.0's wheel lacks `src/open_clip/bpe_simple_vocab_16e6.txt.gz`, which its tokenizer module
    reads at import time (tgxs002/HPSv2#30), so `import hpsv2.src.open_clip` fails as installed. Where
    the file is missing, that one read is redirected to open_clip_torch's copy, which is byte-identical
    to the file hpsv2x 1.2.0 ships (BPE_SHA256); nothing else is changed, except that an unused import
    that is not importable gets an empty stand-in (`_stand_ins_for_unused_imports`, named in the note)."""
    spec = importlib.util.find_spec("hpsv2")  # does not run hpsv2/__init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("hpsv2 is not installed")
    vendored = (Path(list(spec.submodule_search_locations)[0]) / "src" / "open_clip" / BPE_FILE).resolve()
    if "hpsv2.src.open_clip" in sys.modules:
        import hpsv2.src.open_clip as open_clip_vendored
        return open_clip_vendored, getattr(open_clip_vendored, "_parity_import_note", "hpsv2's own BPE file")
    if vendored.is_file():
        with _quiet(), _stand_ins_for_unused_imports() as stood_in:
            import hpsv2.src.open_clip as open_clip_vendored
        note = "hpsv2's own BPE file"
    else:
        source = _bpe_path()
        real_open = gzip.open

        def redirected(filename, *args, **kwargs):
            if isinstance(filename, (str, os.PathLike)) and Path(filename).resolve() == vendored:
                filename = source
            return real_open(filename, *args, **kwargs)

        gzip.open = redirected
        try:
            with _quiet(), _stand_ins_for_unused_imports() as stood_in:
                import hpsv2.src.open_clip as open_clip_vendored
        finally:
            gzip.open = real_open
        note = (f"hpsv2's wheel lacks {BPE_FILE} (HPSv2#30): read open_clip_torch's copy "
                f"(sha256 {BPE_SHA256[:12]}..., identical to hpsv2x 1.2.0's)")
    if stood_in:
        note += f"; empty stand-ins for hpsv2's unused imports of {', '.join(stood_in)} (not importable here)"
    open_clip_vendored._parity_import_note = note
    return open_clip_vendored, note


def _our_hps(scorer, images, prompts) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(scores, unit image features, unit text features) of `scorer.score`, one image per call (the images differ
    in size); `images` are uint8 arrays or tensors."""
    image_store, text_store = [], []
    _capture(scorer, "image_features", image_store)
    _capture(scorer, "text_features", text_store)
    scores = np.concatenate([scorer.score(im[None], [p]) for im, p in zip(images, prompts)])
    return scores, torch.cat(image_store), torch.cat(text_store)


@_device_wrapped
def hps_parity(shapes=HPS_SHAPES, prompts=HPS_PROMPTS, seed: int = 0, device: str = "cpu") -> dict:
    """HPS v2.1 through `harness.metrics.hps.load` against hpsv2 1.2.0's evaluation code, on one seeded random
    ViT-H-14 (layer norms and biases perturbed) saved as an HPS checkpoint. On the CPU both in float32; on CUDA
    as hpsv2 runs there (float16 autocast, rows "amp" and "amp, GPU preprocessing") and in float32 ("fp32")."""
    started = time.time()
    from PIL import Image

    from harness.metrics import hps

    cuda = torch.device(device).type == "cuda"
    open_clip_vendored, bpe_note = import_hpsv2_open_clip()
    images = random_images(shapes, seed)
    prompts = list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")

    # hpsv2's side, as evaluation.py's initialize_model() builds it: on the CPU (create_model builds there and
    # moves the model to `device`; here it moves after the perturbation, drawn on the CPU).
    torch.manual_seed(seed)
    with _quiet():
        model, _, preprocess_val = open_clip_vendored.create_model_and_transforms(
            "ViT-H-14", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
            force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
            image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
            with_score_predictor=False, with_region_predictor=False)
    perturb_small_parameters(model, seed=seed + 1)
    model.eval()
    tokenizer = open_clip_vendored.get_tokenizer("ViT-H-14")
    ref_pixels = torch.stack([preprocess_val(Image.fromarray(im)) for im in images])  # BenchmarkDataset + collate
    ref_tokens = tokenizer(prompts)
    reference = {}
    if not cuda:
        with torch.no_grad():  # evaluate_benchmark wraps this in torch.cuda.amp.autocast(): float16 on a GPU only
            outputs = model(ref_pixels, ref_tokens)
            ref_img, ref_txt = outputs["image_features"].float(), outputs["text_features"].float()
            reference["fp32"] = (ref_img, ref_txt, torch.diagonal(ref_img @ ref_txt.T * 100))
    else:
        model.to(device)
        with torch.no_grad():
            pixels, tokens = ref_pixels.to(device=device), ref_tokens.to(device=device)
            with _hpsv2_autocast():  # evaluate_benchmark, verbatim in effect: one batch of all the images
                outputs = model(pixels, tokens)
                image_features, text_features = outputs["image_features"], outputs["text_features"]
                logits_per_image = image_features @ text_features.T * 100
            amp_img, amp_txt = image_features.float().cpu(), text_features.float().cpu()
            reference["amp"] = (amp_img, amp_txt, torch.diagonal(logits_per_image).float().cpu())
            reference_amp_dtypes = {"features": str(image_features.dtype), "scores": str(logits_per_image.dtype)}
            outputs = model(pixels, tokens)  # float32, TF32 off (float32_on)
            ref_img, ref_txt = outputs["image_features"].float().cpu(), outputs["text_features"].float().cpu()
            reference["fp32"] = (ref_img, ref_txt, torch.diagonal(ref_img @ ref_txt.T * 100))
        model.cpu()
    ref_scores = reference["fp32"][2]

    with tempfile.TemporaryDirectory(prefix="hps-parity-") as tmp:
        root = Path(tmp) / "weights"
        checkpoint = root / hps.HPS_REPO / hps.HPS_FILE
        checkpoint.parent.mkdir(parents=True)
        torch.save({"state_dict": model.state_dict()}, checkpoint)
        parameters = sum(p.numel() for p in model.parameters())
        del model, outputs
        gc.collect()  # one ViT-H-14 in float32 at a time (about 4 GB each)
        tokenizer_folder = write_clip_tokenizer(Path(tmp) / "tokenizer")
        scorer = hps.load(root, device, tokenizer=str(tokenizer_folder), precision="amp" if cuda else "fp32")
        ours = {}
        if cuda:
            ours["amp"] = _our_hps(hps.HpsScorer(scorer.model, scorer.tokenizer, device, "amp"), images, prompts)
            on_gpu = [torch.from_numpy(im).to(device) for im in images]
            ours["amp, GPU preprocessing"] = _our_hps(hps.HpsScorer(scorer.model, scorer.tokenizer, device, "amp"),
                                                      on_gpu, prompts)
            gpu_pixels = torch.cat([hps.preprocess(im[None]).cpu() for im in on_gpu])
            attention = scorer.attention
            scorer = hps.HpsScorer(scorer.model, scorer.tokenizer, device, "fp32")
        ours["fp32"] = _our_hps(scorer, images, prompts)
        attention = scorer.attention if not cuda else attention
        our_tokens = scorer.tokenize(prompts)
        del scorer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    our_pixels = torch.cat([hps.preprocess(im[None]) for im in images])

    # open_clip pads with 0 after <|endoftext|>, transformers' tokenizer with <|endoftext|>: compare up to it.
    tokens_equal = all(torch.equal(o[:int(r.argmax()) + 1], r[:int(r.argmax()) + 1])
                       for o, r in zip(our_tokens, ref_tokens))
    variants = (("fp32", HPS_TOLERANCE, "fp32", our_pixels),)
    if cuda:
        variants = (("amp", HPS_AMP_TOLERANCE, "amp", our_pixels),
                    ("amp, GPU preprocessing", HPS_GPU_PREPROCESSING_TOLERANCE, "amp", gpu_pixels),
                    ("fp32", HPS_TOLERANCE, "fp32", our_pixels))
    rows = []
    for label, tolerance, side, pixels in variants:
        scores, our_img, our_txt = ours[label]
        ref_img, ref_txt, ref = reference[side]
        row = _row(label, tolerance, pixels=difference(pixels, ref_pixels),
                   features=difference(torch.cat([our_img, our_txt]), torch.cat([ref_img, ref_txt])),
                   scores=difference(scores, ref))
        row["image_features"] = difference(our_img, ref_img)
        row["text_features"] = difference(our_txt, ref_txt)
        row["tokens_equal_through_end_of_text"] = tokens_equal
        if not tokens_equal:
            row["within_tolerance"] = False
        rows.append(row)

    details = {"reference_scores": [float(s) for s in ref_scores],
               "our_scores": [float(s) for s in ours["fp32"][0]],
               "score_spread": float(ref_scores.max() - ref_scores.min()),
               "parameters": int(parameters), "hpsv2_bpe": bpe_note,
               "precision": "float32 on CPU on both sides (hpsv2 itself: precision='amp', float32 weights, "
                            "torch.cuda.amp.autocast() float16 on CUDA; a no-op on CPU)",
               "project": {"scorer": "harness.metrics.hps.load(weights_root, 'cpu', tokenizer=<folder>, "
                                     "precision='fp32')",
                           "batch": "one image per score() call (the images differ in size)",
                           "tokenizer": "transformers CLIPTokenizer on OpenAI CLIP's vocabulary, rebuilt offline"},
               "weights": f"seeded random (torch.manual_seed({seed})), layer norms and biases perturbed by "
                          "0.1 x N(0, 1)"}
    explanation = ("float32 on both sides, the same pixels and token ids up to <|endoftext|>: what remains is the "
                   "kernels (transformers' SDPA attention on split q/k/v vs nn.MultiheadAttention's packed in_proj), "
                   "rounding in the last bits over 32 + 24 layers. hpsv2 scores under CUDA AMP (float16) on a GPU, "
                   "where agreement is looser (tests/test_metric_hps_gpu.py allows 0.25 on the 100 x cosine scale "
                   "under autocast on both sides).")
    if cuda:
        amp_scores, gpu_scores = ours["amp"][0], ours["amp, GPU preprocessing"][0]
        amp_ref_img, amp_ref_txt, amp_ref_scores = reference["amp"]
        details.update({
            "reference_amp_scores": [float(s) for s in amp_ref_scores],
            "our_amp_scores": [float(s) for s in amp_scores],
            "our_amp_gpu_preprocessing_scores": [float(s) for s in gpu_scores],
            "reference_amp_dtypes": reference_amp_dtypes,
            "amp_scores_vs_reference_cosine_in_float32": difference(
                amp_scores, torch.diagonal(amp_ref_img @ amp_ref_txt.T * 100)),
            "gpu_preprocessing_only": {
                "pixels_vs_cpu_preprocessing": difference(gpu_pixels, our_pixels),
                "amp_scores_vs_cpu_preprocessed_amp_scores": difference(gpu_scores, amp_scores)},
            "reference_amp_vs_reference_fp32": {"features": difference(torch.cat([amp_ref_img, amp_ref_txt]),
                                                                       torch.cat(reference["fp32"][:2])),
                                                "scores": difference(amp_ref_scores, ref_scores)},
            "precision": "rows 'amp': hpsv2 as on a GPU, its float32 model under torch.cuda.amp.autocast() (float16) "
                         "incl. the 100 x cosine (a float16 score), one batch of all images; the project's "
                         "precision='amp' (float16 autocast, the cosine in float32), one image per call. Row 'fp32': "
                         "float32 both sides, TF32 off",
            "project": {"scorer": f"harness.metrics.hps.load(weights_root, {device!r}, tokenizer=<folder>, "
                                  "precision='amp'); precision='fp32' on the same model for the 'fp32' row",
                        "gpu_preprocessing": "score() on uint8 (1, H, W, 3) tensors on the GPU: hps.preprocess there "
                                             "(torch antialiased bicubic on CUDA); the reference's preprocess_val on "
                                             "PIL images on the CPU",
                        "batch": "one image per score() call (the images differ in size)",
                        "attention": attention,
                        "tokenizer": "transformers CLIPTokenizer on OpenAI CLIP's vocabulary, rebuilt offline"}})
        explanation = ("'fp32': " + explanation.split(" hpsv2 scores under")[0] + " 'amp': both sides compute "
                       "in float16 with float32 accumulation in other kernels, so float32 last-bit differences flip "
                       "float16 roundings (unit roundoff 4.9e-4) layer after layer; hpsv2 also rounds its 100 x cosine "
                       "to float16 (steps of 0.016 at real scores of 16-32), the project takes it in float32. 'amp, "
                       "GPU preprocessing': the same plus torch's antialiased bicubic on CUDA vs the CPU's (float32 "
                       "arithmetic in another order).")
    else:
        details["project"]["attention"] = attention
    return _result(
        "hps-v2.1",
        "hpsv2 (tgxs002/HPSv2): evaluation.py initialize_model() -> create_model_and_transforms('ViT-H-14', None, "
        "precision='amp', light_augmentation=True, output_dict=True), its preprocess_val on PIL images, "
        "get_tokenizer('ViT-H-14'), evaluate_benchmark's diag(100 * image_features @ text_features.T)",
        _versions("hpsv2", "torchvision", "transformers", "ftfy"),
        "pixels after preprocessing, unit image and text features, and per-pair scores (100 x cosine) of "
        f"{len(images)} random uint8 images {', '.join(f'{h}x{w}' for h, w in shapes)} (incl. non-square, odd "
        "padding, and a 224 square that is not resized) with prompts incl. ftfy/HTML cleaning and one over 77 tokens",
        len(images), rows, explanation, details, started, device)
