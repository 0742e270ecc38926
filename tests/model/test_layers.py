"""Shared layers: the attention choice reaches every attention of a model; the query decoder is PyTorch's decoder
layer; the math backend is the oracle of the others."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from coldstream.errors import InputError
from coldstream.model import VideoModel
from coldstream.model.layers import QueryDecoderLayer, attention
from tests.tolerances import assert_close

READOUT_OPTIONS = {
    "ssv2": dict(num_classes=5, width=32, num_heads=4),
    "linear": dict(num_classes=5),
    "waymo": dict(width=32, num_heads=4, hidden=16),
    "pt": dict(width=32, num_heads=4, hidden=16),
    "scannet": dict(width=32, num_heads=4, image_size=16, patch=8),
    "nuscenes": dict(width=32, hidden=16),
}
TASK_INPUTS = {
    "waymo": {"init_box": torch.tensor([[0.5, 0.5, 0.3, 0.2]])},
    "pt": {"query_points": torch.tensor([[0.3, 0.7]])},
}


def _model(core: str, readout: str, attention_backend: str) -> VideoModel:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DINOv3 without weights
        options = {"num_layers": 1, "drop_path": 0.0} if core in ("mambamix", "gmmix") else {"num_layers": 1}
        if core == "rvmrnn":
            options["num_heads"] = 4
        return VideoModel.build(
            "dinov3_vits16", core, readout, core_dim=64, attention=attention_backend, frame_size=32,
            core_options=options, readout_options=READOUT_OPTIONS[readout],
        ).eval()  # fmt: skip


@pytest.mark.parametrize(
    "core,readout",
    [("rvmrnn", "waymo"), ("gmmix", "pt"), ("mambamix", "ssv2"), ("rvmrnn", "scannet"), ("gmmix", "nuscenes")],
)
def test_the_attention_choice_reaches_every_attention(monkeypatch, core, readout):
    """With attention='math' no module may call SDPA (the encoder's, the core's and the readout's attentions), and
    the outputs equal the SDPA model's: clip and streaming."""
    sdpa_model, math_model = _model(core, readout, "sdpa"), _model(core, readout, "math")
    math_model.load_state_dict(sdpa_model.state_dict())
    assert {m.attention for m in math_model.modules() if hasattr(m, "attention")} == {"math"}
    clip, inputs = torch.randn(1, 3, 3, 32, 32), TASK_INPUTS.get(readout, {})
    with torch.no_grad():
        want = sdpa_model(clip, **inputs)

        def refuse(*args, **kwargs):
            raise AssertionError("scaled_dot_product_attention called by a model built with attention='math'")

        monkeypatch.setattr(F, "scaled_dot_product_attention", refuse)
        got, streamed = math_model(clip, **inputs), math_model.stream(clip, **inputs)
    if readout == "waymo":  # its box feedback amplifies float rounding frame after frame: frame 0 is comparable
        got, streamed, want = got[:, :1], streamed[:, :1], want[:, :1]
    flat = lambda o: torch.cat([v.flatten() for v in o.values()]) if isinstance(o, dict) else o.flatten()  # noqa: E731
    assert_close(flat(got), flat(want), torch.float32)
    assert_close(flat(streamed), flat(want), torch.float32)


def test_an_unknown_attention_backend_is_refused_at_construction():
    with pytest.raises(InputError, match="attention backend must be one of"):
        _model("gmmix", "linear", "flash")


def test_query_decoder_layer_is_pytorchs_decoder_layer():
    torch.manual_seed(0)
    ref = torch.nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True).eval()
    ours = QueryDecoderLayer(32, 4, 64).eval()
    ours.load_state_dict(ref.state_dict())  # the same parameter names and shapes
    q, memory = torch.randn(3, 2, 32), torch.randn(3, 7, 32)
    with torch.no_grad():
        assert_close(ours(q, memory), ref(q, memory), torch.float32)


def test_math_attention_with_dropout_keeps_the_expectation():
    q, k, v = (torch.randn(2, 2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    exact = attention(q, k, v, "math")
    assert_close(attention(q, k, v, "sdpa"), exact, torch.float32)
    torch.manual_seed(0)
    mean = torch.stack([attention(q, k, v, "math", dropout_p=0.5) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, exact, atol=0.08, rtol=0.0)
    with pytest.raises(InputError, match="backend must be one of"):
        attention(q, k, v, "flash")
