"""DINOv3 behind the frozen-encoder contract."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from coldstream.io.preprocess import IMAGENET_MEAN, IMAGENET_STD
from coldstream.model.encoders.dinov3.vit import DINOV3_CONFIGS, DINOv3ViT
from coldstream.model.encoders.frozen import FrozenEncoder
from coldstream.model.encoders.weights import load_strict, read_state_dict

log = logging.getLogger(__name__)


class DINOv3Encoder(FrozenEncoder):
    """Frozen DINOv3 ViT. ``features`` returns the four final-normed intermediate layers of SPEC §2.4, all tokens."""

    num_depths = 4
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, name: str, weights: str | Path | None = None, attention: str = "sdpa"):
        if name not in DINOV3_CONFIGS:
            raise ValueError(f"unknown DINOv3 variant {name!r}; expected one of {sorted(DINOV3_CONFIGS)}")
        cfg = DINOV3_CONFIGS[name]
        backbone = DINOv3ViT(cfg, attention_backend=attention)
        if weights is None:
            log.warning("%s: no weights file given, using random weights (pass weights=PATH for real features)", name)
        else:
            load_strict(backbone, read_state_dict(weights), f"{name} (official DINOv3 layout, SPEC §2.6)")
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
