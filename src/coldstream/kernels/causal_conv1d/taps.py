"""The reference backend's runtime path for the causal conv: the fp32 math of ``naive.py``, one tap at a time.

``naive.causal_conv1d_ref`` unfolds every window into a ``[B, D, T, W]`` tensor before reducing it; here each of the
W taps is one multiply-add over ``[B, D, T]`` (forward) and the backward's dx, dweight and dbias are built the same
way, which on a CPU is 2-3x less memory traffic. Same inputs and results (resets included; the final state comes
from ``ops``), fp32 (fp64 for fp64 inputs) accumulation; tests/kernels/test_causal_conv1d_taps.py holds it to the
naive reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import acc_dtype
from .naive import segment_lo


def _padded(x: torch.Tensor, initial_state: torch.Tensor | None, width: int, acc: torch.dtype) -> torch.Tensor:
    """``[initial_state (or zeros) | x]``, ``[B, D, W - 1 + T]`` in ``acc``."""
    if initial_state is None:
        return F.pad(x.to(acc), (width - 1, 0))
    return torch.cat([initial_state.to(acc), x.to(acc)], dim=-1)


def _tap_masks(resets: torch.Tensor | None, batch: int, T: int, width: int, acc, device) -> list | None:
    """Per tap k, ``[B, 1, T]``: 1 where output t may read padded index t + k (not before its segment), or None."""
    if resets is None:
        return None
    lo = segment_lo(resets, batch, T, width, device)
    t = torch.arange(T, device=device)
    return [(t + k >= lo).to(acc)[:, None] for k in range(width)]


def _pre(xx, w32, bias, masks, T, acc):
    batch, dim = xx.shape[:2]
    pre = xx.new_zeros(batch, dim, T) if bias is None else bias.to(acc)[:, None].expand(batch, dim, T).clone()
    for k in range(w32.shape[1]):
        tap = xx[..., k : k + T] if masks is None else xx[..., k : k + T] * masks[k]
        pre.addcmul_(tap, w32[:, k, None])
    return pre


def causal_conv1d_taps(x, weight, bias, initial_state, activation, resets) -> torch.Tensor:
    """Forward output ``[B, D, T]`` in x's dtype (``naive.causal_conv1d_ref``'s first result; no cu_seqlens)."""
    acc = acc_dtype(x.dtype)
    batch, _, T = x.shape
    width = weight.shape[1]
    xx = _padded(x, initial_state, width, acc)
    pre = _pre(xx, weight.to(acc), bias, _tap_masks(resets, batch, T, width, acc, x.device), T, acc)
    return (F.silu(pre) if activation == "silu" else pre).to(x.dtype)


def causal_conv1d_bwd_taps(dout, dfinal, x, weight, bias, initial_state, activation, resets):
    """``naive.causal_conv1d_bwd_ref``'s arguments and results: ``(dx, dweight, dbias, dinitial_state)`` in fp32."""
    acc = acc_dtype(x.dtype)
    batch, dim, T = x.shape
    width = weight.shape[1]
    xx = _padded(x, initial_state, width, acc)
    w32 = weight.to(acc)
    masks = _tap_masks(resets, batch, T, width, acc, x.device)
    g = dout.to(acc)
    if activation == "silu":
        pre = _pre(xx, w32, bias, masks, T, acc)
        s = torch.sigmoid(pre)
        g = g * s * (1 + pre * (1 - s))
    dw = w32.new_empty(dim, width)
    dxx = torch.zeros_like(xx)
    for k in range(width):
        gk = g if masks is None else g * masks[k]
        dw[:, k] = torch.einsum("bdt,bdt->d", gk, xx[..., k : k + T])
        dxx[..., k : k + T].addcmul_(gk, w32[:, k, None])
    if dfinal is not None and width > 1:
        tail = dfinal.to(acc)
        if resets is not None and T > 0:  # the final state holds only inputs of the last segment
            lo = segment_lo(resets, batch, T, width, x.device)[:, -1:]
            tail = tail * (torch.arange(T, T + width - 1, device=x.device)[None] >= lo).to(acc)[:, None]
        dxx[..., T:] += tail
    dbias = g.sum((0, 2)) if bias is not None else None
    dinit = dxx[..., : width - 1] if initial_state is not None else None
    return dxx[..., width - 1 :], dw, dbias, dinit
