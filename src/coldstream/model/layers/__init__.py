"""Building blocks shared by the encoders, the temporal cores and the readouts. Every attention among them goes
through :func:`~coldstream.model.layers.attention.attention`, with the backend its module was built with."""

from coldstream.model.layers.attention import BACKENDS, attention, check_backend, xformers_unavailable_reason
from coldstream.model.layers.attention_readout import AttentionReadout
from coldstream.model.layers.decoder import QueryDecoder, QueryDecoderLayer
from coldstream.model.layers.drop_path import DropPath
from coldstream.model.layers.fourier import FourierPositionEncoding
from coldstream.model.layers.layer_scale import LayerScale
from coldstream.model.layers.mamba import Mamba, MambaResidualBlock
from coldstream.model.layers.mha import MultiheadAttention
from coldstream.model.layers.mlp import Mlp
from coldstream.model.layers.rvm_block import RVMCrossAttentionBlock, RVMCrossAttentionTransformer
from coldstream.model.layers.spatial_block import SpatialSelfAttentionBlock

__all__ = [
    "BACKENDS",
    "AttentionReadout",
    "DropPath",
    "FourierPositionEncoding",
    "LayerScale",
    "Mamba",
    "MambaResidualBlock",
    "Mlp",
    "MultiheadAttention",
    "QueryDecoder",
    "QueryDecoderLayer",
    "RVMCrossAttentionBlock",
    "RVMCrossAttentionTransformer",
    "SpatialSelfAttentionBlock",
    "attention",
    "check_backend",
    "xformers_unavailable_reason",
]
