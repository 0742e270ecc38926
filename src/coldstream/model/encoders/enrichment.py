"""The trainable part of the spatial encoder: SPEC §2.4's multi-depth feature enrichment.

For each of the K frozen depths j, patch tokens F_j get F_j + MLP_j(BN_j(F_j)) (BatchNorm1d over all frame×patch
tokens of the batch; MLP D→2D→D with exact GELU); the patch output is the mean over depths; the prefix tokens (CLS and
storage) come from the last depth untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DepthMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, P, D]``."""
        b, p, d = x.shape
        h = self.norm(x.reshape(b * p, d)).view(b, p, d)
        return x + self.fc2(F.gelu(self.fc1(h)))


class MultiDepthEnrichment(nn.Module):
    """``[K, B, N, D]`` frozen features -> ``[B, N, D]`` tokens."""

    def __init__(self, dim: int, num_depths: int = 4, num_prefix_tokens: int = 5):
        super().__init__()
        self.dim, self.num_depths, self.num_prefix_tokens = dim, num_depths, num_prefix_tokens
        self.mlps = nn.ModuleList([_DepthMLP(dim) for _ in range(num_depths)])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 4 or feats.shape[0] != self.num_depths or feats.shape[-1] != self.dim:
            raise ValueError(
                f"enrichment expects features [K={self.num_depths}, B, N, D={self.dim}], got {tuple(feats.shape)}"
            )
        dtype = self.mlps[0].fc1.weight.dtype
        feats = feats if torch.is_autocast_enabled(feats.device.type) else feats.to(dtype)
        p0 = self.num_prefix_tokens
        patches = torch.stack([mlp(feats[j, :, p0:]) for j, mlp in enumerate(self.mlps)]).mean(dim=0)
        return torch.cat((feats[-1, :, :p0].to(patches.dtype), patches), dim=1)


class PassThrough(nn.Module):
    """Enrichment for single-depth encoders (EfficientNet-Lite0): ``[1, B, N, D] -> [B, N, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim, self.num_depths = dim, 1

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 4 or feats.shape[0] != 1 or feats.shape[-1] != self.dim:
            raise ValueError(f"expected features [1, B, N, D={self.dim}], got {tuple(feats.shape)}")
        return feats[0]
