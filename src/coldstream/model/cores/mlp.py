"""The transformer MLP: Linear(D -> hD) -> GELU -> Dropout -> Linear(hD -> D) -> Dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TransformerMLP(nn.Module):
    """Token-wise MLP ``[..., D] -> [..., D]`` with exact GELU (keys ``fc1``, ``fc2`` as in the reference)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))
