"""DINOv3's 2-D axial rotary position embedding, evaluation mode.

Patch (row i, col j) of an h×w grid gets normalised coordinates c_h = 2(i+0.5)/h − 1, c_w = 2(j+0.5)/w − 1
("separate" normalisation). With head dim d_h and P = d_h/4 periods p_k = base^(2k/(d_h/2)), the angle vector is
[2π c_h / p, 2π c_w / p] (length d_h/2) tiled twice, and rope(v) = v·cos + rot(v)·sin with rot([a, b]) = [−b, a]
over the two halves of v. The training-time shift/jitter/rescale augmentations are deliberately not implemented:
the encoder is frozen and always in evaluation mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coldstream.errors import InputError


class RopePositionEmbedding(nn.Module):
    """Holds the ``periods`` buffer (checkpoint key ``rope_embed.periods``) and produces (sin, cos) for a grid."""

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        if head_dim % 4 != 0:
            raise InputError(f"RoPE head dim must be a multiple of 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        n = head_dim // 4
        periods = base ** (2 * torch.arange(n, dtype=torch.float32) / (head_dim // 2))
        self.register_buffer("periods", periods, persistent=True)

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos), each fp32 ``[h·w, head_dim]``, patches row-major (h outer, w inner)."""
        dev = self.periods.device
        ch = 2 * (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h - 1
        cw = 2 * (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w - 1
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)  # [hw, 2]
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]  # [hw, 2, P]
        angles = angles.flatten(1, 2).tile(2)  # [hw, head_dim]
        return torch.sin(angles), torch.cos(angles)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., hw, head_dim]`` in fp32 and cast back to its dtype."""
    xf = x.float()
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
