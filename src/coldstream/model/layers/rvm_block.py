"""RVM's cross-attention transformer, the candidate of the RVMRNN recurrence: per block cross-attention to the
memory, an MLP, then self-attention among the current frame's tokens."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.layers.mha import MultiheadAttention
from coldstream.model.layers.mlp import Mlp


class RVMCrossAttentionBlock(nn.Module):
    """``z <- z + CA(LN(z), memory)``; ``z <- z + MLP(LN(z))``; ``z <- z + SA(LN(z))``, LayerNorm eps 1e-6.

    The memory is used as given (the core normalises it once, before the reset gate); keys ``ca_norm``,
    ``ca_attn``, ``mlp_norm``, ``mlp.{fc1,fc2}``, ``sa_norm``, ``sa_attn`` as in the reference checkpoints.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, attention: str = "sdpa"):
        super().__init__()
        self.ca_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ca_attn = MultiheadAttention(dim, num_heads, dropout, attention)
        self.mlp_norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio, dropout)
        self.sa_norm = nn.LayerNorm(dim, eps=1e-6)
        self.sa_attn = MultiheadAttention(dim, num_heads, dropout, attention)

    def forward(self, z: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, N, D]`` (queries), ``memory`` ``[B, M, D]`` -> ``[B, N, D]``."""
        z = z + self.ca_attn(self.ca_norm(z), memory)
        z = z + self.mlp(self.mlp_norm(z))
        return z + self.sa_attn(self.sa_norm(z))


class RVMCrossAttentionTransformer(nn.Module):
    """``num_layers`` blocks then a final LayerNorm (eps 1e-6); keys ``layers.{l}.*``, ``output_norm``."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        attention: str = "sdpa",
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            [RVMCrossAttentionBlock(dim, num_heads, mlp_ratio, dropout, attention) for _ in range(num_layers)]
        )
        self.output_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, z: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z, memory)
        return self.output_norm(z)
