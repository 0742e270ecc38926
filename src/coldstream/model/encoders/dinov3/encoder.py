"""DINOv3 behind the frozen-encoder contract."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from coldstream.errors import InputError
from coldstream.io.preprocess import IMAGENET_MEAN, IMAGENET_STD
from coldstream.model.encoders.dinov3.vit import DINOV3_CONFIGS, DINOv3ViT
from coldstream.model.encoders.frozen import ENCODERS, FrozenEncoder
from coldstream.model.encoders.weights import read_state_dict
from coldstream.model.layers.attention import check_backend
from coldstream.model.loading import load_strict

log = logging.getLogger(__name__)


class DINOv3Encoder(FrozenEncoder):
    """Frozen DINOv3 ViT. ``features`` returns the final-normed outputs of four blocks (depth/4, depth/2, 3·depth/4
    and depth, 1-based), all tokens: what the multi-depth enrichment consumes (docs/model.md)."""

    num_depths = 4
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, name: str, weights: str | Path | None = None, attention: str = "sdpa"):
        if name not in DINOV3_CONFIGS:
            raise InputError(f"unknown DINOv3 variant {name!r}; expected one of {sorted(DINOV3_CONFIGS)}")
        cfg = DINOV3_CONFIGS[name]
        backbone = DINOv3ViT(cfg, attention=check_backend(attention))
        if weights is None:
            log.warning("%s: no weights file given, using random weights (pass weights=PATH for real features)", name)
        else:
            load_strict(backbone, read_state_dict(weights), f"{name} weights {weights} (official DINOv3 layout)")
            backbone.reset_buffers()
        super().__init__(backbone)
        self.name = name
        self.dim = cfg.embed_dim
        self.num_prefix_tokens = backbone.num_prefix_tokens
        self.stride = cfg.patch_size
        self.layer_indices = cfg.intermediate_layers

    def _tokens(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backbone(frames)

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.backbone.get_intermediate_layers(frames, self.layer_indices, norm=True))


def _register(name: str) -> None:
    def build(weights: str | Path | None = None, attention: str = "sdpa") -> DINOv3Encoder:
        return DINOv3Encoder(name, weights, attention)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"DINOv3 {name}: random weights with a warning unless ``weights`` is an official file."
    ENCODERS.register(name)(build)


for _name in DINOV3_CONFIGS:
    _register(_name)
