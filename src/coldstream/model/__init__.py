"""coldstream.model: frozen spatial encoders, attention dispatch, temporal cores, readouts, the streaming model."""

from coldstream.model.checkpoints import (
    CheckpointError,
    load_reference_checkpoint,
    load_rvm_core_checkpoint,
    to_reference_state_dict,
)
from coldstream.model.cores import CORES, CoreState, TemporalCore, build_core, load_reference_state_dict
from coldstream.model.encoders import (
    ENCODERS,
    FrozenEncoder,
    WeightsError,
    build_encoder,
    build_enrichment,
)
from coldstream.model.readouts import READOUTS, Readout, build_readout
from coldstream.model.video_model import StreamState, VideoModel

__all__ = [
    "CORES",
    "ENCODERS",
    "READOUTS",
    "CheckpointError",
    "CoreState",
    "FrozenEncoder",
    "Readout",
    "StreamState",
    "TemporalCore",
    "VideoModel",
    "WeightsError",
    "build_core",
    "build_encoder",
    "build_enrichment",
    "build_readout",
    "load_reference_checkpoint",
    "load_reference_state_dict",
    "load_rvm_core_checkpoint",
    "to_reference_state_dict",
]
