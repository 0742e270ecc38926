"""Frozen spatial encoders (DINOv3 ViT-S/B/L/16, EfficientNet-Lite0) and the trainable feature enrichment.

``build_encoder(name, weights=None, attention="sdpa")`` builds one by name from the :data:`ENCODERS` registry.
"""

from __future__ import annotations

from pathlib import Path

from coldstream.model.encoders import efficientnet  # noqa: F401  (registration)
from coldstream.model.encoders.dinov3 import encoder as _dinov3  # noqa: F401  (registration)
from coldstream.model.encoders.enrichment import (
    ENRICHMENTS,
    LastDepth,
    MeanOfDepths,
    MultiDepthEnrichment,
    build_enrichment,
)
from coldstream.model.encoders.frozen import ENCODERS, FrozenEncoder


def build_encoder(name: str, weights: str | Path | None = None, attention: str = "sdpa") -> FrozenEncoder:
    """A frozen spatial encoder.

    Args:
        name: ``"dinov3_vits16" | "dinov3_vitb16" | "dinov3_vitl16" | "efficientnet_lite0"`` (stride 32) or
            ``"efficientnet_lite0_s16"`` (cut at stride 16, 112 channels).
        weights: a weights file (official DINOv3 layout, ``.pth`` or ``.safetensors``). ``None``: the packaged real
            ImageNet weights for EfficientNet-Lite0; random weights (with a warning) for DINOv3, whose weights no
            package ships.
        attention: ``"sdpa"`` (default), ``"xformers"`` (CUDA only) or ``"math"`` (the oracle).
    """
    return ENCODERS.create(name, weights=weights, attention=attention)


__all__ = [
    "ENCODERS",
    "ENRICHMENTS",
    "FrozenEncoder",
    "LastDepth",
    "MeanOfDepths",
    "MultiDepthEnrichment",
    "build_encoder",
    "build_enrichment",
]
