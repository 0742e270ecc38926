"""The offline (whole-clip) readouts: shapes, the temporal embedding, layouts checked by hand, and the refusals."""

import pytest
import torch

from coldstream.errors import InputError
from coldstream.model import VideoModel
from coldstream.model.layers.attention_readout import interpolate_frames
from coldstream.model.readouts import READOUTS, build_readout

D, W = 16, 32
SMALL = {
    "ssv2_offline": {"num_classes": 3, "width": W, "num_heads": 2},
    "waymo_offline": {"width": W, "num_heads": 2, "hidden": W},
    "pt_offline": {"width": W, "num_heads": 2, "hidden": W},
    "scannet_offline": {"width": W, "num_heads": 2, "image_size": 16},
}
INPUTS = {
    "waymo_offline": lambda b: {"init_box": torch.rand(b, 4)},
    "pt_offline": lambda b: {"query_points": torch.rand(b, 2)},
}


def _readout(name, frames=4, **extra):
    torch.manual_seed(0)
    return build_readout(name, D, num_frames=frames, **SMALL[name], **extra).eval()


def _run(readout, name, o):
    return readout(o, **INPUTS.get(name, lambda b: {})(o.shape[0]))


def _first(out):
    return out["pred_points"] if isinstance(out, dict) else out


def test_interpolate_frames_is_linear_between_the_learned_frames():
    table = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    assert interpolate_frames(table, 2) is table
    # align_corners=False: the 4 new frames sit at 0.25, 0.75, 1.25, 1.75 of the 2 old ones, clamped at the ends
    assert interpolate_frames(table, 4).flatten().tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])


@pytest.mark.parametrize("name", list(SMALL))
def test_shapes_and_task_of_each_offline_readout(name):
    r = _readout(name)
    assert not r.streaming and READOUTS.get(name).task == READOUTS.get(name.removesuffix("_offline")).task
    out = _run(r, name, torch.randn(2, 4, 5, D))
    expect = {
        "ssv2_offline": {"": (2, 3)},
        "waymo_offline": {"": (2, 4, 4)},
        "pt_offline": {"pred_points": (2, 4, 2), "pred_visibility": (2, 4), "pred_uncertainty": (2, 4)},
        "scannet_offline": {"": (2, 4, 16, 16)},
    }[name]
    got = {k: tuple(v.shape) for k, v in out.items()} if isinstance(out, dict) else {"": tuple(out.shape)}
    assert got == expect


@pytest.mark.parametrize("name", list(SMALL))
def test_an_early_frame_reads_the_last_frame(name):
    """Offline means non-causal: frame 1's answer (or the clip's) depends on the last frame's tokens (frame 0 is the
    point query's, overwritten)."""
    o = torch.randn(1, 4, 5, D, requires_grad=True)
    out = _first(_run(_readout(name), name, o))
    (out[0, 1] if out.ndim > 2 else out[0]).sum().backward()
    assert o.grad[0, -1].abs().sum() > 0


def test_the_classification_probe_tells_frame_order_only_through_its_temporal_embedding():
    r = _readout("ssv2_offline")
    o = torch.randn(1, 4, 5, D)
    flipped = o.flip(1)
    with torch.no_grad():
        assert not torch.allclose(r(o), r(flipped), atol=1e-5)
        r.probe.temporal_posenc.zero_()
        torch.testing.assert_close(r(o), r(flipped), atol=1e-5, rtol=1e-5)
        assert r(torch.randn(1, 7, 5, D)).shape == (1, 3)  # the embedding is interpolated to other lengths


@pytest.mark.parametrize("name", ["waymo_offline", "pt_offline", "scannet_offline"])
def test_a_clip_of_another_length_is_refused(name):
    with pytest.raises(InputError, match="predicts 4 frames per clip, got a clip of T=3"):
        _run(_readout(name), name, torch.randn(1, 3, 5, D))


def test_point_queries_fold_into_the_batch_and_the_query_frame_is_overwritten():
    r = _readout("pt_offline")
    o = torch.randn(2, 4, 5, D)
    pts = torch.rand(2, 3, 2)
    frames = torch.tensor([[0, 1, 3], [2, 0, 0]])
    with torch.no_grad():
        multi = r(o, query_points=pts, query_frames=frames)
        for q in range(3):
            single = r(o, query_points=pts[:, q], query_frames=frames[:, q])
            for k, v in single.items():
                torch.testing.assert_close(multi[k][:, q], v, atol=1e-5, rtol=1e-5)
    for b in range(2):
        for q in range(3):
            t = frames[b, q]
            torch.testing.assert_close(multi["pred_points"][b, q, t], pts[b, q])
            assert multi["pred_visibility"][b, q, t] == 10.0 and multi["pred_uncertainty"][b, q, t] == -10.0


def test_depth_patches_are_reassembled_frame_row_column():
    """Query q = (time pair, patch row, patch column) row-major outputs its 2 x 8 x 8 values in (frame, row, column)
    order: with zero key/value/MLP weights each query emits ``q + 1000 j`` for output j, checked pixel by pixel."""
    r = _readout("scannet_offline")  # 16² frames, 8² patches: a 2 x 2 grid
    p = r.probe
    with torch.no_grad():
        for lin in (p.key_proj, p.value_proj, p.out_proj, p.mlp_fc1, p.mlp_fc2):
            lin.weight.zero_()
            lin.bias.zero_()
        p.query.zero_()
        p.query[:, 0, 0] = torch.arange(p.num_queries, dtype=torch.float32)
        p.classifier.weight.zero_()
        p.classifier.weight[:, 0] = 1.0
        p.classifier.bias.copy_(1000 * torch.arange(128, dtype=torch.float32))
        depth = r(torch.randn(1, 4, 5, D))[0]
    g = 2
    for t in range(4):
        for y in range(16):
            for x in range(16):
                q = (t // 2) * g * g + (y // 8) * g + x // 8
                j = (t % 2) * 64 + (y % 8) * 8 + x % 8
                assert depth[t, y, x] == q + 1000 * j


def test_streaming_an_offline_readout_is_refused_with_a_reason():
    model = VideoModel.build(
        encoder="efficientnet_lite0_s16", core="identity", task="waymo_offline", frame_size=32, core_dim=D,
        readout_options={**SMALL["waymo_offline"], "num_frames": 4},
    )  # fmt: skip
    with pytest.raises(InputError, match="cannot stream"):
        model.init_state(1, init_box=torch.rand(1, 4))
