"""RVMRNN: RVM's GatedTransformerCore, a GRU-gated recurrence whose candidate is a cross-attention transformer."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.kernels import gated_blend
from coldstream.model.cores.base import CORES, TemporalCore
from coldstream.model.cores.state import CoreState
from coldstream.model.layers.rvm_block import RVMCrossAttentionTransformer

HEADS_BY_WIDTH = {1024: 16, 768: 12, 384: 8}  # the paper's heads for ViT-L / B / S widths


def default_heads(dim: int) -> int:
    """RVMRNN's attention heads for width D: 16 / 12 / 8 for D = 1024 / 768 / 384 (the paper), else D / 64."""
    if dim in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[dim]
    if dim % 64 == 0:
        return dim // 64
    raise InputError(f"rvmrnn: no default head count for D={dim}; pass num_heads=")


@CORES.register("rvmrnn", aliases=("dinov3_rvmrnn",))
class RVMRNNCore(TemporalCore):
    """RVM's GatedTransformerCore. State ``s`` ``[B, N, D]`` (one state token per input token), ``s_0 = 0``; per frame::

        u = σ(W_ux x + W_us s)            r = σ(W_rx x + W_rs s)        (bias-free; gates see the raw state)
        h = Tx(query=x, memory=r ⊙ LN_s(s))                             (LN_s eps 1e-6)
        s ← (1 − u) ⊙ s + u ⊙ h           y = output_norm(s)            (the state itself stays un-normalised)

    The convex update runs through ``coldstream.kernels.gated_blend`` in fp32 (the state is fp32 even under bf16
    autocast). There is no parallel form over time: the clip forward loops over frames with the same cell as
    ``step``, so T steps equal one clip exactly. Full BPTT through the loop.

    Args:
        dim: D. num_layers: transformer blocks (4). num_heads: default ``default_heads(dim)`` (16 / 12 / 8 for
        D = 1024 / 768 / 384). mlp_ratio: 4. dropout: 0 in the paper. in_dim, attention: see ``TemporalCore``.
    """

    kind = "rvmrnn"

    def __init__(
        self,
        dim: int,
        num_layers: int = 4,
        num_heads: int | None = None,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        in_dim: int | None = None,
        attention: str = "sdpa",
    ):
        super().__init__(dim, in_dim, attention)
        num_heads = default_heads(dim) if num_heads is None else num_heads
        self.input_update = nn.Linear(dim, dim, bias=False)
        self.input_reset = nn.Linear(dim, dim, bias=False)
        self.state_update = nn.Linear(dim, dim, bias=False)
        self.state_reset = nn.Linear(dim, dim, bias=False)
        self.state_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = RVMCrossAttentionTransformer(dim, num_layers, num_heads, mlp_ratio, dropout, attention)
        self.output_norm = nn.LayerNorm(dim)

    def _state_shapes(self, batch: int, tokens: int) -> dict[str, tuple[int, ...]]:
        return {"s": (batch, tokens, self.dim)}

    def cell(self, x_t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """One recurrence step: ``x_t`` ``[B, N, D]``, ``s`` ``[B, N, D]`` fp32 -> new state ``[B, N, D]`` fp32."""
        s_in = s.to(x_t.dtype)  # a no-op in fp32 and under autocast; casts for a model held in bf16
        update_logits = self.input_update(x_t) + self.state_update(s_in)
        reset = torch.sigmoid(self.input_reset(x_t) + self.state_reset(s_in))
        h = self.transformer(x_t, reset * self.state_layer_norm(s_in))
        return gated_blend(s, h.to(s.dtype), update_logits.to(s.dtype), backend=self.kernel_backend)

    def _forward_clip(self, x: torch.Tensor, state: CoreState | None) -> tuple[torch.Tensor, dict]:
        b, t, n, d = x.shape
        s = x.new_zeros((b, n, d), dtype=torch.float32) if state is None else state["s"].clone()
        outs = []
        for i in range(t):
            s = self.cell(x[:, i], s)
            outs.append(s)
        return self.output_norm(torch.stack(outs, dim=1).to(x.dtype)), {"s": s}

    def _step(self, x_t: torch.Tensor, state: CoreState) -> torch.Tensor:
        s = self.cell(x_t, state["s"])
        state["s"].copy_(s)
        return self.output_norm(s.to(x_t.dtype))
