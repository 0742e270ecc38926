"""The pre-norm residual Mamba block of M / MMix / GMMix: ``y = x + Dropout(Mamba(LN(x)))`` (SPEC §3.2)."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores.mamba_mixer import Mamba


class MambaResidualBlock(nn.Module):
    """Residual Mamba over time for ``[S, T, D]`` sequences (S = B·N tokens, each scanned independently).

    Keys ``norm.*`` (LayerNorm eps 1e-5) and ``mamba.*``; dropout 0.1 on the Mamba output in the paper.
    """

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mamba = Mamba(dim, d_state=d_state, expand=expand, d_conv=d_conv)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, conv_state: torch.Tensor | None = None, ssm_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``[S, T, D]`` -> ``(y [S, T, D], final conv state, final ssm state)``."""
        v, conv_final, ssm_final = self.mamba(self.norm(x), conv_state, ssm_state)
        return x + self.dropout(v), conv_final, ssm_final

    def step(self, x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor) -> torch.Tensor:
        """``x`` ``[S, D] -> [S, D]``, states updated in place."""
        return x + self.dropout(self.mamba.step(self.norm(x), conv_state, ssm_state))
