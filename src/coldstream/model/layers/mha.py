"""Multi-head attention with ``nn.MultiheadAttention``'s parameter layout, computed through the dispatch point."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.attention import attention, check_backend


class MultiheadAttention(nn.Module):
    """Softmax attention, scale ``1/sqrt(dim/heads)``, no masks, no positional encoding.

    Parameters are named and initialised as in ``nn.MultiheadAttention(batch_first=True)`` (``in_proj_weight``
    ``[3D, D]`` stacked [Q; K; V], ``in_proj_bias`` ``[3D]``, ``out_proj``), so checkpoints written for PyTorch's
    module load as they are, while the computation goes through :func:`coldstream.model.layers.attention.attention`
    (fused kernels, ``torch.compile`` and CUDA-graph friendly, the backend chosen at construction).

    Args:
        dim: model width D.
        num_heads: heads; must divide D.
        dropout: attention-probability dropout (training only).
        attention: ``"sdpa"``, ``"xformers"`` or ``"math"``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, attention: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise InputError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.attention = check_backend(attention)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """``query`` ``[B, Nq, D]`` attends to ``memory`` ``[B, Nk, D]`` (to itself when None) -> ``[B, Nq, D]``."""
        d = self.dim
        if memory is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, self.in_proj_weight[:d], self.in_proj_bias[:d])
            k, v = F.linear(memory, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        out = attention(q, k, v, self.attention, self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], d)
        return self.out_proj(out)
