"""coldstream.model: frozen spatial encoders, attention dispatch, temporal cores, readouts, the streaming model."""

from coldstream.model.encoders import (
    ENCODERS,
    FrozenEncoder,
    WeightsError,
    build_encoder,
    build_enrichment,
)

__all__ = ["ENCODERS", "FrozenEncoder", "WeightsError", "build_encoder", "build_enrichment"]
