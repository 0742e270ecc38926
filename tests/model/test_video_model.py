"""VideoModel: clip == features == frame-by-frame streaming, batched streams with resets, frozen encoder, counts."""

from __future__ import annotations

import warnings

import pytest
import torch

from coldstream.model.cores import build_core
from coldstream.model.encoders import build_encoder, build_enrichment
from coldstream.model.readouts import build_readout
from coldstream.model.video_model import StreamState, VideoModel
from tests.tolerances import assert_close

H = W = 32  # DINOv3-S/16 at 32 px: 5 prefix + 4 patch tokens
B, T = 2, 4
READOUT = {
    "ssv2": dict(num_classes=5, width=32, num_heads=4),
    "waymo": dict(width=32, num_heads=4, hidden=16),
    "pt": dict(width=32, num_heads=4, hidden=16),
    "scannet": dict(width=32, num_heads=4, image_size=16, patch=8),
    "nuscenes": dict(width=32, hidden=16),
}


@pytest.fixture(scope="module")
def encoder():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return build_encoder("dinov3_vits16")


def make(encoder, kind="gmmix", task="ssv2"):
    torch.manual_seed(0)
    core = build_core(kind, 64, in_dim=encoder.dim, **({"num_heads": 4} if kind == "rvmrnn" else {}))
    model = VideoModel(encoder, core, build_readout(task, 64, **READOUT[task]))
    # non-trivial BatchNorm running statistics, as after training
    for m in model.enrichment.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def frames(b=B, t=T, seed=0):
    return torch.randn(b, t, 3, H, W, generator=torch.Generator().manual_seed(seed))


def task_inputs(task, b=B):
    if task == "waymo":
        return {"init_box": torch.tensor([[0.5, 0.5, 0.3, 0.2], [0.4, 0.6, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])[:b]}
    if task == "pt":
        return {"query_points": torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.1, 0.9]])[:b], "query_frames": torch.arange(b)}
    return {}


def flat(out):
    return torch.cat([v.flatten(1) for v in out.values()], 1) if isinstance(out, dict) else out.flatten(1)


@pytest.mark.parametrize(
    "kind,task",
    [("gmmix", "ssv2"), ("rvmrnn", "waymo"), ("mamba", "pt"), ("mambamix", "scannet"), ("identity", "nuscenes")],
)
def test_clip_features_and_stream_agree(encoder, kind, task):
    model, clip, inputs = make(encoder, kind, task), frames(), task_inputs(task)
    with torch.no_grad():
        out = model(clip, **inputs)
        feats = model.encode(clip)
        assert feats.shape == (B, T, 4, 9, encoder.dim)
        from_feats = model.forward_features(feats, **inputs)
        streamed = model.stream(clip, **inputs)
    assert_close(flat(from_feats), flat(out), torch.float32)
    if task == "waymo":
        # The box fed back goes through Fourier features up to π·2^15: float rounding of the batched clip path
        # (~1e-7) is amplified frame after frame, so only frame 0 is comparable (the readout's own streaming test
        # checks the feedback loop bit for bit).
        streamed, out = streamed[:, :1], out[:, :1]
    assert_close(flat(streamed), flat(out), torch.float32)


def test_batched_streams_with_resets_equal_separate_runs(encoder):
    model = make(encoder, "gmmix", "pt")
    clip = frames(b=3, t=5, seed=1)
    first = task_inputs("pt", b=3)
    new = {"query_points": torch.tensor([[0.9, 0.1]]).repeat(3, 1), "query_frames": torch.tensor([0, 1, 0])}
    with torch.no_grad():
        state = model.init_state(3, frame_size=(H, W), **first)
        assert isinstance(state, StreamState) and state.batch == 3
        outs = []
        for t in range(5):
            reset = torch.tensor([False, t == 2, t == 3]) if t in (2, 3) else None
            out, state = model.step(clip[:, t], state, reset=reset, **new)
            outs.append(out)
        outs = model.readout.stack_steps(outs, state.readout)  # {k: [B, T, ...]}

        def check(i, t0, inputs):
            ref = model(clip[i : i + 1, t0:], **{k: v[i : i + 1] for k, v in inputs.items()})
            for k in ref:
                assert_close(outs[k][i : i + 1, t0:], ref[k], torch.float32)

        check(0, 0, first)
        check(1, 2, new)
        check(2, 3, new)
        assert outs["pred_visibility"][1, 3] == 10.0  # stream 1 restarted at frame 2, query frame 1: its frame 3


def test_encoder_stays_frozen_and_gradients_reach_the_trainable_parts(encoder):
    model = make(encoder).train()
    assert not model.encoder.training and model.core.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    feats = model.encode(frames())
    logits = model.forward_features(feats)
    logits[:, -1].logsumexp(-1).mean().backward()
    for part in (model.enrichment, model.core, model.readout):
        assert all(p.grad is not None for p in part.parameters() if p.requires_grad)
    counts = model.parameter_count()
    assert counts["paper"] == counts["encoder"] + counts["enrichment"] + counts["core"]
    assert counts["trainable"] == counts["enrichment"] + counts["core"] + counts["readout"]


def test_paper_parameter_counts_with_the_real_encoder():
    """The paper's counts (docs/model.md §7), architecture only: DINOv3-L + M / MMix / GMMix = 346.6 / 397.0 /
    405.4 M (readout excluded)."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        enc = build_encoder("dinov3_vitl16")
        assert round(sum(p.numel() for p in enc.parameters()) / 1e6, 2) == 303.15
        for kind, expected in {"mamba": 346.6, "mambamix": 397.0, "gmmix": 405.4, "rvmrnn": 391.3}.items():
            model = VideoModel(enc, build_core(kind, 1024), build_readout("ssv2", 1024))
            assert round(model.parameter_count()["paper"] / 1e6, 1) == expected, kind
            assert round(model.parameter_count()["enrichment"] / 1e6, 2) == 16.80


def test_video_model_bad_inputs(encoder):
    model = make(encoder)
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        model(torch.randn(B, 3, H, W))
    with pytest.raises(ValueError, match="T=0"):
        model(torch.randn(B, 0, 3, H, W))
    with pytest.raises(ValueError, match="K=4"):
        model.forward_features(torch.randn(B, T, 1, 9, encoder.dim))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.step(frames()[:, :2], model.init_state(B, tokens=9))
    with pytest.raises(ValueError, match="tokens=N or frame_size"):
        model.init_state(B)
    state = model.init_state(B + 1, tokens=9)
    with pytest.raises(ValueError, match="built for batch=3"):
        model.step(frames()[:, 0], state)
    with pytest.raises(ValueError, match="in_dim=384"):
        VideoModel(encoder, build_core("mamba", 64), build_readout("ssv2", 64))
    with pytest.raises(ValueError, match="readout reads D=32"):
        VideoModel(encoder, build_core("mamba", 384), build_readout("ssv2", 32))
    assert isinstance(build_enrichment(encoder), type(model.enrichment))


def test_efficientnet_with_an_input_projection():
    """The default small encoder (1280-d, one depth) feeds a 256-wide core through the core's input projection."""
    model = VideoModel.build(
        "efficientnet_lite0", "gmmix", "nuscenes", core_dim=256, readout_options=dict(width=256, hidden=64)
    ).eval()
    assert model.core.input_proj.in_features == 1280 and model.parameter_count()["enrichment"] == 0
    clip = torch.randn(2, 2, 3, 64, 64)
    with torch.no_grad():
        out = model(clip)
        assert out.shape == (2, 2, 9)
        assert_close(model.stream(clip), out, torch.float32)


def _lite0_config(**changes):
    from coldstream.model import ModelConfig

    base = dict(encoder="efficientnet_lite0_s16", frame_size=32, core="gmmix", core_dim=16, core_layers=1,
                readout_options={"num_classes": 3})  # fmt: skip
    return ModelConfig(**{**base, **changes})


def test_pooled_tokens_and_position_embedding_stream_as_the_clip():
    torch.manual_seed(0)
    model = VideoModel.from_config(_lite0_config(frame_size=64, token_grid=2)).eval()  # 4x4 patches -> 2x2 + pooled
    assert model.num_tokens() == 5 and model.pos_embed.shape == (5, 112)
    clip = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        feats = model.encode(clip)
        assert model.tokens(feats).shape == (2, 3, 5, 112)
        grid = model.enrichment(feats[:, 0].transpose(0, 1))[:, 1:].reshape(2, 4, 4, 112)
        pooled = grid.unflatten(1, (2, 2)).unflatten(3, (2, 2)).mean((2, 4)).flatten(1, 2)  # 2x2 blocks averaged
        assert_close(model.tokens(feats)[:, 0, 1:] - model.pos_embed[1:], pooled, torch.float32)
        assert_close(model.stream(clip), model(clip), torch.float32)
    unpooled = VideoModel.from_config(_lite0_config(frame_size=64))  # 4x4 patches + pooled: 17 position embeddings
    with pytest.raises(ValueError, match="17 tokens but these frames give 5: frames must be 64x64"):
        unpooled.step(torch.randn(1, 3, 32, 32), unpooled.init_state(1))


def test_a_trained_model_rebuilds_from_its_checkpoint_with_one_call(tmp_path):
    torch.manual_seed(0)
    model = VideoModel.from_config(_lite0_config(core="rvmrnn", core_options={"num_heads": 2}))
    model.meta["class_names"] = ["a", "b", "c"]
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_()  # as after training
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert not any(k.startswith("encoder.") for k in blob["model"])  # the frozen encoder is not stored
    again = VideoModel.from_checkpoint(tmp_path / "m.pt")
    assert again.config == model.config and again.meta == {"class_names": ["a", "b", "c"]}
    clip = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again.eval()(clip), model.eval()(clip))
    assert again.load_checkpoint(tmp_path / "m.pt") == {"class_names": ["a", "b", "c"]}


def test_another_models_checkpoint_is_refused_with_what_differs(tmp_path):
    from coldstream.errors import CheckpointError

    model = VideoModel.from_config(_lite0_config())
    model.save(tmp_path / "m.pt")
    other = VideoModel.from_config(_lite0_config(core_dim=32))
    with pytest.raises(CheckpointError, match="another model .*core_dim: checkpoint 16, this model 32"):
        other.load_checkpoint(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["encoder"]["weights_id"] = "efficientnet_lite0_s16:0000"
    torch.save(blob, tmp_path / "other-weights.pt")
    with pytest.raises(CheckpointError, match="trained on features of efficientnet_lite0_s16:0000.*encoder_weights"):
        VideoModel.from_checkpoint(tmp_path / "other-weights.pt")
    torch.save({"state_dict": {"model.readout.classifier.weight": torch.zeros(1)}}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="reference .*load_reference_checkpoint"):
        VideoModel.from_checkpoint(tmp_path / "lightning.ckpt")
    torch.save({"format": "coldstream-train-1"}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="older coldstream"):
        VideoModel.from_checkpoint(tmp_path / "old.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoModel.from_checkpoint(tmp_path / "gone.pt")


def test_stream_runner_equals_the_models_own_stream():
    from coldstream.model.streaming import StreamRunner

    torch.manual_seed(0)
    model = VideoModel.from_config(_lite0_config()).eval()
    clip = torch.randn(2, 4, 3, 32, 32)
    runner = StreamRunner(model, batch=2)
    assert not runner.cuda_graph
    with torch.no_grad():
        want = model.stream(clip)
    got = torch.stack([runner(clip[:, t]) for t in range(4)], 1)
    assert_close(got, want, torch.float32)
    runner.reset(torch.tensor([True, False]))
    first = runner(clip[:, 0])
    assert_close(first[0], want[0, 0], torch.float32)  # stream 0 restarted
    with pytest.raises(ValueError, match=r"expected frames \(2, 3, 32, 32\)"):
        runner(clip[:1, 0])


def test_compiled_clip_path_equals_eager():
    """compile_clip: the encoder and the enrichment + core + readout graph compiled, each as one graph; same outputs
    as eager, the state dict untouched, streaming unchanged. (aot_eager: the graphs and their autograd as inductor
    gets them, without a minute of C++ compilation on a 2-core machine; the GPU bench compiles with inductor.)"""
    torch.manual_seed(0)
    model = VideoModel.from_config(_lite0_config(frame_size=32)).eval()
    clip = torch.randn(2, 3, 3, 32, 32)
    keys = set(model.state_dict())
    with torch.inference_mode():
        want = model(clip)
        assert not model.compiled
        model.compile_clip(fullgraph=True, dynamic=False, backend="aot_eager")
        assert model.compiled and set(model.state_dict()) == keys
        assert_close(model(clip), want, torch.float32)
        assert_close(model.stream(clip), want, torch.float32)
    with pytest.raises(ValueError, match="expected features"):
        model(features=torch.randn(2, 3, 1, 5, 7))
