"""fp32 PyTorch references for the depthwise causal conv1d (width <= 8) and its single streaming step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import acc_dtype
from .._pool import gather_rows, mask_rows, scatter_rows


def segment_lo(resets: torch.Tensor | None, batch: int, T: int, width: int, device) -> torch.Tensor:
    """``[B, T]`` int32: the first index of the left-padded input ``[B, D, W - 1 + T]`` that output t may read.

    Without a reset the window may reach into the ``W - 1`` initial-state columns (lo = 0); after a reset at
    position r it starts at the reset (lo = r + W - 1), so no window crosses a sequence boundary.
    """
    pos = torch.arange(T, device=device).expand(batch, T)
    if resets is None:
        return torch.zeros(batch, T, dtype=torch.int32, device=device)
    marked = torch.where(resets, pos, torch.full_like(pos, -1))
    last = torch.cummax(marked, dim=1).values
    return torch.where(last >= 0, last + width - 1, torch.zeros_like(last)).to(torch.int32)


def _act(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation == "silu" else y


def causal_conv1d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    activation: str | None = "silu",
    resets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv; returns ``(out [B, D, T] in x.dtype, final_state [S, D, W - 1] in x.dtype)``.

    ``out[b, d, t] = act(bias[d] + sum_k weight[d, k] * xx[b, d, t - (W - 1) + k])`` where ``xx`` is ``x`` preceded by
    ``initial_state [B, D, W - 1]`` (zeros if None). ``resets [B, T]``: the window never reaches before a reset.
    ``cu_seqlens [S + 1]``: batch-1 packed sequences, each convolved on its own. The final state is the last
    ``W - 1`` inputs of each sequence (zeros where the sequence is shorter and had no initial state).
    """
    if cu_seqlens is not None:
        outs, lasts = [], []
        bounds = cu_seqlens.tolist()
        for s in range(len(bounds) - 1):
            sl = slice(bounds[s], bounds[s + 1])
            o, last = causal_conv1d_ref(
                x[..., sl], weight, bias, None if initial_state is None else initial_state[s : s + 1], activation
            )
            outs.append(o)
            lasts.append(last)
        return torch.cat(outs, dim=-1), torch.cat(lasts, dim=0)
    acc = acc_dtype(x.dtype)
    batch, dim, T = x.shape
    width = weight.shape[1]
    init = torch.zeros(batch, dim, width - 1, dtype=acc, device=x.device)
    if initial_state is not None:
        init = initial_state.to(acc)
    xx = torch.cat([init, x.to(acc)], dim=-1)  # [B, D, W - 1 + T]
    windows = xx.unfold(-1, width, 1)  # [B, D, T, W]
    lo = segment_lo(resets, batch, T, width, x.device)
    if resets is not None:
        idx = torch.arange(T, device=x.device)[:, None] + torch.arange(width, device=x.device)  # [T, W]
        windows = windows * (idx[None] >= lo[..., None]).to(acc)[:, None]
    y = (windows * weight.to(acc)[:, None, :]).sum(-1)
    if bias is not None:
        y = y + bias.to(acc)[:, None]
    out = _act(y, activation).to(x.dtype)
    tail_idx = torch.arange(T, T + width - 1, device=x.device)
    final = xx[..., T:] * (tail_idx[None] >= lo[:, -1:]).to(acc)[:, None] if T > 0 else xx[..., T:]
    return out, final.to(x.dtype)


def causal_conv1d_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Streaming steps: ``x [B, D]`` or ``[B, D, L]``; ``conv_state [B, D, S]`` (S >= W - 1) is shifted in place.

    With ``conv_state_indices [B]`` (int), ``conv_state`` is a pool ``[slots, D, S]`` and row b steps slot
    ``conv_state_indices[b]``; -1 marks a padding row (zero output, no slot touched). Slots must be distinct.
    """
    if conv_state_indices is not None:
        rows, valid = gather_rows(conv_state, conv_state_indices)
        out = causal_conv1d_update_ref(x, rows, weight, bias, activation)
        scatter_rows(conv_state, conv_state_indices, rows)
        return mask_rows(out, valid)
    acc = acc_dtype(x.dtype)
    squeeze = x.dim() == 2
    xs = x[..., None] if squeeze else x
    width = weight.shape[1]
    state = conv_state.to(acc)
    outs = []
    for t in range(xs.shape[-1]):
        full = torch.cat([state, xs[..., t : t + 1].to(acc)], dim=-1)  # [B, D, S + 1]
        y = (full[..., -width:] * weight.to(acc)).sum(-1)
        state = full[..., 1:]
        if bias is not None:
            y = y + bias.to(acc)
        outs.append(_act(y, activation))
    conv_state.copy_(state.to(conv_state.dtype))
    out = torch.stack(outs, dim=-1).to(x.dtype)
    return out[..., 0] if squeeze else out


def causal_conv1d_bwd_ref(
    dout: torch.Tensor,
    dfinal: torch.Tensor | None,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    activation: str | None,
    resets: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Analytic backward of :func:`causal_conv1d_ref` (no cu_seqlens): with gpre = dout * act'(pre),
    dxx[p] = sum_k w[k] gpre[p - k] (inside the window), dw[k] = sum_t gpre[t] xx[t + k], dbias = sum_t gpre[t].
    Returns ``(dx, dweight, dbias, dinitial_state)`` in fp32."""
    acc = acc_dtype(x.dtype)
    batch, dim, T = x.shape
    width = weight.shape[1]
    init = torch.zeros(batch, dim, width - 1, dtype=acc, device=x.device)
    if initial_state is not None:
        init = initial_state.to(acc)
    xx = torch.cat([init, x.to(acc)], dim=-1)
    lo = segment_lo(resets, batch, T, width, x.device)
    idx = torch.arange(T, device=x.device)[:, None] + torch.arange(width, device=x.device)
    valid = (idx[None] >= lo[..., None]).to(acc)[:, None]  # [B, 1, T, W]
    windows = xx.unfold(-1, width, 1) * valid
    w32 = weight.to(acc)
    pre = (windows * w32[:, None, :]).sum(-1)
    if bias is not None:
        pre = pre + bias.to(acc)[:, None]
    g = dout.to(acc)
    if activation == "silu":
        s = torch.sigmoid(pre)
        g = g * s * (1 + pre * (1 - s))
    dw = torch.einsum("bdt,bdtk->dk", g, windows)
    dbias = g.sum((0, 2)) if bias is not None else None
    contrib = g[..., None] * w32[:, None, :] * valid
    dxx = torch.zeros_like(xx)
    for k in range(width):
        dxx[..., k : k + T] += contrib[..., k]
    if dfinal is not None and width > 1:
        tail = torch.arange(T, T + width - 1, device=x.device)
        dxx[..., T:] += dfinal.to(acc) * (tail[None] >= lo[:, -1:]).to(acc)[:, None]
    dinit = dxx[..., : width - 1] if initial_state is not None else None
    return dxx[..., width - 1 :], dw, dbias, dinit
