"""Mamba-1 (S6) over time, with mamba-ssm's parameter layout and initialisation, and the pre-norm residual block
of the M / MMix / GMMix cores: ``y = x + Dropout(Mamba(LN(x)))``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.kernels import causal_conv1d, causal_conv1d_update, selective_scan, selective_state_update


class Mamba(nn.Module):
    """Selective state-space mixer for independent sequences ``[S, T, D] -> [S, T, D]`` (S = B·N token sequences).

    Steps (E = expand·D, R = dt_rank, N_s = d_state)::

        [ξ; ζ] = W_in u                          ξ' = SiLU(causal depthwise conv_4(ξ) + b)
        [δ̃; B; C] = W_x ξ'                       Δ = softplus(W_dt δ̃ + b_dt)      A = −exp(A_log)
        h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t ξ'_t) ⊗ B_t      y_t = (h_t C_t + D ⊙ ξ'_t) ⊙ SiLU(ζ_t)      out = W_out y

    The whole clip goes through ``coldstream.kernels.causal_conv1d`` + ``selective_scan``; a frame goes through
    ``causal_conv1d_update`` + ``selective_state_update``, both in place on the caller's state (fixed addresses).
    Keys: ``in_proj.weight``, ``conv1d.{weight (E,1,W), bias}``, ``x_proj.weight``, ``dt_proj.{weight,bias}``,
    ``A_log`` ``(E, N_s)``, ``D`` ``(E)``, ``out_proj.weight`` (no in/out bias), as mamba-ssm's ``Mamba``.

    State per sequence: conv ``[E, W-1]`` (the last W-1 conv inputs) and ssm ``[E, N_s]``, both fp32.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        self.dim = dim
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * dim
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(dim / 16)
        e, r = self.d_inner, self.dt_rank
        self.in_proj = nn.Linear(dim, 2 * e, bias=False)
        self.conv1d = nn.Conv1d(e, e, kernel_size=d_conv, groups=e, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(e, r + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.A_log = nn.Parameter(torch.empty(e, d_state))
        self.D = nn.Parameter(torch.empty(e))
        self.out_proj = nn.Linear(e, dim, bias=False)
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.kernel_backend = "auto"  # coldstream.kernels backend; set for the whole core with core.set_kernel_backend
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """mamba-ssm defaults: S4D-real A (−1..−N_s per channel), D = 1, dt ~ logU[dt_min, dt_max] in the bias."""
        if self.A_log.is_meta:
            return
        dt_min, dt_max, floor = self._dt_range
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log.copy_(torch.log(a))
        self.D.fill_(1.0)

    def state_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Per-sequence shapes of the conv and ssm states."""
        return (self.d_inner, self.d_conv - 1), (self.d_inner, self.d_state)

    def _split(self, x_dbl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)

    def forward(
        self, u: torch.Tensor, conv_state: torch.Tensor | None = None, ssm_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``u`` ``[S, T, D]``, optional initial states ``[S, E, W-1]``, ``[S, E, N_s]``.

        Returns ``(out [S, T, D], final conv state, final ssm state)``.
        """
        xz = self.in_proj(u).transpose(1, 2)  # [S, 2E, T]
        x, z = xz.chunk(2, dim=1)
        weight = self.conv1d.weight.squeeze(1)  # [E, W]
        x, conv_final = causal_conv1d(
            x.contiguous(),
            weight,
            self.conv1d.bias,
            initial_state=conv_state,
            activation="silu",
            return_final_state=True,
            backend=self.kernel_backend,
        )
        x_dbl = self.x_proj(x.transpose(1, 2))  # [S, T, R + 2 N_s]
        dt, b, c = self._split(x_dbl)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # [S, E, T]; bias added inside the scan
        y, ssm_final = selective_scan(
            x,
            delta.contiguous(),
            -torch.exp(self.A_log.float()),
            b.transpose(1, 2).contiguous(),
            c.transpose(1, 2).contiguous(),
            D=self.D.float(),
            z=z.contiguous(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=True,
            initial_state=ssm_state,
            backend=self.kernel_backend,
        )
        return self.out_proj(y.transpose(1, 2)), conv_final, ssm_final

    def step(
        self, u: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One frame ``u`` ``[S, D] -> [S, D]``; ``conv_state`` ``[S, E, W-1]`` and ``ssm_state`` ``[S, E, N_s]``
        are updated in place.

        ``indices`` ``[S]`` (int): the states are pools ``[slots, E, ...]`` and row s steps slot ``indices[s]``
        (-1: a padding row, no slot touched); the kernels' ``conv_state_indices`` / ``state_batch_indices``."""
        x, z = self.in_proj(u).chunk(2, dim=-1)  # [S, E] each
        x = causal_conv1d_update(
            x,
            conv_state,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            activation="silu",
            conv_state_indices=indices,
            backend=self.kernel_backend,
        )
        dt, b, c = self._split(self.x_proj(x))
        dt = F.linear(dt, self.dt_proj.weight)
        y = selective_state_update(
            ssm_state,
            x,
            dt,
            -torch.exp(self.A_log.float()),
            b,
            c,
            D=self.D.float(),
            z=z,
            dt_bias=self.dt_proj.bias.float(),
            dt_softplus=True,
            state_batch_indices=indices,
            backend=self.kernel_backend,
        )
        return self.out_proj(y)


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

    def step(
        self, x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``[S, D] -> [S, D]``, states updated in place (pools of slots with ``indices``, see ``Mamba.step``)."""
        return x + self.dropout(self.mamba.step(self.norm(x), conv_state, ssm_state, indices))
