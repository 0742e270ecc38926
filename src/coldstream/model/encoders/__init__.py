"""Frozen spatial encoders (DINOv3 ViT, EfficientNet-Lite0) and the trainable multi-depth enrichment."""

from coldstream.model.encoders.enrichment import MultiDepthEnrichment, PassThrough
from coldstream.model.encoders.frozen import FrozenEncoder
from coldstream.model.encoders.registry import ENCODERS, build_encoder, build_enrichment
from coldstream.model.encoders.weights import WeightsError

__all__ = [
    "ENCODERS",
    "FrozenEncoder",
    "MultiDepthEnrichment",
    "PassThrough",
    "WeightsError",
    "build_encoder",
    "build_enrichment",
]
