"""``build_encoder(name, weights=None)`` and ``build_enrichment(encoder)``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from coldstream.model.attention import check_backend
from coldstream.model.encoders.dinov3.encoder import DINOv3Encoder
from coldstream.model.encoders.dinov3.vit import DINOV3_CONFIGS
from coldstream.model.encoders.efficientnet import EfficientNetLite0Encoder
from coldstream.model.encoders.enrichment import MultiDepthEnrichment, PassThrough
from coldstream.model.encoders.frozen import FrozenEncoder

ENCODERS: tuple[str, ...] = (*DINOV3_CONFIGS, "efficientnet_lite0", "efficientnet_lite0_s16")


def build_encoder(name: str, weights: str | Path | None = None, attention: str = "sdpa") -> FrozenEncoder:
    """A frozen spatial encoder.

    Args:
        name: ``"dinov3_vits16" | "dinov3_vitb16" | "dinov3_vitl16" | "efficientnet_lite0"`` (stride 32) or
            ``"efficientnet_lite0_s16"`` (cut at stride 16, 112 channels).
        weights: a weights file (official DINOv3 layout, ``.pth`` or ``.safetensors``). ``None``: the packaged real
            ImageNet weights for EfficientNet-Lite0; random weights (with a warning) for DINOv3, whose weights no
            package ships.
        attention: ``"sdpa"`` (default), ``"xformers"`` (CUDA only) or ``"math"`` (the oracle); DINOv3 only.
    """
    if name in DINOV3_CONFIGS:
        return DINOv3Encoder(name, weights, attention=check_backend(attention))
    if name in ("efficientnet_lite0", "efficientnet_lite0_s16"):
        if attention != "sdpa":
            raise ValueError(f"{name} has no attention; leave attention='sdpa'")
        return EfficientNetLite0Encoder(weights, stride=16 if name.endswith("_s16") else 32)
    raise ValueError(f"unknown encoder {name!r}; expected one of {list(ENCODERS)}")


def build_enrichment(encoder: FrozenEncoder) -> nn.Module:
    """The trainable feature enrichment that matches ``encoder.features``: ``[K, B, N, D] -> [B, N, D]``."""
    if encoder.num_depths == 1:
        return PassThrough(encoder.dim)
    return MultiDepthEnrichment(encoder.dim, encoder.num_depths, encoder.num_prefix_tokens)
