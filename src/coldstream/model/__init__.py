"""coldstream.model: frozen spatial encoders, shared layers, temporal cores, readouts, and the video model."""

from coldstream.model.checkpoints import (
    load_reference_checkpoint,
    load_reference_state_dict,
    load_rvm_core_checkpoint,
    to_reference_state_dict,
)
from coldstream.model.config import ModelConfig
from coldstream.model.cores import CORES, CoreState, TemporalCore, build_core
from coldstream.model.encoders import ENCODERS, FrozenEncoder, build_encoder, build_enrichment
from coldstream.model.readouts import READOUTS, Readout, build_readout
from coldstream.model.video_model import StreamState, VideoModel

__all__ = [
    "CORES",
    "ENCODERS",
    "READOUTS",
    "CoreState",
    "FrozenEncoder",
    "ModelConfig",
    "Readout",
    "StreamState",
    "TemporalCore",
    "VideoModel",
    "build_core",
    "build_encoder",
    "build_enrichment",
    "build_readout",
    "load_reference_checkpoint",
    "load_reference_state_dict",
    "load_rvm_core_checkpoint",
    "to_reference_state_dict",
]
