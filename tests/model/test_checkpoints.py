"""Reference task checkpoints: the key layout of docs/model.md §6, Lightning .ckpt round trip, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coldstream.model.checkpoints import (
    CheckpointError,
    load_reference_checkpoint,
    load_rvm_core_checkpoint,
    to_reference_state_dict,
)
from coldstream.model.cores import build_core
from coldstream.model.encoders import build_enrichment
from coldstream.model.readouts import build_readout
from coldstream.model.video_model import VideoModel
from tests.tolerances import assert_close

D = 64
SMALL = {
    "ssv2": dict(num_classes=5, width=32, num_heads=4),
    "waymo": dict(width=32, num_heads=4, hidden=16),
    "pt": dict(width=32, num_heads=4, hidden=16),
    "scannet": dict(width=32, num_heads=4, image_size=16, patch=8),
    "nuscenes": dict(width=32, hidden=16),
}
# docs/model.md §6 key lists (after the "model." prefix), written out
READOUT_PREFIXES = {
    "ssv2": [
        "readout.input_norm.",
        "readout.query",
        "readout.key_proj.",
        "readout.value_proj.",
        "readout.out_proj.",
        "readout.mlp_norm.",
        "readout.mlp_fc1.",
        "readout.mlp_fc2.",
        "readout.classifier.",
    ],
    "waymo": [
        "bbox_query_encoder.fourier_enc.freqs",
        "bbox_query_encoder.bbox_encoder.0.",
        "bbox_query_encoder.bbox_encoder.2.",
        "bbox_query_encoder.to_query.",
        "readout.layers.0.",
        "readout.output_norm.",
        "bbox_head.0.",
        "bbox_head.2.",
        "proj_to_readout.",
    ],
    "pt": [
        "fourier_enc.freqs",
        "point_mlp.0.",
        "point_mlp.2.",
        "to_query.",
        "readout.layers.0.",
        "readout.output_norm.",
        "prediction_head.0.",
        "prediction_head.2.",
        "proj_to_readout.",
    ],
    "scannet": [
        "readout.readout.input_norm.",
        "readout.readout.temporal_posenc",
        "readout.readout.query",
        "readout.readout.key_proj.",
        "readout.readout.value_proj.",
        "readout.readout.out_proj.",
        "readout.readout.mlp_norm.",
        "readout.readout.mlp_fc1.",
        "readout.readout.mlp_fc2.",
        "readout.readout.classifier.",
    ],
    "nuscenes": ["pose_head.0.", "pose_head.1.", "pose_head.3.", "proj_to_readout."],
}


class StubEncoder(nn.Module):
    """The frozen-encoder contract with a fixed random projection: 4 depths, 5 prefix tokens, stride 8."""

    dim, num_depths, num_prefix_tokens, stride = D, 4, 5, 8

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 64, 4 * D).requires_grad_(False)

    def num_tokens(self, h, w):
        return 5 + (h // 8) * (w // 8)

    def features(self, frames):
        b = frames.shape[0]
        patches = frames.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, 3 * 64)
        tokens = torch.cat([patches[:, :1].expand(b, 5, -1), patches], 1)
        return self.proj(tokens).view(b, -1, 4, D).permute(2, 0, 1, 3)


def make(kind="gmmix", task="ssv2", seed=0):
    torch.manual_seed(seed)
    enc = StubEncoder()
    model = VideoModel(
        enc,
        build_core(kind, D, **({"num_heads": 4} if kind == "rvmrnn" else {})),
        build_readout(task, D, **SMALL[task]),
        build_enrichment(enc),
    )
    for m in model.enrichment.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
    return model.eval()


def lightning(model, extra=None):
    sd = {"model." + k: v.clone() for k, v in to_reference_state_dict(model).items()}
    sd["loss_fn.log_var_translation"] = torch.zeros(())
    sd.update(extra or {})
    return {"state_dict": sd, "epoch": 3, "global_step": 1000}


@pytest.mark.parametrize("task", list(SMALL))
def test_reference_layout_of_every_task(task):
    keys = to_reference_state_dict(make("mamba", task)).keys()
    readout = [k for k in keys if not k.startswith(("sequential_core.", "encoder.interm_mlps."))]
    prefixes = READOUT_PREFIXES[task]
    assert all(any(k.startswith(p) for p in prefixes) for k in readout), readout
    assert all(any(k.startswith(p) for k in readout) for p in prefixes), prefixes
    enrichment = {k for k in keys if k.startswith("encoder.interm_mlps.")}
    expected = {
        f"encoder.interm_mlps.{j}.bn.{n}"
        for j in range(4)
        for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    expected |= {f"encoder.interm_mlps.{j}.mlp.{i}.{n}" for j in range(4) for i in (0, 2) for n in ("weight", "bias")}
    assert enrichment == expected


def test_reference_shapes_at_vit_l_width():
    with torch.device("meta"):
        ssv2, depth = build_readout("ssv2", 1024), build_readout("scannet", 1024)
    assert ssv2.probe.query.shape == (1, 12, 64) and ssv2.probe.classifier.weight.shape == (174, 768)
    assert depth.probe.query.shape == (784, 16, 64) and depth.probe.temporal_posenc.shape == (1, 1, 1, 1024)
    assert depth.probe.classifier.weight.shape == (64, 1024)
    with torch.device("meta"):
        waymo = build_readout("waymo", 1024)
    assert isinstance(waymo.proj_to_readout, nn.Identity)  # no proj_to_readout keys for ViT-L
    assert waymo.readout.layers[0].self_attn.num_heads == 4 and waymo.readout.layers[0].linear1.out_features == 4096


@pytest.mark.parametrize(
    "kind,task",
    [("gmmix", "ssv2"), ("rvmrnn", "waymo"), ("mamba", "pt"), ("mambamix", "scannet"), ("identity", "nuscenes")],
)
def test_lightning_checkpoint_round_trip(tmp_path, kind, task):
    src, dst = make(kind, task, seed=0), make(kind, task, seed=1)
    dst.encoder.load_state_dict(src.encoder.state_dict())  # the frozen encoder is not in task checkpoints
    path = tmp_path / "task.ckpt"
    torch.save(lightning(src), path)
    counts = load_reference_checkpoint(dst, path)
    assert counts["core"] == len(src.core.state_dict()) and counts["readout"] == len(src.readout.state_dict())
    clip = torch.randn(1, 3, 3, 16, 16)
    inputs = {
        "waymo": {"init_box": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        "pt": {"query_points": torch.tensor([[0.3, 0.6]])},
    }.get(task, {})
    with torch.no_grad():
        a, b = src(clip, **inputs), dst(clip, **inputs)
    a, b = (torch.cat([v.flatten() for v in x.values()]) if isinstance(x, dict) else x for x in (a, b))
    assert_close(b, a, torch.float32)


def test_checkpoint_errors_name_the_mismatch():
    model = make("mamba", "ssv2")
    with pytest.raises(CheckpointError, match="for a 'gmmix' core but the model's core is 'mamba'"):
        load_reference_checkpoint(model, lightning(make("gmmix", "ssv2")))
    with pytest.raises(CheckpointError, match="for the 'waymo' readout but the model's readout is 'ssv2'"):
        load_reference_checkpoint(model, lightning(make("mamba", "waymo")))
    ckpt = lightning(model)
    del ckpt["state_dict"]["model.sequential_core.mamba_blocks.2.mamba.A_log"]
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\) \[core.mamba_blocks.2.mamba.A_log\]"):
        load_reference_checkpoint(model, ckpt)
    with pytest.raises(CheckpointError, match="frozen-encoder weights"):
        load_reference_checkpoint(model, lightning(model, {"model.encoder.backbone.norm.weight": torch.ones(D)}))
    with pytest.raises(ValueError, match="shape"):
        load_reference_checkpoint(
            model,
            lightning(
                make("mamba", "ssv2"),
                {
                    "model.readout.classifier.weight": torch.zeros(9, 32),
                    "model.readout.classifier.bias": torch.zeros(9),
                },
            ),
        )
    with pytest.raises(FileNotFoundError):
        load_reference_checkpoint(model, "/nonexistent/task.ckpt")
    with pytest.raises(TypeError, match="VideoModel"):
        load_reference_checkpoint(model.core, {})


def test_untrusted_pickles_need_opt_in(tmp_path):
    model = make("mamba", "nuscenes")
    ckpt = lightning(model)
    ckpt["hyper_parameters"] = {"optimizer": object.__new__(StubEncoder)}
    path = tmp_path / "pickled.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="trusted=True"):
        load_reference_checkpoint(model, path)
    assert load_reference_checkpoint(model, path, trusted=True)["readout"] > 0


def test_rvm_core_initialisation_from_a_file(tmp_path):
    model = make("rvmrnn", "ssv2")
    torch.manual_seed(7)
    rvm = build_core("rvmrnn", D, num_heads=4)
    path = tmp_path / "rvm_pytorch_wrapper.pth"
    torch.save({"rvm_core." + k: v for k, v in rvm.state_dict().items() if not k.startswith("output_norm.")}, path)
    load_rvm_core_checkpoint(model, path)
    assert torch.equal(model.core.state_update.weight, rvm.state_update.weight)
