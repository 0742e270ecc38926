"""M: residual Mamba blocks scanned over time, per token; the base of MMix and GMMix."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores.base import CORES, TemporalCore
from coldstream.model.cores.state import CoreState
from coldstream.model.layers.mamba import MambaResidualBlock


@CORES.register("mamba", aliases=("m", "dinov3_mamba"))
class MambaCore(TemporalCore):
    """``z <- MambaResidual_l(z)`` for l = 1..L, then ``output_norm``; no interaction between tokens of a frame.

    Scan axis is time only: ``[B, T, N, D]`` is viewed as B·N independent length-T sequences sharing weights.
    State per layer l: ``conv{l}`` ``[B, N, E, W-1]`` and ``ssm{l}`` ``[B, N, E, N_s]`` (fp32); for ViT-L at 224 px
    that is 4 · 201 · 2048 · (3 + 16) floats ≈ 125 MB per stream (the conv buffer holds the last W−1 inputs).

    Args:
        dim: D. num_layers: 4. d_state / expand / d_conv: 16 / 2 / 4. mamba_dropout: 0.1 on the Mamba output.
        in_dim, attention: see ``TemporalCore`` (M has no attention).
    """

    kind = "mamba"
    supports_slots = True

    def __init__(
        self,
        dim: int,
        num_layers: int = 4,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        mamba_dropout: float = 0.1,
        in_dim: int | None = None,
        attention: str = "sdpa",
    ):
        super().__init__(dim, in_dim, attention)
        self.num_layers = num_layers
        self.mamba_blocks = nn.ModuleList(
            [MambaResidualBlock(dim, d_state, expand, d_conv, mamba_dropout) for _ in range(num_layers)]
        )
        self.output_norm = nn.LayerNorm(dim)

    def _state_shapes(self, batch: int, tokens: int) -> dict[str, tuple[int, ...]]:
        conv, ssm = self.mamba_blocks[0].mamba.state_shapes()
        shapes = {}
        for i in range(self.num_layers):
            shapes[f"conv{i}"] = (batch, tokens, *conv)
            shapes[f"ssm{i}"] = (batch, tokens, *ssm)
        return shapes

    @staticmethod
    def _seq_view(t: torch.Tensor) -> torch.Tensor:
        """``[B, N, ...] -> [B·N, ...]`` as a view (same storage: in-place kernels write into the state)."""
        return t.view(t.shape[0] * t.shape[1], *t.shape[2:])

    def _temporal(
        self, i: int, a: torch.Tensor, state: CoreState | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mamba block i over time: ``a`` ``[B, T, N, D]`` -> (``[B·N, T, D]`` in, out, ``[B, N, ...]`` finals)."""
        b, t, n, d = a.shape
        seq = a.permute(0, 2, 1, 3).reshape(b * n, t, d)
        conv = ssm = None
        if state is not None:
            conv = self._seq_view(state[f"conv{i}"]).clone()
            ssm = self._seq_view(state[f"ssm{i}"]).clone()
        out, conv_f, ssm_f = self.mamba_blocks[i](seq, conv, ssm)
        return seq, out, (conv_f.view(b, n, *conv_f.shape[1:]), ssm_f.view(b, n, *ssm_f.shape[1:]))

    def _layer_clip(self, i: int, z: torch.Tensor, state: CoreState | None, finals: dict) -> torch.Tensor:
        b, t, n, d = z.shape
        _, out, (conv_f, ssm_f) = self._temporal(i, z, state)
        finals[f"conv{i}"], finals[f"ssm{i}"] = conv_f, ssm_f
        return out.view(b, n, t, d).permute(0, 2, 1, 3)

    def _layer_step(self, i: int, z: torch.Tensor, state: CoreState, rows: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = z.shape
        conv, ssm = self._seq_view(state[f"conv{i}"]), self._seq_view(state[f"ssm{i}"])
        return self.mamba_blocks[i].step(z.reshape(b * n, d), conv, ssm, rows).view(b, n, d)

    def _forward_clip(self, x: torch.Tensor, state: CoreState | None) -> tuple[torch.Tensor, dict]:
        finals: dict = {}
        z = x
        for i in range(self.num_layers):
            z = self._layer_clip(i, z, state, finals)
        return self.output_norm(z), finals

    def _step(self, x_t: torch.Tensor, state: CoreState, rows: torch.Tensor | None = None) -> torch.Tensor:
        z = x_t
        for i in range(self.num_layers):
            z = self._layer_step(i, z, state, rows)
        return self.output_norm(z)

    def _step_slots(self, x_t: torch.Tensor, pool: CoreState, slots: torch.Tensor) -> torch.Tensor:
        # stream b's token k is sequence slots[b]·N + k of the pool viewed as [slots·N, ...]; padding stays -1
        n = x_t.shape[1]
        tokens = torch.arange(n, device=slots.device, dtype=slots.dtype)
        rows = torch.where(slots[:, None] >= 0, slots[:, None] * n + tokens, -1).reshape(-1)
        return self._step(x_t, pool, rows)
