"""The per-frame spatial block of MMix / GMMix: self-attention then MLP, both with drop-path."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.layers.drop_path import DropPath
from coldstream.model.layers.mha import MultiheadAttention
from coldstream.model.layers.mlp import Mlp


class SpatialSelfAttentionBlock(nn.Module):
    """``z <- z + DropPath(MHA(LN(z)))``; ``z <- z + DropPath(MLP(LN(z)))`` over the N tokens of each frame.

    Sequential residuals, as the reference code computes them (its docstring's parallel form is not what it runs).
    LayerNorm eps 1e-5; attention-probability dropout, MLP dropout and drop-path 0.1 in the paper.
    Keys ``sa_norm``, ``sa_attn``, ``mlp_norm``, ``mlp.{fc1,fc2}``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 16,
        mlp_ratio: int = 4,
        dropout: float = 0.1,
        drop_path: float = 0.1,
        attention: str = "sdpa",
    ):
        super().__init__()
        self.sa_norm = nn.LayerNorm(dim)
        self.sa_attn = MultiheadAttention(dim, num_heads, dropout, attention)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``[F, N, D]`` (F frames) -> ``[F, N, D]``."""
        z = z + self.drop_path(self.sa_attn(self.sa_norm(z)))
        return z + self.drop_path(self.mlp(self.mlp_norm(z)))
