"""MMix: per layer a spatial self-attention block per frame, then a Mamba block per token over time."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores.base import CORES
from coldstream.model.cores.mamba import MambaCore
from coldstream.model.cores.state import CoreState
from coldstream.model.layers.spatial_block import SpatialSelfAttentionBlock


@CORES.register("mambamix", aliases=("mmix", "dinov3_mambamix"))
class MambaMixCore(MambaCore):
    """For l = 1..L: ``a = Spatial_l(z)`` (frames batched as B·T); ``z = MambaResidual_l(a)`` per token; then
    ``output_norm``. The state is the Mamba state of ``MambaCore`` (the spatial blocks are stateless).

    Args:
        dim: D. num_layers: 4. spatial_heads: 16 for every width (as the reference code). spatial_mlp_ratio: 4.
        spatial_dropout: 0.1 (attention probabilities and MLP). drop_path: 0.1. Mamba options, in_dim and
        attention as ``MambaCore``.
    """

    kind = "mambamix"

    def __init__(
        self,
        dim: int,
        num_layers: int = 4,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        mamba_dropout: float = 0.1,
        spatial_heads: int = 16,
        spatial_mlp_ratio: int = 4,
        spatial_dropout: float = 0.1,
        drop_path: float = 0.1,
        in_dim: int | None = None,
        attention: str = "sdpa",
    ):
        super().__init__(dim, num_layers, d_state, expand, d_conv, mamba_dropout, in_dim, attention)
        self.spatial_blocks = nn.ModuleList(
            [
                SpatialSelfAttentionBlock(dim, spatial_heads, spatial_mlp_ratio, spatial_dropout, drop_path, attention)
                for _ in range(num_layers)
            ]
        )

    def _combine(self, i: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """How layer i's temporal output replaces its input (MMix: plain replacement; GMMix: gated blend)."""
        return b

    def _layer_clip(self, i: int, z: torch.Tensor, state: CoreState | None, finals: dict) -> torch.Tensor:
        b, t, n, d = z.shape
        a = self.spatial_blocks[i](z.reshape(b * t, n, d)).view(b, t, n, d)
        seq, out, (conv_f, ssm_f) = self._temporal(i, a, state)
        finals[f"conv{i}"], finals[f"ssm{i}"] = conv_f, ssm_f
        return self._combine(i, seq, out).reshape(b, n, t, d).permute(0, 2, 1, 3)

    def _layer_step(self, i: int, z: torch.Tensor, state: CoreState, rows: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = z.shape
        a = self.spatial_blocks[i](z).reshape(b * n, d)
        conv, ssm = self._seq_view(state[f"conv{i}"]), self._seq_view(state[f"ssm{i}"])
        out = self.mamba_blocks[i].step(a, conv, ssm, rows)
        return self._combine(i, a, out).reshape(b, n, d)
