"""The identity core: no temporal module (the frozen encoder alone), a per-frame LayerNorm with an empty state."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores.base import CORES, TemporalCore
from coldstream.model.cores.state import CoreState


@CORES.register("identity", aliases=("none",))
class IdentityCore(TemporalCore):
    """``y_t = LayerNorm(x_t)`` (eps 1e-5, affine); no state, so every frame is seen alone.

    The paper's "frozen image encoder only" ablation, and the single-frame baseline of the main job.
    """

    kind = "identity"

    def __init__(self, dim: int, in_dim: int | None = None, attention: str = "sdpa"):
        super().__init__(dim, in_dim, attention)
        self.output_norm = nn.LayerNorm(dim)

    def _state_shapes(self, batch: int, tokens: int) -> dict[str, tuple[int, ...]]:
        return {}

    def _forward_clip(self, x: torch.Tensor, state: CoreState | None) -> tuple[torch.Tensor, dict]:
        return self.output_norm(x), {}

    def _step(self, x_t: torch.Tensor, state: CoreState) -> torch.Tensor:
        return self.output_norm(x_t)
