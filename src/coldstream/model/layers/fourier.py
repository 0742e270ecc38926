"""Fourier features of continuous coordinates (4DS / NeRF style), for the box and point queries."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierPositionEncoding(nn.Module):
    """``[F, C] -> [F, C·2K]``: per coordinate ``[sin(π 2^k v)]_{k<K}`` then ``[cos(π 2^k v)]_{k<K}``.

    ``freqs`` = ``2^0 .. 2^{K-1}`` is a persistent buffer (the reference checkpoints store it). Computed in fp32
    whatever the input dtype: at π·2^15 a bf16 coordinate would be all rounding error. Returns fp32.
    """

    def __init__(self, num_frequencies: int = 16, input_dim: int = 4):
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = input_dim * num_frequencies * 2
        self.register_buffer("freqs", 2.0 ** torch.linspace(0, num_frequencies - 1, num_frequencies))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[F, C]`` -> ``[F, C·2K]`` fp32."""
        xf = x.float().unsqueeze(-1) * self.freqs.float() * math.pi  # [F, C, K]
        return torch.cat([xf.sin(), xf.cos()], dim=-1).reshape(x.shape[0], -1)

    def encode_for(self, x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
        """Features ready for ``layer``: fp32 under autocast (it casts), else in the layer's weight dtype."""
        f = self(x)
        return f if torch.is_autocast_enabled(f.device.type) else f.to(layer.weight.dtype)
