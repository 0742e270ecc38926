"""One DINOv3 transformer block: pre-norm attention and MLP branches, each scaled by LayerScale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.model.encoders.dinov3.rope import apply_rope
from coldstream.model.layers.attention import attention, check_backend
from coldstream.model.layers.layer_scale import LayerScale
from coldstream.model.layers.mlp import Mlp


class LinearKMaskedBias(nn.Linear):
    """qkv projection whose K-third bias is always zero (checkpoint buffer ``bias_mask``: 1 for Q and V, 0 for K).

    The stored mask is ignored on load and rebuilt: official files may carry it uninitialised, and its meaning is
    fixed (the K bias is unused).
    """

    def __init__(self, dim: int):
        super().__init__(dim, 3 * dim, bias=True)
        self.register_buffer("bias_mask", self._canonical_mask(dim), persistent=True)

    @staticmethod
    def _canonical_mask(dim: int) -> torch.Tensor:
        mask = torch.ones(3 * dim)
        mask[dim : 2 * dim] = 0
        return mask

    def reset_mask(self) -> None:
        self.bias_mask.copy_(self._canonical_mask(self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, attention: str = "sdpa"):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = LinearKMaskedBias(dim)
        self.proj = nn.Linear(dim, dim)
        self.attention = check_backend(attention)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], num_prefix: int) -> torch.Tensor:
        """x ``[B, N, D]``; RoPE rotates q and k of the patch tokens only (the first ``num_prefix`` are left as is)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        sin, cos = rope
        q = torch.cat((q[:, :, :num_prefix], apply_rope(q[:, :, num_prefix:], sin, cos)), dim=2)
        k = torch.cat((k[:, :, :num_prefix], apply_rope(k[:, :, num_prefix:], sin, cos)), dim=2)
        out = attention(q, k, v, self.attention)  # [B, H, N, Dh]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, attention: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SelfAttention(dim, num_heads, attention)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))  # exact (erf) GELU, no dropout
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], num_prefix: int) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, num_prefix))
        return x + self.ls2(self.mlp(self.norm2(x)))
