"""The one transformer MLP: ``Linear(D -> H) -> activation -> Dropout -> Linear(H -> D) -> Dropout``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """Token-wise MLP ``[..., D] -> [..., D]`` (keys ``fc1``, ``fc2``), exact (erf) GELU by default.

    Used by the DINOv3 blocks (no dropout), the cores' transformer blocks and the multi-depth enrichment.
    """

    def __init__(
        self, dim: int, hidden: int, dropout: float = 0.0, activation: Callable[[torch.Tensor], torch.Tensor] = F.gelu
    ):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.activation = activation
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(x)))))
