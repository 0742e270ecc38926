"""The trainable part of the spatial encoder: how the K frozen feature depths become one token set per frame.

``mlp`` is the paper's multi-depth enrichment: for each depth j, patch tokens F_j get F_j + MLP_j(BN_j(F_j))
(BatchNorm1d over all frame×patch tokens of the batch; MLP D→2D→D with exact GELU); the patch output is the mean
over depths; the prefix tokens (CLS and storage) come from the last depth untouched. ``mean`` averages the depths,
``last`` keeps the last one; single-depth encoders (EfficientNet-Lite0) pass their one depth through.
All map ``[K, B, N, D] -> [B, N, D]``.
"""

from __future__ import annotations

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.mlp import Mlp

ENRICHMENTS = ("mlp", "mean", "last")


class DepthMLP(Mlp):
    """``x + fc2(GELU(fc1(BN(x))))`` for patch tokens ``[B, P, D]`` of one depth (keys ``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int):
        super().__init__(dim, 2 * dim)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, d = x.shape
        return x + super().forward(self.norm(x.reshape(b * p, d)).view(b, p, d))


class _Enrichment(nn.Module):
    def __init__(self, dim: int, num_depths: int):
        super().__init__()
        self.dim, self.num_depths = dim, num_depths

    def check(self, feats: torch.Tensor) -> None:
        if feats.dim() != 4 or feats.shape[0] != self.num_depths or feats.shape[-1] != self.dim:
            raise InputError(
                f"enrichment expects features [K={self.num_depths}, B, N, D={self.dim}], got {tuple(feats.shape)}"
            )


class MultiDepthEnrichment(_Enrichment):
    """The paper's ``mlp`` enrichment (see the module docstring)."""

    def __init__(self, dim: int, num_depths: int = 4, num_prefix_tokens: int = 5):
        super().__init__(dim, num_depths)
        self.num_prefix_tokens = num_prefix_tokens
        self.mlps = nn.ModuleList([DepthMLP(dim) for _ in range(num_depths)])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        self.check(feats)
        dtype = self.mlps[0].fc1.weight.dtype
        feats = feats if torch.is_autocast_enabled(feats.device.type) else feats.to(dtype)
        p0 = self.num_prefix_tokens
        patches = torch.stack([mlp(feats[j, :, p0:]) for j, mlp in enumerate(self.mlps)]).mean(dim=0)
        return torch.cat((feats[-1, :, :p0].to(patches.dtype), patches), dim=1)


class MeanOfDepths(_Enrichment):
    """The mean of the K depths (no parameters)."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        self.check(feats)
        return feats.mean(dim=0)


class LastDepth(_Enrichment):
    """The last depth as it is (no parameters); the only choice for single-depth encoders."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        self.check(feats)
        return feats[-1]


def build_enrichment(encoder: nn.Module, mode: str = "mlp") -> nn.Module:
    """The enrichment ``mode`` (``"mlp"``, ``"mean"`` or ``"last"``) for ``encoder``'s features ``[K, B, N, D]``.

    A single-depth encoder gets :class:`LastDepth` whatever the mode (there is nothing to blend).
    """
    if mode not in ENRICHMENTS:
        raise InputError(f"enrichment must be one of {ENRICHMENTS}, got {mode!r}")
    dim, depths = encoder.dim, encoder.num_depths
    if depths == 1 or mode == "last":
        return LastDepth(dim, depths)
    if mode == "mean":
        return MeanOfDepths(dim, depths)
    return MultiDepthEnrichment(dim, depths, encoder.num_prefix_tokens)
