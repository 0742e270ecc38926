"""The query decoder of the tracking readouts: PyTorch's pre-norm ``TransformerDecoderLayer`` (ReLU FFN, dropout
0), with its parameter names, computed through the attention dispatch point."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.model.layers.mha import MultiheadAttention


class QueryDecoderLayer(nn.Module):
    """``q <- q + SA(LN1 q)``; ``q <- q + CA(LN2 q, memory)``; ``q <- q + FFN(LN3 q)``, FFN = Linear -> ReLU -> Linear.

    Equal to ``nn.TransformerDecoderLayer(dim, heads, dim_feedforward, dropout=0, batch_first=True,
    norm_first=True)`` holding the same weights (keys ``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
    ``norm1..3``), so the reference checkpoints load as they are.
    """

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, attention: str = "sdpa"):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, attention=attention)
        self.multihead_attn = MultiheadAttention(dim, num_heads, attention=attention)
        self.linear1 = nn.Linear(dim, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``query`` ``[F, Q, d]``, ``memory`` ``[F, N, d]`` -> ``[F, Q, d]``."""
        q = query + self.self_attn(self.norm1(query))
        q = q + self.multihead_attn(self.norm2(q), memory)
        return q + self.linear2(F.relu(self.linear1(self.norm3(q))))


class QueryDecoder(nn.Module):
    """``num_layers`` :class:`QueryDecoderLayer` s then a LayerNorm (keys ``layers.{l}.*``, ``output_norm``).

    The memory (the N tokens of frame t) is not normalised by the layers.
    """

    def __init__(
        self, dim: int = 1024, num_heads: int = 4, num_layers: int = 1, mlp_ratio: int = 4, attention: str = "sdpa"
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            [QueryDecoderLayer(dim, num_heads, dim * mlp_ratio, attention) for _ in range(num_layers)]
        )
        self.output_norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            query = layer(query, memory)
        return self.output_norm(query)
