"""Tiny stand-ins shared by the training tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from torch import nn


class TinyEncoder(nn.Module):
    """A frozen conv encoder with the ``features`` contract: ``[B, 3, S, S] -> [K, B, N, D]``."""

    name = "tiny"
    weights_id = "tiny-seed-0"

    def __init__(self, dim: int = 8, depths: int = 2, patch: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(3 if k == 0 else dim, dim, 1) for k in range(depths))
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
            p.requires_grad_(False)
        self.patch = patch
        self.dim = dim
        self.num_depths = depths
        self.calls = 0

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        x = nn.functional.avg_pool2d(x, self.patch)
        outs = []
        for conv in self.convs:
            x = torch.tanh(conv(x))
            outs.append(x.flatten(2).transpose(1, 2))  # [B, N, D]
        return torch.stack(outs)
