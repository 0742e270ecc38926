"""GMMix: MMix with a learned per-token sigmoid gate between the pre- and post-temporal tensors."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.kernels import gated_blend
from coldstream.model.cores.base import CORES
from coldstream.model.cores.mambamix import MambaMixCore


@CORES.register("gmmix", aliases=("gatedmambamix", "dinov3_gatedmambamix"))
class GatedMambaMixCore(MambaMixCore):
    """For l = 1..L::

        a = Spatial_l(z)                 b = MambaResidual_l(a)   (b already contains the residual a)
        g = σ(W_g [a; b] + c_g)          z = (1 − g) ⊙ a + g ⊙ b  (``coldstream.kernels.gated_blend``)

    then ``output_norm``. ``gates.{l}`` = ``Linear(2D -> D)`` (``gate_hidden = 0`` in the paper; the unused
    two-layer gate variant is not implemented). Options as ``MambaMixCore``.
    """

    kind = "gmmix"

    def __init__(self, dim: int, num_layers: int = 4, **options):
        super().__init__(dim, num_layers, **options)
        self.gates = nn.ModuleList([nn.Linear(2 * dim, dim) for _ in range(num_layers)])

    def _combine(self, i: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return gated_blend(a, b, self.gates[i](torch.cat([a, b], dim=-1)), backend=self.kernel_backend)
