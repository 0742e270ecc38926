"""The one-layer query decoder of the tracking readouts (PyTorch ``TransformerDecoderLayer``, pre-norm, ReLU)."""

from __future__ import annotations

import torch
from torch import nn


class QueryDecoder(nn.Module):
    """``q <- q + SA(LN1 q)``; ``q <- q + CA(LN2 q, memory)``; ``q <- q + FFN(LN3 q)`` per layer, then LayerNorm.

    The memory (the N tokens of frame t) is not normalised by the layer. Keys ``layers.{l}.*`` (PyTorch's decoder
    layer names) and ``output_norm`` as in the reference. Dropout 0.
    """

    def __init__(self, dim: int = 1024, num_heads: int = 4, num_layers: int = 1, mlp_ratio: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.TransformerDecoderLayer(
                    dim, num_heads, dim_feedforward=dim * mlp_ratio, dropout=0.0, batch_first=True, norm_first=True
                )
                for _ in range(num_layers)
            ]
        )
        self.output_norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``query`` ``[F, Q, d]``, ``memory`` ``[F, N, d]`` -> ``[F, Q, d]``."""
        for layer in self.layers:
            query = layer(query, memory)
        return self.output_norm(query)
