"""The mean-pool core: the running mean of the frames so far, the order-blind baseline."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores.base import CORES, TemporalCore
from coldstream.model.cores.state import CoreState


@CORES.register("meanpool", aliases=("mean",))
class MeanPoolCore(TemporalCore):
    """``y_t = LayerNorm(mean(x_1 .. x_t))`` per token (eps 1e-5, affine).

    Causal and streamable (the state is the running sum and the frame count), but blind to frame order at the last
    frame: a clip and its reverse give the same ``y_T``. With a per-frame readout this is the classic
    "mean-pooled frame features" baseline; a temporal core shows that it uses time only where it beats it.

    State: ``sum`` ``[B, N, D]`` and ``count`` ``[B, 1, 1]`` (fp32).
    """

    kind = "meanpool"

    def __init__(self, dim: int, in_dim: int | None = None, attention: str = "sdpa"):
        super().__init__(dim, in_dim, attention)
        self.output_norm = nn.LayerNorm(dim)

    def _state_shapes(self, batch: int, tokens: int) -> dict[str, tuple[int, ...]]:
        return {"sum": (batch, tokens, self.dim), "count": (batch, 1, 1)}

    def _forward_clip(self, x: torch.Tensor, state: CoreState | None) -> tuple[torch.Tensor, dict]:
        b, t = x.shape[:2]
        total = x.float().cumsum(dim=1)
        count = torch.arange(1, t + 1, device=x.device, dtype=torch.float32).view(1, t, 1, 1)
        if state is not None:
            total = total + state["sum"][:, None]
            count = count + state["count"][:, None]
        y = self.output_norm((total / count).to(x.dtype))
        return y, {"sum": total[:, -1], "count": count[:, -1].expand(b, 1, 1)}

    def _step(self, x_t: torch.Tensor, state: CoreState) -> torch.Tensor:
        state["sum"].add_(x_t.float())
        state["count"].add_(1.0)
        return self.output_norm((state["sum"] / state["count"]).to(x_t.dtype))
