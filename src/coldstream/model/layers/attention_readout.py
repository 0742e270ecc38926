"""The 4DS / V-JEPA attentive probe (RVM's ``AttentionReadout`` with ``match_vjepa_implementation=True``): learned
queries cross-attend to the tokens of one frame, or of a whole clip. Used by the classification and depth readouts,
streaming and offline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.attention import attention, check_backend


def interpolate_frames(table: torch.Tensor, frames: int) -> torch.Tensor:
    """A learned per-frame table ``[1, F, 1, D]`` resampled to ``[1, frames, 1, D]`` by linear interpolation along
    its frame axis (``align_corners=False``); returned as is when the counts agree."""
    if table.shape[1] == frames:
        return table
    rows = table[0, :, 0].t()[None].float()  # [1, D, F]
    return F.interpolate(rows, size=frames, mode="linear", align_corners=False)[0].t().to(table)[None, :, None]


class AttentionReadout(nn.Module):
    """Learned queries cross-attend to the tokens of one frame ``[F, N, D]``, or of a clip ``[F, T, N, D]``.

    ``f = LN(x) (+ temporal_posenc)``; ``K, V = W_k f + b_k, W_v f + b_v`` split into heads; each learned query
    ``q`` ``[Q, H, d_h]`` (init N(0, 0.02²)) gives ``a = softmax(q K^T / sqrt(d_h)) V``; ``τ = q + W_o a``;
    ``τ <- τ + MLP(LN(τ))``; ``out = W_cls τ``. Keys ``input_norm``, ``temporal_posenc``, ``query``, ``key_proj``,
    ``value_proj``, ``out_proj``, ``mlp_norm``, ``mlp_fc1``, ``mlp_fc2``, ``classifier`` as in the reference.

    Args:
        input_dim: token width D. num_params: internal width (768 SSv2, 1024 ScanNet). num_outputs: per query.
        num_queries: Q. num_heads: H. mlp_ratio: 4. temporal_posenc: add the learned ``(1, 1, 1, D)`` vector
            (ScanNet's per-frame readout keeps RVM's one-frame temporal embedding: a learned bias on the input).
        attention: the attention backend (``"sdpa"``, ``"xformers"``, ``"math"``).
    """

    def __init__(
        self,
        input_dim: int,
        num_params: int,
        num_outputs: int,
        num_queries: int = 1,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        temporal_posenc: bool = False,
        attention: str = "sdpa",
        num_frames: int = 1,
    ):
        super().__init__()
        if num_params % num_heads:
            raise InputError(f"readout width {num_params} is not divisible by {num_heads} heads")
        self.num_params, self.num_heads, self.num_queries = num_params, num_heads, num_queries
        self.head_dim = num_params // num_heads
        self.attention = check_backend(attention)
        self.input_norm = nn.LayerNorm(input_dim)
        self.temporal_posenc = (
            nn.Parameter(torch.randn(1, num_frames, 1, input_dim) * 0.02) if temporal_posenc else None
        )
        self.query = nn.Parameter(torch.randn(num_queries, num_heads, self.head_dim) * 0.02)
        self.key_proj = nn.Linear(input_dim, num_params)
        self.value_proj = nn.Linear(input_dim, num_params)
        self.out_proj = nn.Linear(num_params, num_params)
        self.mlp_norm = nn.LayerNorm(num_params)
        self.mlp_fc1 = nn.Linear(num_params, num_params * mlp_ratio)
        self.mlp_fc2 = nn.Linear(num_params * mlp_ratio, num_params)
        self.classifier = nn.Linear(num_params, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[F, N, D]`` (F independent frames) or ``[F, T, N, D]`` (F clips, all T·N tokens attended at once)
        -> ``[F, Q, num_outputs]``."""
        feats = self.input_norm(x)
        if self.temporal_posenc is not None:
            table = interpolate_frames(self.temporal_posenc, x.shape[1] if x.ndim == 4 else 1)
            feats = feats + (table[0] if x.ndim == 4 else table[0, 0])
        feats = feats.flatten(1, 2) if x.ndim == 4 else feats
        f, n, _ = feats.shape
        k = self.key_proj(feats).view(f, n, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.value_proj(feats).view(f, n, self.num_heads, self.head_dim).transpose(1, 2)
        q = self.query.to(k.dtype).transpose(0, 1).unsqueeze(0).expand(f, -1, -1, -1)  # [F, H, Q, d_h]
        a = attention(q, k, v, self.attention)  # [F, H, Q, d_h]
        a = a.transpose(1, 2).reshape(f, self.num_queries, self.num_params)
        tok = self.query.reshape(1, self.num_queries, self.num_params) + self.out_proj(a)
        tok = tok + self.mlp_fc2(F.gelu(self.mlp_fc1(self.mlp_norm(tok))))
        return self.classifier(tok)
