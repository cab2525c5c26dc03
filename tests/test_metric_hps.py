"""HPSv2.1 without its weights: a tiny random CLIPModel written as an open_clip state dict in the real
file layout (<root>/xswu/HPSv2/HPS_v2.1_compressed.pt, {"state_dict": ...}) and loaded back through
`load`; hpsv2's preprocessing (longer side to 224, zero padding, CLIP normalisation); open_clip's
truncation and end-of-text pooling; the benchmark's chunked averages."""
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.metrics import hps
from methods.common.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red cube", "two blue spheres on a white background", "a green cone", "a small purple diamond"]
IMAGES = np.random.default_rng(0).integers(0, 256, (4, 96, 160, 3), dtype=np.uint8)
SCORE_TOLERANCE = 1e-4  # float32 on CPU, the same operations on both sides: agreement is ~1e-6


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    """A tiny CLIP BPE vocabulary in openai's file format: the 256 byte symbols, the same with the
    end-of-word mark, two merges, then start- and end-of-text; end-of-text is the highest id, as 49407
    is in CLIP's vocabulary (open_clip pools at the argmax id)."""
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = symbols + [s + "</w>" for s in symbols] + ["re", "red</w>", "<|startoftext|>", "<|endoftext|>"]
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\n")
    return folder


@pytest.fixture(scope="module")
def tiny(tokenizer_folder, tmp_path_factory):
    """(random CLIPModel, its config, weights root with the checkpoint, checkpoint path)."""
    from transformers import CLIPModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_folder))
    config = hps.vit_h14_config(
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=32),
        text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        projection_dim=16)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    with torch.no_grad():  # layer norms start at 1 and 0: perturb them so that a swapped one would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("weights")
    path = root / hps.HPS_REPO / hps.HPS_FILE
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": hps.transformers_to_openclip(model.state_dict())}, path)
    return model, config, root, path


@pytest.fixture(scope="module")
def scorer(tiny, tokenizer_folder):
    model, config, root, _ = tiny
    return hps.load(root, "cpu", tokenizer=str(tokenizer_folder), config=config)


def _direct_scores(model, tokenizer, images, prompts):
    """100 x cos with the original model: hpsv2's pixels, ids truncated to 77 keeping EOT."""
    ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        img = model.get_image_features(pixel_values=hps.preprocess(images)).pooler_output
        txt = model.get_text_features(input_ids=ids).pooler_output
    return (100 * (F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1)).double().numpy()


def test_the_checkpoint_written_in_open_clip_keys_scores_as_the_original_model(tiny, scorer):
    model = tiny[0]
    state = torch.load(tiny[3], weights_only=True)["state_dict"]
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in state and "text_projection" in state
    assert not any(k.startswith(("vision_model", "text_model")) for k in state)
    scores = scorer.score(IMAGES, PROMPTS, batch_size=3)
    expected = _direct_scores(model, scorer.tokenizer, IMAGES, PROMPTS)
    assert scores.dtype == np.float64 and scores.shape == (4,)
    np.testing.assert_allclose(scores, expected, atol=SCORE_TOLERANCE, rtol=0)
    assert np.ptp(scores) > 0.1 and np.all(np.abs(scores) <= 100)
    assert scorer.score(IMAGES[2:3], PROMPTS[2:3])[0] == pytest.approx(scores[2], abs=SCORE_TOLERANCE)


def test_the_mapping_puts_each_open_clip_tensor_where_transformers_reads_it(tiny):
    state = hps.transformers_to_openclip(tiny[0].state_dict())
    mapped = hps.openclip_to_transformers(state)
    in_proj = state["visual.transformer.resblocks.0.attn.in_proj_weight"]
    assert torch.equal(mapped["vision_model.encoder.layers.0.self_attn.q_proj.weight"], in_proj[:32])
    assert torch.equal(mapped["vision_model.encoder.layers.0.self_attn.v_proj.weight"], in_proj[64:])
    assert torch.equal(mapped["text_projection.weight"], state["text_projection"].t())  # (width, dim) in open_clip
    assert torch.equal(mapped["vision_model.pre_layrnorm.bias"], state["visual.ln_pre.bias"])
    assert torch.equal(mapped["text_model.encoder.layers.1.mlp.fc2.weight"], state["transformer.resblocks.1.mlp.c_proj.weight"])
    assert set(mapped) == set(tiny[0].state_dict())


def _open_clip_features(state, pixels, ids, heads=2, patch=32):
    """open_clip's CLIP forward written out on its own keys (VisionTransformer: conv1, class token,
    ln_pre, pre-norm blocks with nn.MultiheadAttention, ln_post on the class token, @ proj; text: token
    and positional embeddings, causal blocks, ln_final, pooled at ids.argmax(-1), @ text_projection).
    Independent of the key mapping, so a mistake that the round trip would undo shows here."""
    def layer_norm(x, prefix):
        return F.layer_norm(x, x.shape[-1:], state[prefix + ".weight"], state[prefix + ".bias"], 1e-5)

    def blocks(x, prefix, mask=None):
        i = 0
        while f"{prefix}.{i}.ln_1.weight" in state:
            b = f"{prefix}.{i}."
            attention = torch.nn.MultiheadAttention(x.shape[-1], heads, batch_first=True)
            attention.load_state_dict({k[len(b + "attn."):]: v for k, v in state.items() if k.startswith(b + "attn.")})
            h = layer_norm(x, b + "ln_1")
            x = x + attention(h, h, h, need_weights=False, attn_mask=mask)[0]
            h = F.gelu(F.linear(layer_norm(x, b + "ln_2"), state[b + "mlp.c_fc.weight"], state[b + "mlp.c_fc.bias"]))
            x = x + F.linear(h, state[b + "mlp.c_proj.weight"], state[b + "mlp.c_proj.bias"])
            i += 1
        return x

    with torch.no_grad():
        x = F.conv2d(pixels, state["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
        x = torch.cat([state["visual.class_embedding"].expand(len(x), 1, -1), x], dim=1)
        x = layer_norm(x + state["visual.positional_embedding"], "visual.ln_pre")
        x = blocks(x, "visual.transformer.resblocks")
        image = layer_norm(x[:, 0], "visual.ln_post") @ state["visual.proj"]
        t = state["token_embedding.weight"][ids] + state["positional_embedding"]
        causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
        t = layer_norm(blocks(t, "transformer.resblocks", causal), "ln_final")
        text = t[torch.arange(len(ids)), ids.argmax(-1)] @ state["text_projection"]
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


def test_open_clips_forward_on_the_checkpoint_gives_the_scorers_features(tiny, scorer):
    state = torch.load(tiny[3], weights_only=True)["state_dict"]
    pixels, ids = hps.preprocess(IMAGES), scorer.tokenize(PROMPTS)
    image, text = _open_clip_features(state, pixels, ids)
    torch.testing.assert_close(scorer.image_features(pixels), image, atol=1e-5, rtol=0)
    torch.testing.assert_close(scorer.text_features(ids), text, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dropped", ["visual.ln_post.weight", "transformer.resblocks.1.attn.in_proj_bias",
                                     "logit_scale"])
def test_the_mapping_is_strict_about_a_missing_key(tiny, dropped):
    from accelerate import init_empty_weights
    from transformers import CLIPModel

    state = hps.transformers_to_openclip(tiny[0].state_dict())
    del state[dropped]
    with init_empty_weights():
        empty = CLIPModel(tiny[1])
    with pytest.raises(UserError, match=f"lacks 1 key.*{dropped}"):
        hps.load_weights(empty, state)


def test_the_mapping_is_strict_about_an_unexpected_or_misshapen_key(tiny):
    from accelerate import init_empty_weights
    from transformers import CLIPModel

    state = hps.transformers_to_openclip(tiny[0].state_dict())
    with pytest.raises(UserError, match="visual.attn_pool.query"):
        hps.openclip_to_transformers({**state, "visual.attn_pool.query": torch.zeros(1)})
    with init_empty_weights():
        empty = CLIPModel(tiny[1])
    extra_layer = {k.replace("resblocks.1.", "resblocks.2."): v for k, v in state.items() if "resblocks.1." in k}
    with pytest.raises(UserError, match="resblocks.2"):
        hps.load_weights(empty, {**state, **extra_layer})
    with pytest.raises(UserError, match=r"visual.proj gives visual_projection.weight of shape \(8, 32\)"):
        hps.load_weights(empty, {**state, "visual.proj": torch.zeros(32, 8)})


def _unnormalised(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(hps.OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(hps.OPENAI_STD).view(1, 3, 1, 1)
    return pixels * std + mean


def test_a_tall_image_is_resized_on_its_long_side_and_padded_left_and_right():
    """100 x 45: scale 2.24, width round(100.8) = 101; padding 123 = 61 left, 62 right (ResizeMaxSize
    pads [w // 2, h // 2, w - w // 2, h - h // 2]), with 0 before normalisation."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1, 100, 45, 3), dtype=np.uint8)
    out = hps.preprocess(image)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    assert hps.resized_shape(100, 45) == (224, 101)
    raw = _unnormalised(out)
    assert raw[..., :61].abs().max() < 1e-6 and raw[..., 162:].abs().max() < 1e-6
    assert raw[..., 61].abs().amax(dim=1).min() > 0  # the first image column is not padding
    expected = F.interpolate(torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255, size=(224, 101),
                             mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(raw[..., 61:162], expected, atol=1e-5, rtol=0)


def test_a_wide_image_is_padded_top_and_bottom_and_keeps_its_colour():
    image = np.full((1, 45, 100, 3), (200, 40, 90), dtype=np.uint8)
    raw = _unnormalised(hps.preprocess(image))
    assert raw[..., :61, :].abs().max() < 1e-6 and raw[..., 162:, :].abs().max() < 1e-6
    content = raw[0, :, 61:162, :]
    colour = torch.tensor([200, 40, 90]).view(3, 1, 1) / 255
    torch.testing.assert_close(content, colour.expand_as(content), atol=1e-5, rtol=0)  # aspect 101:224 = 45:100
    # the padding reads (0 - mean) / std once normalised, as in hpsv2 (fill before Normalize)
    padded = hps.preprocess(image)[0, :, 0, 0]
    torch.testing.assert_close(padded, -torch.tensor(hps.OPENAI_MEAN) / torch.tensor(hps.OPENAI_STD))


def test_a_224_square_image_is_only_normalised():
    image = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    raw = _unnormalised(hps.preprocess(image))
    torch.testing.assert_close(raw, torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255, atol=1e-6, rtol=0)


def test_a_prompt_longer_than_77_tokens_is_pooled_at_its_end_of_text_token(scorer):
    tokenizer = scorer.tokenizer
    long = " ".join(["a red cube"] * 40)  # 320 BPE tokens in the tiny vocabulary
    ids = scorer.tokenize([long, "a red cube"])
    full = tokenizer([long])["input_ids"][0]
    assert len(full) > 77 and ids.shape == (2, 77)
    # open_clip keeps SOT + the first 75 tokens and puts EOT last
    assert ids[0].tolist() == full[:76] + [tokenizer.eos_token_id]
    # open_clip pools at ids.argmax(-1); transformers at the first EOT: the same positions here
    assert ids.argmax(-1).tolist() == [76, 7]  # SOT a red c u b e EOT
    with torch.no_grad():
        hidden = scorer.model.text_model(input_ids=ids).last_hidden_state
        explicit = F.normalize(scorer.model.text_projection(hidden[torch.arange(2), ids.argmax(-1)]), dim=-1)
    torch.testing.assert_close(scorer.text_features(ids), explicit, atol=1e-6, rtol=0)


def test_prompts_are_cleaned_as_open_clip_cleans_them():
    assert hps.clean_prompt("  a  red\t&amp;amp; cube \n") == "a red & cube"


def test_describe_records_the_protocol(scorer, tiny):
    d = scorer.describe()
    assert (d["metric"], d["version"], d["scale"]) == ("hps-v2.1", "v2.1", "100 x cosine")
    assert d["checkpoint_sha256"] == hashlib.sha256(tiny[3].read_bytes()).hexdigest()
    assert d["preprocessing"]["antialias"] is True and "bicubic" in d["preprocessing"]["resize"]
    assert d["preprocessing"]["torch"] == torch.__version__
    assert (d["precision"], d["device"]) == ("float32", "cpu")
    json.dumps(d)


def test_a_missing_checkpoint_is_a_one_line_user_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match=r"no HPS_v2\.1_compressed\.pt under .*xswu/HPSv2") as error:
        hps.load(tmp_path, "cpu")
    assert "\n" not in str(error.value) and "xswu/HPSv2" in str(error.value)
    with pytest.raises(UserError, match="HPS_v2.1_compressed.pt"):
        hps.load(None, "cpu", checkpoint=str(tmp_path / "elsewhere.pt"))


def test_mismatched_counts_and_wrong_images_are_user_errors(scorer):
    with pytest.raises(UserError, match="4 images but 3 prompts"):
        scorer.score(IMAGES, PROMPTS[:3])
    with pytest.raises(UserError, match="uint8"):
        scorer.score(IMAGES.astype(np.float32), PROMPTS)


def _benchmark(n: int = 800) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {style: rng.normal(25 + i, 2, n) for i, style in enumerate(hps.STYLES)}


def test_benchmark_summary_is_hpsv2s_chunked_mean_and_std():
    scores = _benchmark()
    summary = hps.benchmark_summary(scores)
    for style, values in scores.items():
        chunk_means = values.reshape(10, 80).mean(axis=1)
        row = summary["styles"][style]
        assert row["mean"] == pytest.approx(chunk_means.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(np.sqrt(((chunk_means - chunk_means.mean()) ** 2).mean()), abs=1e-12)
        assert (row["n"], row["chunks"]) == (800, 10)
    assert summary["average"] == pytest.approx(np.concatenate(list(scores.values())).mean(), abs=1e-12)
    assert summary["n"] == 3200 and summary["partial"] is False and summary["missing_styles"] == []


def test_a_style_short_of_800_or_missing_makes_the_run_partial():
    scores = _benchmark()
    scores["photo"] = scores["photo"][:799]
    summary = hps.benchmark_summary(scores)
    assert summary["partial"] is True and summary["styles"]["photo"]["n"] == 799
    last = scores["photo"]
    chunk_means = [last[i:i + 80].mean() for i in range(0, 799, 80)]  # hpsv2's slices: the last has 79
    assert summary["styles"]["photo"]["mean"] == pytest.approx(np.mean(chunk_means), abs=1e-12)
    # "Average" pools the images, so the 799-image style weighs a little less than the others
    assert summary["average"] == pytest.approx(np.concatenate(list(scores.values())).mean(), abs=1e-12)
    del scores["anime"]
    summary = hps.benchmark_summary(scores)
    assert summary["partial"] is True and summary["missing_styles"] == ["anime"] and summary["n"] == 2399
    with pytest.raises(UserError, match="unknown HPS benchmark style"):
        hps.benchmark_summary({"animation": np.zeros(800)})


def test_a_uint8_tensor_is_preprocessed_as_the_array_is(scorer):
    """The fast path (images already a tensor on the model's device) gives the array path's scores."""
    as_array = scorer.score(IMAGES, PROMPTS, batch_size=3)
    as_tensor = scorer.score(torch.from_numpy(IMAGES), PROMPTS, batch_size=3)
    assert as_tensor == pytest.approx(as_array, abs=1e-6)
    assert torch.equal(hps.preprocess(torch.from_numpy(IMAGES)), hps.preprocess(IMAGES))


def test_the_throughput_bench_runs_and_reports_every_rate(tiny):
    from harness.metrics.hps_bench import measure

    record = measure("cpu", n=8, batch_size=4, size=64, precision="fp32", config=tiny[1])
    for key in ("image_tower", "image_tower_with_gpu_preprocessing", "end_to_end", "tokenizer"):
        assert record[key] > 0, key
    assert record["n"] == 8 and record["precision"] == "float32"
    assert record["precisions"]["fp32"]["attention"] == {"vision": "sdpa", "text": "sdpa"}


def _tiny_scorer(tiny, tokenizer_folder, precision):
    model, config, root, _ = tiny
    return hps.load(root, "cpu", tokenizer=str(tokenizer_folder), config=config, precision=precision)


@pytest.mark.parametrize("precision, dtype, tolerance", [("fp16", torch.float16, 0.15), ("bf16", torch.bfloat16, 1.5)])
def test_half_precisions_convert_the_weights_once_and_stay_close_to_float32(tiny, tokenizer_folder, scorer,
                                                                            precision, dtype, tolerance):
    """fp16 / bf16: every weight (LayerNorm's too) in the dtype, no autocast, the cosine in float32. Tolerances on
    the 100 x cosine scale for this tiny model, about 4x what was measured on a 2-core CPU (0.036 and 0.37 with
    scores up to |31|): bfloat16 keeps 8 significant bits, float16 11."""
    half = _tiny_scorer(tiny, tokenizer_folder, precision)
    assert {p.dtype for p in half.model.parameters()} == {dtype}
    assert half.model.vision_model.pre_layrnorm.weight.dtype == dtype and not half.amp
    name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    assert half.precision.startswith(f"{name} weights and activations") and "no autocast" in half.precision
    d = half.describe()
    assert (d["precision_option"], d["weights_dtype"]) == (precision, name)
    assert d["attention"] == {"vision": "sdpa", "text": "sdpa"}
    scores = half.score(IMAGES, PROMPTS, batch_size=3)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, scorer.score(IMAGES, PROMPTS, batch_size=3), atol=tolerance, rtol=0)
    assert half.image_features(hps.preprocess(IMAGES)).dtype == torch.float32  # unit features in float32


def test_an_unknown_precision_is_a_user_error(tiny, tokenizer_folder):
    with pytest.raises(UserError, match="'amp'.*'fp16'.*'bf16'.*'fp32'"):
        _tiny_scorer(tiny, tokenizer_folder, "fp8")


def test_amp_is_the_default_and_float32_on_the_cpu(scorer):
    assert scorer.precision_key == "amp" and scorer.dtype == torch.float32 and not scorer.amp
    assert scorer.attention == {"vision": "sdpa", "text": "sdpa"}  # set where load() builds the model


def test_the_bench_measures_several_precisions_in_one_process(tiny):
    """amp, fp16 and bf16 on one set of random weights: each its rates, and its scores against amp (all images)
    and float32 (the first reference_n); on the CPU amp is float32, so amp's own difference is 0."""
    from harness.metrics.hps_bench import measure

    record = measure("cpu", n=8, batch_size=4, size=64, precision="amp,fp16,bf16", config=tiny[1], reference_n=4)
    assert list(record["precisions"]) == ["amp", "fp16", "bf16"] and record["reference_n"] == 4
    amp = record["precisions"]["amp"]
    assert amp["score_vs_amp"] is None and amp["score_vs_fp32"]["max_abs"] == 0.0
    for name, dtype in (("fp16", "float16"), ("bf16", "bfloat16")):
        result = record["precisions"][name]
        assert result["weights_dtype"] == dtype and result["end_to_end"] > 0 and result["image_tower"] > 0
        assert result["score_vs_amp"]["n"] == 8 and result["score_vs_fp32"]["n"] == 4
        assert 0 < result["score_vs_amp"]["max_abs"] < 2.0
    assert record["best_end_to_end"]["precision"] in record["precisions"]
    assert "image_tower" not in record  # several precisions: the rates are per precision only


def test_the_bench_command_line_takes_a_precision_list(tmp_path, capsys):
    from harness.metrics.hps_bench import main

    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--n", "4", "--batch-size", "2", "--size", "48", "--precision", "amp,bf16",
                 "--tiny", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["precisions"]) == {"amp", "bf16"} and record["what"].startswith("SMOKE RUN")
    assert "--precision amp,bf16" in record["command"]
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--precision", "amp,fp8", "--tiny"])
    assert "fp8" in capsys.readouterr().err
