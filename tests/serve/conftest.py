"""A small model for the engine tests (EfficientNet-Lite0 cut at stride 16 with its packaged weights, 32² frames:
one pooled + 2×2 patch tokens) and per-stream frame sequences."""

from __future__ import annotations

import pytest
import torch

from coldstream.model import ModelConfig, VideoModel

SIZE = 32


def make_model(core: str = "gmmix") -> VideoModel:
    torch.manual_seed(0)
    options = {"num_heads": 4} if core == "rvmrnn" else {}
    config = ModelConfig(encoder="efficientnet_lite0_s16", frame_size=SIZE, core=core, core_dim=32, core_layers=1,
                         core_options=options, readout="linear", readout_options={"num_classes": 3})  # fmt: skip
    return VideoModel.from_config(config).eval()


@pytest.fixture(scope="session")
def model() -> VideoModel:
    return make_model()


def clip(seed: int, frames: int) -> torch.Tensor:
    """``[T, 3, S, S]`` normalised-looking frames, different per seed."""
    return torch.randn(frames, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def alone(model: VideoModel, frames: torch.Tensor) -> torch.Tensor:
    """The stream run by itself through ``VideoModel.step`` from a fresh state: ``[T, ...]`` outputs."""
    state = model.init_state(1)
    return torch.stack([model.step(f[None], state)[0][0] for f in frames])
