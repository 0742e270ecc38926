"""StreamRunner through a captured CUDA graph equals eager streaming (GPU only)."""

from __future__ import annotations

import pytest
import torch

from coldstream.model import ModelConfig, VideoModel
from coldstream.model.streaming import StreamRunner

pytestmark = pytest.mark.cuda


def test_cuda_graph_stream_runner_equals_eager():
    torch.manual_seed(0)
    config = ModelConfig(encoder="efficientnet_lite0_s16", frame_size=64, core="gmmix", core_dim=64,
                         readout_options={"num_classes": 3})  # fmt: skip
    model = VideoModel.from_config(config).cuda().eval()
    clip = torch.randn(2, 6, 3, 64, 64, device="cuda")
    eager = StreamRunner(model, 2, cuda_graph=False, autocast=False)
    graph = StreamRunner(model, 2, autocast=False)
    assert graph.cuda_graph
    for t in range(6):
        want = eager(clip[:, t]).clone()
        torch.testing.assert_close(graph(clip[:, t]), want, atol=1e-4, rtol=1e-4)
    graph.reset()
    eager.reset()
    torch.testing.assert_close(graph(clip[:, 0]), eager(clip[:, 0]), atol=1e-4, rtol=1e-4)
